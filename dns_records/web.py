"""The one adapter to HTTPS: fetching a small document (an MTA-STS policy) from a named host.

The host's addresses come from mailsec's resolver, not the system's; each is checked by the
core's network guard (`mailsec.netguard`) before any connection, the certificate is verified
for the host name, and headers and body are capped. Redirects are not followed (RFC 8461 3.3).

`timeout` is a total deadline over connecting, the TLS handshake, sending the request and
reading headers and body, not a per-read timeout: a server dripping a byte a second would
otherwise keep a fetch, and the worker thread running it, alive long after the task's limit.
Every socket operation is given only the time left.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from collections.abc import Sequence

from django.conf import settings

from dns_records.lookups import Fetch
from mailsec import netguard

USER_AGENT = "mailsec (mail DNS checks)"
# Far above what policy hosts and CDNs send (a few KiB); http.client also stops at 100 lines.
MAX_HEADER_BYTES = 32 * 1024


def address_allowed(address: str) -> bool:
    """Globally routable by the core's guard, or inside MAILSEC_PROBE_ALLOW_NETWORKS."""
    return netguard.address_allowed(address, settings.MAILSEC_PROBE_ALLOW_NETWORKS)


class DeadlineExceeded(TimeoutError):
    pass


class TooLarge(Exception):
    pass


class _DeadlineReader(io.RawIOBase):
    """The response side of a socket: each read gets only the time left, and at most
    `budget` bytes are read in all."""

    def __init__(self, sock: ssl.SSLSocket, deadline: float, budget: int) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = deadline
        self.budget = budget
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        room = self.budget - self.consumed
        if room <= 0:
            raise TooLarge
        self.sock.settimeout(_remaining(self.deadline))
        with memoryview(buffer) as view:
            count = self.sock.recv_into(view[: min(len(view), room)])
        self.consumed += count
        return count


class _ResponseSocket:
    """What http.client.HTTPResponse reads from: only `makefile`."""

    def __init__(self, reader: _DeadlineReader) -> None:
        self.reader = reader

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self.reader)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded
    return left


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
    deadline: float | None = None,
) -> Fetch:
    """GET https://host/path from the first of `addresses` that accepts a connection.

    `timeout` is the total time for the whole fetch, over all addresses; `deadline`, a
    `time.monotonic()` instant, ends it sooner when the caller's own work must end first.
    The port is MAILSEC_MTA_STS_HTTPS_PORT (443) unless given; the setting is read per call.
    """
    if port is None:
        port = int(settings.MAILSEC_MTA_STS_HTTPS_PORT)
    url = f"https://{host}{path}"
    ends = time.monotonic() + timeout
    if deadline is not None:
        ends = min(ends, deadline)
    allowed = [a for a in addresses if address_allowed(a)]
    if not allowed:
        listed = ", ".join(addresses) or "no address"
        return Fetch(
            url,
            error=f"not fetched: {host} resolves to {listed}, outside the networks mailsec may "
            "reach (MAILSEC_PROBE_ALLOW_NETWORKS)",
        )
    if not (_printable(host) and _printable(path) and path.startswith("/")):
        # The request is written by hand: a space or CR LF from a DNS record must not reach it.
        return Fetch(url, error="not fetched: the host or path holds characters HTTP forbids")
    timed_out = f"timed out after {timeout:g}s total"
    last_error = ""
    for text in allowed:
        address = str(netguard.parse_address(text))  # the canonical spelling that was checked
        try:
            raw = socket.create_connection((address, port), timeout=_remaining(ends))
        except DeadlineExceeded:
            return Fetch(url, address=address, error=timed_out)
        except TimeoutError:
            if time.monotonic() >= ends:
                return Fetch(url, address=address, error=timed_out)
            last_error = f"{address}: connection timed out"
            continue
        except OSError as exc:
            last_error = f"{address}: {exc.strerror or exc}"
            continue
        try:
            raw.settimeout(_remaining(ends))
            tls = _context().wrap_socket(raw, server_hostname=host)
        except DeadlineExceeded:
            raw.close()
            return Fetch(url, address=address, error=timed_out)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            reason = exc.verify_message or str(exc)
            return Fetch(url, address=address, fault=f"certificate not valid for {host}: {reason}")
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            if time.monotonic() >= ends:
                return Fetch(url, address=address, error=timed_out)
            last_error = f"{address}: TLS handshake failed: {exc}"
            continue
        try:
            return _get(url, host, path, tls, address, max_bytes, ends)
        except (DeadlineExceeded, TimeoutError):
            # socket.timeout is TimeoutError: a read given the time left ran out of it.
            return Fetch(url, address=address, error=timed_out)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{address}: {exc}"
        finally:
            tls.close()
    return Fetch(url, error=last_error or "no address accepted a connection")


def _get(
    url: str,
    host: str,
    path: str,
    tls: ssl.SSLSocket,
    address: str,
    max_bytes: int,
    deadline: float,
) -> Fetch:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )
    tls.settimeout(_remaining(deadline))
    tls.sendall(request.encode("ascii"))
    headers_too_large = f"response headers larger than {MAX_HEADER_BYTES // 1024} KiB"
    reader = _DeadlineReader(tls, deadline, budget=MAX_HEADER_BYTES)
    response = http.client.HTTPResponse(_ResponseSocket(reader), method="GET")  # type: ignore[arg-type]
    try:
        response.begin()
    except (TooLarge, http.client.LineTooLong):
        return Fetch(url, address=address, fault=headers_too_large)
    except http.client.HTTPException as exc:
        if str(exc).startswith("got more than"):  # http.client's limit on header lines
            return Fetch(url, address=address, fault=f"response headers: {exc}")
        raise
    # The body, and for a chunked one its framing, may take a generous multiple of the cap.
    reader.budget = reader.consumed + 2 * max_bytes + 16 * 1024
    too_large = Fetch(
        url, status=response.status, address=address, fault=f"larger than {max_bytes // 1024} KiB"
    )
    try:
        body = response.read(max_bytes + 1)
    except TooLarge:
        return too_large
    if len(body) > max_bytes:
        return too_large
    return Fetch(
        url,
        status=response.status,
        body=body.decode("utf-8", errors="replace"),
        data=body,
        content_type=response.getheader("Content-Type", ""),
        address=address,
    )


def _printable(text: str) -> bool:
    return text.isascii() and all(" " < char < "\x7f" for char in text)


def post_https(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = 10.0,
    max_bytes: int = 16 * 1024,
) -> Fetch:
    """POST body to an https:// URL (a webhook): the same guard as fetch_https.

    The host's addresses come from mailsec's resolver (an address literal is used as is); each
    is checked against the network guard before any connection, so a URL naming an internal
    address is refused without one. The certificate is verified for the host; redirects are
    not followed; the response body is capped at max_bytes. Header names and values must be
    printable: the request is written by hand.
    """
    from urllib.parse import urlsplit

    from dns_records.lookups import host_addresses
    from dns_records.resolver import Resolver

    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        return Fetch(url, error=f"not sent: the URL is not valid ({exc})")
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme != "https" or not host:
        return Fetch(url, error="not sent: only https:// URLs with a host are allowed")
    if parts.username or parts.password:
        return Fetch(url, error="not sent: credentials in the URL are not allowed")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if not (_printable(host) and _printable(path) and all(
        _printable(name) and value.isascii() and "\r" not in value and "\n" not in value
        for name, value in headers.items()
    )):  # fmt: skip
        return Fetch(url, error="not sent: the URL or a header holds characters HTTP forbids")
    ends = time.monotonic() + timeout
    if netguard.parse_address(host) is not None:
        addresses = [host]
    else:
        lookups = Resolver(timeout=min(timeout, 5.0)).addresses(host)
        addresses = host_addresses(lookups)
        if not addresses:
            reasons = "; ".join(lookup.reason or lookup.status for lookup in lookups)
            return Fetch(url, error=f"not sent: {host} has no address ({reasons})")
    allowed = [a for a in addresses if address_allowed(a)]
    if not allowed:
        return Fetch(
            url,
            error=f"not sent: {host} resolves to {', '.join(addresses)}, outside the networks "
            "mailsec may reach (MAILSEC_PROBE_ALLOW_NETWORKS)",
        )
    host_header = host if port == 443 else f"{host}:{port}"
    if ":" in host and netguard.parse_address(host) is not None:
        host_header = f"[{host}]" if port == 443 else f"[{host}]:{port}"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode("ascii") + body
    timed_out = f"timed out after {timeout:g}s total"
    last_error = ""
    for text in allowed:
        address = str(netguard.parse_address(text))
        try:
            raw = socket.create_connection((address, port), timeout=_remaining(ends))
        except (DeadlineExceeded, TimeoutError):
            return Fetch(url, address=address, error=timed_out)
        except OSError as exc:
            last_error = f"{address}: {exc.strerror or exc}"
            continue
        try:
            raw.settimeout(_remaining(ends))
            tls = _context().wrap_socket(raw, server_hostname=host)
        except DeadlineExceeded:
            raw.close()
            return Fetch(url, address=address, error=timed_out)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            reason = exc.verify_message or str(exc)
            return Fetch(url, address=address, fault=f"certificate not valid for {host}: {reason}")
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            last_error = f"{address}: TLS handshake failed: {exc}"
            continue
        try:
            tls.settimeout(_remaining(ends))
            tls.sendall(request)
            reader = _DeadlineReader(tls, ends, budget=MAX_HEADER_BYTES)
            response = http.client.HTTPResponse(_ResponseSocket(reader), method="POST")  # type: ignore[arg-type]
            response.begin()
            reader.budget = reader.consumed + 2 * max_bytes + 16 * 1024
            try:
                data = response.read(max_bytes)
            except TooLarge:
                data = b""
            return Fetch(
                url,
                status=response.status,
                body=data.decode("utf-8", errors="replace"),
                data=data,
                content_type=response.getheader("Content-Type", ""),
                address=address,
            )
        except (DeadlineExceeded, TimeoutError):
            return Fetch(url, address=address, error=timed_out)
        except (TooLarge, OSError, http.client.HTTPException) as exc:
            return Fetch(url, address=address, error=f"{address}: {exc or type(exc).__name__}")
        finally:
            tls.close()
    return Fetch(url, error=last_error or "no address accepted a connection")
