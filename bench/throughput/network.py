"""Keeping the benchmark on loopback: the network guard, and the simulated round trip."""

from __future__ import annotations

import functools
import ipaddress
import time
from typing import Any

DNS_TIMEOUT = 2.0  # per lookup, on both sides, with no retries


class NetworkGuard:
    """An audit hook that refuses any socket use beyond 127.0.0.0/8 and remembers each try.

    The fixture names resolve only through our Knot; a lookup through the system's resolver,
    an SMTP or HTTPS connection to a fixture address, would leave the machine.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.enabled = False
        self.messages = 0  # UDP datagrams sent and TCP connections made: DNS queries, here

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.enabled or not event.startswith("socket."):
            return
        if event in {"socket.sendto", "socket.connect"}:
            self.messages += 1
        host: object
        if event in {"socket.connect", "socket.sendto", "socket.sendmsg"}:
            address = args[1]
            if not isinstance(address, tuple):  # AF_UNIX path, or None for sendmsg
                return
            host = address[0]
        elif event in {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"}:
            host = args[0]
            if host is None:
                return
        else:
            return
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        try:
            loopback = ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            loopback = False  # a name: would go to the system's resolver
        if not loopback:
            self.violations.append(f"{event} {host}")
            raise PermissionError(f"bench network guard: {event} to {host} refused")


def simulate_round_trip(seconds: float) -> None:
    """Make every query to a Do53 name server, from either side, wait `seconds` first.

    Both sides send each query through `dns.nameserver.Do53Nameserver.query`. The wait is a
    sleep, which like a network wait releases the GIL: this models a resolver that far away
    (one round trip per query, TCP's handshake not counted), at no CPU cost.
    """
    import dns.nameserver

    original = dns.nameserver.Do53Nameserver.query

    @functools.wraps(original)
    def query(self: dns.nameserver.Do53Nameserver, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return original(self, *args, **kwargs)

    dns.nameserver.Do53Nameserver.query = query  # type: ignore[method-assign]
