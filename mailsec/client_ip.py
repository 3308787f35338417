"""The address of the client behind a request, for login throttling."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or behind the one trusted proxy the address it appended to X-Forwarded-For.

    Only the right-most entry is the proxy's own observation; entries to its left come from the
    client and can be forged, so they are never used.
    """
    remote = str(request.META.get("REMOTE_ADDR", ""))
    if not settings.MAILSEC_TRUST_FORWARDED_FOR:
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    candidate = forwarded.split(",")[-1].strip() if forwarded else ""
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
