"""System checks that refuse an unsafe production configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from mailsec.secrets import secrets_stored

MISSING_KEY = "MAILSEC_SECRET_KEY is not set and there is no local key"
MISSING_ENCRYPTION_KEY = (
    "MAILSEC_ENCRYPTION_KEYS is not set and there is no local key file, but the database holds "
    "encrypted secrets"
)


def _secret_key_missing() -> bool:
    try:
        return not settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        return True


@register(Tags.security, deploy=False)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    if _secret_key_missing():
        return [
            Error(
                f"{MISSING_KEY}: mailsec does not start without a secret key.",
                hint=(
                    "Set MAILSEC_SECRET_KEY to a long random string; locally, MAILSEC_DEBUG=1 "
                    f"(as `make run` sets) generates {settings.LOCAL_SECRET_KEY_FILE} once."
                ),
                id="mailsec.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_allowed_hosts(app_configs: Any, **kwargs: Any) -> list[Error]:
    if not settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [
            Error(
                "MAILSEC_ALLOWED_HOSTS is empty: no request would be served.",
                hint="Set MAILSEC_ALLOWED_HOSTS to the dashboard's host names.",
                id="mailsec.E002",
            )
        ]
    return []


def _encryption_key_missing() -> bool:
    """No key is configured while secrets are stored (False while the database is not ready)."""
    if settings.MAILSEC_ENCRYPTION_KEYS:
        return False
    try:
        return secrets_stored()
    except DatabaseError:  # not migrated yet, or unreachable: the commands that need it say so
        return False


@register(Tags.security, deploy=False)
def check_encryption_keys(app_configs: Any, **kwargs: Any) -> list[Error]:
    if _encryption_key_missing():
        return [
            Error(
                f"{MISSING_ENCRYPTION_KEY}: they cannot be read.",
                hint=(
                    "Set MAILSEC_ENCRYPTION_KEYS to the keys they were encrypted under "
                    "(id:base64key, comma-separated), or restore the local key file "
                    f"{settings.LOCAL_ENCRYPTION_KEYS_FILE} they were made with."
                ),
                id="mailsec.E003",
            )
        ]
    return []


def refuse_missing_secret_key() -> None:
    """Stop a process started without a secret key (gunicorn and Celery skip system checks)."""
    if _secret_key_missing():
        raise ImproperlyConfigured(
            f"{MISSING_KEY} ({settings.LOCAL_SECRET_KEY_FILE}): refusing to serve without a "
            "secret key (set MAILSEC_SECRET_KEY, or MAILSEC_DEBUG=1 for local development)."
        )


def refuse_missing_encryption_key() -> None:
    """Stop a process without the keys to the stored secrets (gunicorn and Celery skip checks)."""
    try:
        missing = _encryption_key_missing()
    finally:
        # The process may fork next (gunicorn --preload, Celery's pool): children must not share
        # a connection opened here.
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
    if missing:
        raise ImproperlyConfigured(
            f"{MISSING_ENCRYPTION_KEY} ({settings.LOCAL_ENCRYPTION_KEYS_FILE}): refusing to serve "
            "without the keys to them (set MAILSEC_ENCRYPTION_KEYS)."
        )
