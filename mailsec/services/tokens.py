"""API tokens: created with a key shown once, stored only as a keyed hash, revoked, checked."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from mailsec.models import ApiToken, TokenScope
from mailsec.services.audit import Actor, audit_record

TOKEN_PREFIX = "msk_"  # noqa: S105  (a marker, not a secret)


def api_token_hash(key: str, *, secret: str | None = None) -> str:
    """Keyed hash of an API key; a database dump without SECRET_KEY reveals nothing usable.

    `secret` defaults to SECRET_KEY; authentication also tries each of SECRET_KEY_FALLBACKS.
    """
    return salted_hmac("mailsec.api-token", key, secret=secret, algorithm="sha256").hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user: User,
    scope: TokenScope,
    actor: Actor,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext key, which is never stored."""
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[: len(TOKEN_PREFIX) + 6],
        key_hash=api_token_hash(key),
        scope=scope,
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="api_token.create",
        obj=token,
        organisation=None,
        after={
            "user": user.get_username(),
            "scope": str(scope),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="api_token.revoke", obj=token, organisation=None)


LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_authenticate(key: str) -> ApiToken | None:
    """The live token for this key, or None for a wrong, unknown, expired or revoked one.

    A token hashed under a key now in SECRET_KEY_FALLBACKS (the secret key was rotated) is
    accepted and re-hashed under the current key, so it outlives the fallback's removal.
    """
    now = timezone.now()
    current = api_token_hash(key)
    hashes = [current, *(api_token_hash(key, secret=old) for old in settings.SECRET_KEY_FALLBACKS)]
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash__in=hashes, revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    changes: dict[str, object] = {}
    if token.key_hash != current:
        changes["key_hash"] = current
    # Recording every request would turn each API read into a write; a minute is precise enough.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        changes["last_used_at"] = now
    if changes:
        ApiToken.objects.filter(pk=token.pk).update(**changes)
        for field, value in changes.items():
            setattr(token, field, value)
    return token
