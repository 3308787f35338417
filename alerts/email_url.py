"""MAILSEC_EMAIL_URL as the keyword arguments of Django's SMTP backend.

smtp://user:pass@host:port (plain, port 25), smtp+tls:// (STARTTLS, 587), smtp+ssl:// (465).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

SCHEMES = {
    "smtp": (25, False, False),
    "smtp+tls": (587, True, False),
    "smtp+ssl": (465, False, True),
}


class InvalidEmailUrl(ValueError):
    pass


def parse_email_url(url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidEmailUrl(f"MAILSEC_EMAIL_URL is not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise InvalidEmailUrl(
            "MAILSEC_EMAIL_URL must start with smtp://, smtp+tls:// or smtp+ssl://"
        )
    if not parts.hostname:
        raise InvalidEmailUrl("MAILSEC_EMAIL_URL names no host")
    default_port, tls, ssl = SCHEMES[parts.scheme]
    return {
        "host": parts.hostname,
        "port": port or default_port,
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "use_tls": tls,
        "use_ssl": ssl,
    }
