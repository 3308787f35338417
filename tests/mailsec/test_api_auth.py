"""Token authentication: keyed hashes, one 401 for every bad key, scopes, expiry, revocation."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from mailsec.models import ApiToken, AuditLog, TokenScope
from mailsec.services.tokens import (
    api_token_authenticate,
    api_token_create,
    api_token_hash,
    api_token_revoke,
)

pytestmark = pytest.mark.django_db

DOMAINS = "/api/v1/domains/"


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_no_token_gets_401_in_the_error_shape():
    response = APIClient().get(DOMAINS)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "Invalid or missing token.",
            "details": {},
        }
    }
    assert response["WWW-Authenticate"] == "Token"


def test_valid_token_gets_200(owner):
    _token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    assert _client(key).get(DOMAINS).status_code == 200


def test_wrong_unknown_expired_and_revoked_tokens_get_the_same_401(owner):
    _expired, expired_key = api_token_create(
        user=owner,
        scope=TokenScope.WRITE,
        actor=None,
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    revoked, revoked_key = api_token_create(user=owner, scope=TokenScope.WRITE, actor=None)
    api_token_revoke(token=revoked, actor=owner)
    _live, live_key = api_token_create(user=owner, scope=TokenScope.WRITE, actor=None)
    bodies = []
    for key in (live_key[:-1] + "x", "msk_unknown", expired_key, revoked_key, "é"):
        response = _client(key).get(DOMAINS)
        assert response.status_code == 401, key
        bodies.append(response.content)
    assert len(set(bodies)) == 1


def test_inactive_user_token_is_refused(owner):
    _token, key = api_token_create(user=owner, scope=TokenScope.WRITE, actor=None)
    owner.is_active = False
    owner.save()
    assert _client(key).get(DOMAINS).status_code == 401


def test_read_token_cannot_write(owner):
    _token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    response = _client(key).post(DOMAINS, {"name": "good.test"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_only_a_keyed_hash_is_stored(owner):
    token, key = api_token_create(user=owner, scope=TokenScope.WRITE, actor=None)
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert key not in dump.getvalue()
    assert key[len(token.prefix) :] not in dump.getvalue()
    assert token.key_hash != key and len(token.key_hash) == 64


def test_last_used_is_recorded(owner):
    token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    assert token.last_used_at is None
    _client(key).get(DOMAINS)
    token.refresh_from_db()
    assert token.last_used_at is not None


OLD_KEY = "old-secret-key-0123456789-0123456789-0123456789-abcdef"
NEW_KEY = "new-secret-key-0123456789-0123456789-0123456789-abcdef"


def test_token_survives_a_secret_key_rotation_and_moves_to_the_new_key(owner, settings):
    settings.SECRET_KEY = OLD_KEY
    token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert _client(key).get(DOMAINS).status_code == 200
    token.refresh_from_db()
    assert token.key_hash == api_token_hash(key, secret=NEW_KEY)
    settings.SECRET_KEY_FALLBACKS = []
    assert _client(key).get(DOMAINS).status_code == 200


def test_token_made_under_a_dropped_key_gets_the_same_401(owner, settings):
    settings.SECRET_KEY = OLD_KEY
    token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, ["some-other-old-key"]
    response = _client(key).get(DOMAINS)
    unknown = _client("msk_unknown").get(DOMAINS)
    assert response.status_code == unknown.status_code == 401
    assert response.content == unknown.content
    token.refresh_from_db()
    assert token.key_hash == api_token_hash(key, secret=OLD_KEY)


def test_looking_a_key_up_is_one_query_whatever_the_number_of_fallbacks(
    owner, settings, django_assert_num_queries
):
    settings.SECRET_KEY = OLD_KEY
    _token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = ["first-older-key", "second-older-key", OLD_KEY]
    with django_assert_num_queries(2):  # the lookup, then re-hash and last use in one update
        assert api_token_authenticate(key) is not None
    with django_assert_num_queries(1):
        assert api_token_authenticate(key) is not None


def test_revoked_token_stays_refused_under_a_fallback_key(owner, settings):
    settings.SECRET_KEY = OLD_KEY
    token, key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    api_token_revoke(token=token, actor=owner)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert _client(key).get(DOMAINS).status_code == 401
    token.refresh_from_db()
    assert token.key_hash == api_token_hash(key, secret=OLD_KEY)


def test_create_api_token_command_prints_a_working_key(owner):
    out = io.StringIO()
    call_command("create_api_token", owner.username, "--scope", "write", stdout=out)
    key = out.getvalue().strip()
    assert key.startswith("msk_")
    assert ApiToken.objects.get(user=owner).scope == TokenScope.WRITE
    assert _client(key).get(DOMAINS).status_code == 200
    assert AuditLog.objects.filter(action="api_token.create").exists()


def test_create_api_token_command_refuses_unknown_user():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody")


def test_unknown_api_path_is_json_404(owner_api):
    response = owner_api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_schema_needs_authentication_and_is_served_to_users(owner_api):
    assert APIClient().get("/api/v1/schema/").status_code == 401
    response = owner_api.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/v1/domains/" in response.content.decode()


def test_add_member_creates_the_user_and_gives_the_role(org):
    from mailsec.models import Membership

    out = io.StringIO()
    call_command("add_member", "vera", org.slug, "--role", "viewer", stdout=out)
    assert "shown only this once" in out.getvalue()
    membership = Membership.objects.get(user__username="vera", organisation=org)
    assert membership.role == "viewer"
    call_command("add_member", "vera", org.slug, "--role", "admin", stdout=io.StringIO())
    membership.refresh_from_db()
    assert membership.role == "admin"
    assert AuditLog.objects.filter(action="membership.set", organisation=org).count() == 2


def test_add_member_refuses_an_unknown_organisation_unless_asked_to_create_it():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no organisation"):
        call_command("add_member", "vera", "nowhere")
    call_command("add_member", "vera", "Blue Team", "--create-organisation", stdout=io.StringIO())
    assert AuditLog.objects.filter(action="organisation.create").exists()
