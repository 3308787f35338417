"""Who is on the other end of a request: the client's address, and whether it came over https.

Behind a reverse proxy every connection comes from the proxy, which says who its client was in
X-Forwarded-For and how it was reached in X-Forwarded-Proto. Anyone can send those headers, so
they are believed only when the connection itself comes from a proxy the operator trusts
(MAILSEC_TRUSTED_PROXIES); from anyone else they are removed before any view sees them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO")


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def forwarded_client(remote_addr: str, forwarded_for: str, proxies: Sequence[Network]) -> str:
    """The client's address: REMOTE_ADDR, or when that is a trusted proxy, the right-most
    X-Forwarded-For entry that is not itself a trusted proxy.

    Each proxy appends the address it was connected from, so walking from the right over trusted
    proxies reaches the first address no trusted party vouches for beyond: the client. Entries
    further left were written by the client and are never used. A malformed entry ends the walk
    at the last address a trusted proxy gave.
    """
    current = _address(remote_addr)
    if current is None:
        return remote_addr
    if not _trusted(current, proxies):
        return str(current)
    for entry in reversed(forwarded_for.split(",") if forwarded_for else []):
        hop = _address(entry)
        if hop is None:
            break
        current = hop
        if not _trusted(hop, proxies):
            break
    return str(current)


def client_ip(request: HttpRequest) -> str:
    """The client's address for login throttling (django-axes' AXES_CLIENT_IP_CALLABLE)."""
    return forwarded_client(
        str(request.META.get("REMOTE_ADDR", "")),
        str(request.META.get("HTTP_X_FORWARDED_FOR", "")),
        settings.MAILSEC_TRUSTED_PROXIES,
    )


class ForwardedHeadersMiddleware:
    """Removes X-Forwarded-For and X-Forwarded-Proto unless the peer is a trusted proxy, so
    SECURE_PROXY_SSL_HEADER (https detection) and client_ip believe only trusted proxies.

    It runs first: SecurityMiddleware's https redirect and the CSRF check read the scheme.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        peer = _address(str(request.META.get("REMOTE_ADDR", "")))
        if not _trusted(peer, settings.MAILSEC_TRUSTED_PROXIES):
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)
