"""The one adapter to HTTPS: fetching a small document (an MTA-STS policy) from a named host.

The host's addresses come from mailsec's resolver, not the system's; each is checked against
the network policy before any connection, the certificate is verified for the host name, and
the body is capped. Redirects are not followed (RFC 8461 3.3).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Sequence

from django.conf import settings

from dns_records.lookups import Fetch

USER_AGENT = "mailsec (mail DNS checks)"


def address_allowed(address: str) -> bool:
    """Globally routable, or inside MAILSEC_PROBE_ALLOW_NETWORKS (empty by default)."""
    ip = ipaddress.ip_address(address)
    if ip.is_global:
        return True
    return any(ip in network for network in settings.MAILSEC_PROBE_ALLOW_NETWORKS)


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.MAILSEC_TLS_CA_FILE:
        context.load_verify_locations(cafile=settings.MAILSEC_TLS_CA_FILE)
    return context


def fetch_https(
    host: str,
    path: str,
    addresses: Sequence[str],
    *,
    timeout: float = 10.0,
    max_bytes: int = 64 * 1024,
    port: int | None = None,
) -> Fetch:
    """GET https://host/path from the first of `addresses` that accepts a connection.

    The port is MAILSEC_MTA_STS_HTTPS_PORT (443) unless given; the setting is read per call.
    """
    if port is None:
        port = int(settings.MAILSEC_MTA_STS_HTTPS_PORT)
    url = f"https://{host}{path}"
    allowed = [a for a in addresses if address_allowed(a)]
    if not allowed:
        listed = ", ".join(addresses) or "no address"
        return Fetch(
            url,
            error=f"not fetched: {host} resolves to {listed}, outside the networks mailsec may "
            "reach (MAILSEC_PROBE_ALLOW_NETWORKS)",
        )
    last_error = ""
    for address in allowed:
        try:
            raw = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last_error = f"{address}: {exc.strerror or exc}"
            continue
        try:
            tls = _context().wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            reason = exc.verify_message or str(exc)
            return Fetch(url, address=address, fault=f"certificate not valid for {host}: {reason}")
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            last_error = f"{address}: TLS handshake failed: {exc}"
            continue
        try:
            return _get(url, host, path, tls, address, max_bytes)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{address}: {exc}"
        finally:
            tls.close()
    return Fetch(url, error=last_error or "no address accepted a connection")


def _get(url: str, host: str, path: str, tls: ssl.SSLSocket, address: str, max_bytes: int) -> Fetch:
    connection = http.client.HTTPSConnection(host, timeout=tls.gettimeout())
    connection.sock = tls  # already connected to the address our resolver chose
    connection.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    response = connection.getresponse()
    body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        return Fetch(
            url,
            status=response.status,
            address=address,
            fault=f"larger than {max_bytes // 1024} KiB",
        )
    return Fetch(
        url,
        status=response.status,
        body=body.decode("utf-8", errors="replace"),
        data=body,
        content_type=response.getheader("Content-Type", ""),
        address=address,
    )
