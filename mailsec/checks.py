"""System checks that refuse an unsafe production configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security, deploy=False)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [
            Error(
                "MAILSEC_SECRET_KEY is not set: production refuses the public development key.",
                hint="Set MAILSEC_SECRET_KEY to a long random string, or MAILSEC_DEBUG=1 locally.",
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


def refuse_development_key() -> None:
    """Stop a production process started with the public key (gunicorn and Celery skip checks)."""
    if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        raise ImproperlyConfigured(
            "MAILSEC_SECRET_KEY is not set: refusing to serve with the public development key "
            "(set it, or MAILSEC_DEBUG=1 for local development)."
        )
