"""Login throttling per (username, address) and per username, and the password-change form:
wrong old passwords throttled like logins, other sessions ended on a change."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a much better passphrase 42"


def _user(username: str) -> User:
    return User.objects.create_user(username=username, password=PASSWORD)


def _login(client: Client, username: str, password: str) -> int:
    return client.post("/login/", {"username": username, "password": password}).status_code


def _from(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def _page(response) -> str:
    """The body without what differs between any two responses (CSRF token and nonce)."""
    body = response.content.decode()
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", body)
    body = re.sub(r'"X-CSRFToken": "[^"]*"', "", body)
    return re.sub(r'nonce="[^"]*"', "", body)


def test_alternating_a_wrong_and_a_right_password_from_one_address_still_locks_the_victim():
    _user("victim")
    _user("attacker")
    client = _from("198.51.100.1")
    for _ in range(4):
        assert _login(client, "victim", "guess") == 200
        assert _login(client, "attacker", PASSWORD) == 302
        client.logout()
    assert _login(client, "victim", "guess") == 429
    assert _login(client, "victim", PASSWORD) == 429
    assert "_auth_user_id" not in client.session


def test_a_success_clears_only_the_succeeding_users_failures():
    from axes.models import AccessAttempt

    _user("victim")
    _user("attacker")
    client = _from("198.51.100.1")
    for _ in range(3):
        _login(client, "victim", "guess")
    _login(client, "attacker", "typo")
    assert _login(client, "attacker", PASSWORD) == 302
    assert not AccessAttempt.objects.filter(username="attacker").exists()
    assert AccessAttempt.objects.get(username="victim").failures_since_start == 3


def test_one_username_guessed_from_many_addresses_is_locked_everywhere(settings):
    assert settings.MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT == 3 * settings.AXES_FAILURE_LIMIT
    _user("victim")
    limit = settings.MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT
    for n in range(limit - 1):
        assert _login(_from(f"203.0.113.{n}"), "victim", "guess") == 200
    # One below the username's limit the owner still gets in, from anywhere.
    assert _login(_from("192.0.2.200"), "victim", PASSWORD) == 302
    for n in range(limit):
        _login(_from(f"203.0.113.{n}"), "victim", "guess")
    assert _login(_from("192.0.2.201"), "victim", PASSWORD) == 429


def test_the_per_username_limit_is_configurable(settings):
    settings.MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT = 2
    _user("victim")
    _login(_from("203.0.113.1"), "victim", "guess")
    _login(_from("203.0.113.2"), "victim", "guess")
    assert _login(_from("203.0.113.3"), "victim", PASSWORD) == 429


def test_another_users_login_from_the_same_address_is_not_locked():
    _user("victim")
    _user("colleague")
    client = _from("198.51.100.1")
    for _ in range(5):
        _login(client, "victim", "guess")
    assert _login(client, "colleague", PASSWORD) == 302


def test_a_locked_login_answers_the_same_for_the_right_and_a_wrong_password():
    _user("victim")
    for _ in range(5):
        _login(_from("198.51.100.1"), "victim", "guess")
    right = _from("198.51.100.1").post("/login/", {"username": "victim", "password": PASSWORD})
    wrong = _from("198.51.100.1").post("/login/", {"username": "victim", "password": "nope"})
    assert right.status_code == wrong.status_code == 429
    assert _page(right) == _page(wrong)
    assert right.cookies.keys() == wrong.cookies.keys()
    assert "sessionid" not in right.cookies


def test_a_locked_login_never_checks_the_password(monkeypatch):
    """No timing difference: while locked, the password hasher does not run at all."""
    from django.contrib.auth.hashers import MD5PasswordHasher

    _user("victim")
    for _ in range(5):
        _login(_from("198.51.100.1"), "victim", "guess")
    calls: list[str] = []
    original = MD5PasswordHasher.verify

    def verify(self, password, encoded):
        calls.append(password)
        return original(self, password, encoded)

    monkeypatch.setattr(MD5PasswordHasher, "verify", verify)
    assert _login(_from("198.51.100.1"), "victim", PASSWORD) == 429
    assert calls == []
    _user("other")
    assert _login(_from("198.51.100.1"), "other", PASSWORD) == 302
    assert calls == [PASSWORD]  # the spy sees an unlocked check


# --- password change ------------------------------------------------------------------


def _change(client: Client, old: str):
    return client.post(
        "/password/",
        {"old_password": old, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )


def _logged_in(username: str, address: str = "198.51.100.1") -> Client:
    client = _from(address)
    assert _login(client, username, PASSWORD) == 302
    return client


def test_wrong_old_passwords_lock_the_password_change_form(settings):
    user = _user("olga")
    client = _logged_in("olga")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _change(client, "guess").status_code == 200
    assert _change(client, "guess").status_code == 429
    locked = _change(client, PASSWORD)
    assert locked.status_code == 429
    assert _page(locked) == _page(_change(client, "guess"))
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_wrong_old_passwords_count_toward_the_login_lockout(settings):
    _user("olga")
    client = _logged_in("olga")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _change(client, "guess")
    assert _login(_from("198.51.100.1"), "olga", PASSWORD) == 429


def test_a_password_change_ends_the_users_other_sessions_only():
    _user("olga")
    _user("oscar")
    laptop = _logged_in("olga", "198.51.100.1")
    phone = _logged_in("olga", "198.51.100.2")
    other = _logged_in("oscar", "198.51.100.3")
    assert _change(laptop, PASSWORD).status_code == 302
    assert laptop.get("/domains/").status_code == 200
    assert phone.get("/domains/").status_code == 302
    assert other.get("/domains/").status_code == 200
    assert Session.objects.count() == 2


def test_sessions_end_others_keeps_the_named_session():
    from mailsec.auth import sessions_end_others

    user = _user("olga")
    keep = _logged_in("olga").session.session_key
    _logged_in("olga")
    assert sessions_end_others(user, keep=keep) == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == [keep]
