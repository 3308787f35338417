"""The one guard for every outgoing connection: may mailsec connect to this address?

Pure (stdlib `ipaddress` only): the caller passes the networks an operator allowed
(MAILSEC_PROBE_ALLOW_NETWORKS), so an HTTPS fetch, an RFC 2136 update, and any later probe,
webhook or SSH session share one rule instead of each asking `ip.is_global`, whose answer for
IPv6 transition forms differs between Python versions.

The rule, in order:

- The text must be an address as written by `ipaddress`: no host names, no shorthand such as
  `127.1` (which the system resolver would happily read as 127.0.0.1), no `[brackets]`,
  no zone index (`fe80::1%eth0`), no surrounding space.
- An address inside an allowed network is allowed, whatever it is (loopback in tests, a
  private policy host on a private network).
- Otherwise it must be globally reachable by the tables below, which follow IANA's
  special-purpose registries and add what Python's `is_global` misses on some versions
  (multicast, the 6to4 and Teredo ranges, site-local, SRv6, RFC 9637 documentation).
  IPv6 must also be global unicast (2000::/3), except the NAT64 well-known prefix.
- Every IPv4 address embedded in an IPv6 one (IPv4-mapped, IPv4-compatible, SIIT-translated,
  6to4, NAT64 under 64:ff9b::/96 or 64:ff9b:1::/48, both Teredo addresses) must pass the IPv4
  table too: 64:ff9b::a00:1 reaches 10.0.0.1 through a NAT64 gateway.

Embedded forms of allowed addresses are not allowed by that: allowing 127.0.0.0/8 does not
allow ::ffff:127.0.0.1 or 64:ff9b::7f00:1. A name's A records give the IPv4 address itself,
so nothing needs the IPv6 spelling; an operator who does (a NAT64 network) allows the IPv6
prefix itself, e.g. 64:ff9b::/96.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Not globally reachable, with the name a refusal gives. Most specific first: the first match
# names the refusal.
IPV4_DENIED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT (100.64.0.0/10)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast (deprecated)"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

IPV6_DENIED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::ffff:0:0/96"), "IPv4-mapped"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated (SIIT)"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/32"), "Teredo"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("2001::/23"), "IETF protocol assignments (2001::/23)"),
    (_V6("2002::/16"), "6to4"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "SRv6 SIDs"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)

GLOBAL_UNICAST = _V6("2000::/3")
NAT64_WELL_KNOWN = _V6("64:ff9b::/96")
NAT64_LOCAL = _V6("64:ff9b:1::/48")
IPV4_COMPATIBLE = _V6("::/96")
IPV4_TRANSLATED = _V6("::ffff:0:0:0/96")


def parse_address(text: str) -> Address | None:
    """The address `text` spells, strictly; None for anything else."""
    if not isinstance(text, str) or text != text.strip():
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, in whichever transition form."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in IPV4_TRANSLATED or address in NAT64_WELL_KNOWN or address in NAT64_LOCAL:
        return [low32]
    if address in IPV4_COMPATIBLE:
        # :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1.
        return [low32] if int(address) > 1 else []
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [server, client]
    return []


def _denied(address: Address) -> str:
    """Why `address` on its own is not globally reachable, or "" when it is."""
    if isinstance(address, ipaddress.IPv4Address):
        for network4, name in IPV4_DENIED:
            if address in network4:
                return name
        return ""
    for network6, name in IPV6_DENIED:
        if address in network6:
            return name
    if address not in GLOBAL_UNICAST and address not in NAT64_WELL_KNOWN:
        return "not global unicast (outside 2000::/3)"
    return ""


def refuse_reason(address: str, allow_networks: Iterable[Network] = ()) -> str:
    """Why mailsec must not connect to `address`; "" when it may."""
    ip = parse_address(address)
    if ip is None:
        return f"{address!r} is not an IP address"
    if any(ip.version == network.version and ip in network for network in allow_networks):
        return ""
    for inner in embedded_ipv4(ip):
        reason = _denied(inner)
        if reason:
            return f"{ip} embeds {inner}, which is {reason}"
    reason = _denied(ip)
    if reason:
        return f"{ip} is {reason}"
    return ""


def address_allowed(address: str, allow_networks: Iterable[Network] = ()) -> bool:
    """May mailsec connect to `address`: globally reachable, or inside `allow_networks`."""
    return not refuse_reason(address, allow_networks)
