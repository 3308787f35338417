"""Forwarded headers are believed from trusted proxies only (MAILSEC_TRUSTED_PROXIES)."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import Client

from mailsec.client_ip import forwarded_client
from tests.conftest import PASSWORD

PROXIES = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64")]


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert forwarded_client("198.51.100.7", "203.0.113.9", PROXIES) == "198.51.100.7"


def test_a_trusted_proxy_gives_the_address_it_appended():
    assert forwarded_client("10.0.0.2", "203.0.113.9", PROXIES) == "203.0.113.9"


def test_entries_a_client_forged_left_of_the_proxys_are_ignored():
    assert forwarded_client("10.0.0.2", "1.2.3.4, 203.0.113.9", PROXIES) == "203.0.113.9"


def test_chained_trusted_proxies_are_walked_over_from_the_right():
    assert forwarded_client("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.3", PROXIES) == (
        "203.0.113.9"
    )


def test_a_malformed_entry_ends_the_walk_at_the_last_trusted_address():
    assert forwarded_client("10.0.0.2", "203.0.113.9, junk", PROXIES) == "10.0.0.2"
    assert forwarded_client("10.0.0.2", "", PROXIES) == "10.0.0.2"


def test_ipv6_and_ipv4_mapped_peers():
    assert forwarded_client("fd00::1", "2001:db8::5", PROXIES) == "2001:db8::5"
    assert forwarded_client("::ffff:10.0.0.2", "203.0.113.9", PROXIES) == "203.0.113.9"


def test_no_trusted_proxies_means_no_forwarded_header_is_believed():
    assert forwarded_client("10.0.0.2", "203.0.113.9", []) == "10.0.0.2"


@pytest.mark.django_db
def test_spoofed_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_lockout(owner, settings):
    settings.MAILSEC_TRUSTED_PROXIES = PROXIES
    for n in range(5):
        Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").post(
            "/login/", {"username": owner.username, "password": "wrong"}
        )
    response = Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.99").post(
        "/login/", {"username": owner.username, "password": PASSWORD}
    )
    assert response.status_code == 429


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(owner, settings):
    settings.MAILSEC_TRUSTED_PROXIES = PROXIES
    attacker = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.66")
    for _ in range(5):
        attacker.post("/login/", {"username": owner.username, "password": "wrong"})
    assert (
        attacker.post("/login/", {"username": owner.username, "password": "x"}).status_code == 429
    )
    colleague = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7")
    response = colleague.post("/login/", {"username": owner.username, "password": PASSWORD})
    assert response.status_code == 302


def _secure(client: Client, settings) -> bool:
    from django.http import HttpRequest
    from django.urls import path

    seen: list[bool] = []

    def view(request: HttpRequest):
        from django.http import HttpResponse

        seen.append(request.is_secure())
        return HttpResponse("ok")

    view.login_required = False  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = type("urls", (), {"urlpatterns": [path("probe/", view)]})
    client.get("/probe/")
    return seen[0]


@pytest.mark.django_db
def test_forwarded_proto_is_believed_from_a_trusted_proxy_only(settings):
    settings.MAILSEC_TRUSTED_PROXIES = PROXIES
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = False
    assert _secure(Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https"), settings)
    assert not _secure(Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_PROTO="https"), settings)


@pytest.mark.django_db
def test_an_untrusted_peer_claiming_https_is_redirected_to_https(settings):
    settings.MAILSEC_TRUSTED_PROXIES = PROXIES
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    spoofed = Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_PROTO="https").get("/login/")
    assert spoofed.status_code == 301
    assert spoofed["Location"].startswith("https://")
    proxied = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https").get("/login/")
    assert proxied.status_code == 200
