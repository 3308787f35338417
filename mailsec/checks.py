"""System checks that refuse an unsafe production configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

MISSING_KEY = "MAILSEC_SECRET_KEY is not set and there is no local key"


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


def refuse_missing_secret_key() -> None:
    """Stop a process started without a secret key (gunicorn and Celery skip system checks)."""
    if _secret_key_missing():
        raise ImproperlyConfigured(
            f"{MISSING_KEY} ({settings.LOCAL_SECRET_KEY_FILE}): refusing to serve without a "
            "secret key (set MAILSEC_SECRET_KEY, or MAILSEC_DEBUG=1 for local development)."
        )
