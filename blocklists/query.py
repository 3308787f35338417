"""Query names for blocklist lookups (RFC 5782), and what may be polled. Pure.

An IPv4 address is reversed by octet (192.0.2.1 -> 1.2.0.192.<zone>); an IPv6 address is written
out in full and reversed by nibble, 32 labels (RFC 5782 section 2.4), never by 16-bit group. A
domain is looked up as it is, under the zone (section 3).
"""

from __future__ import annotations

import ipaddress
import re

from blocklists.zones import ZoneKind

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_DQS_KEY = re.compile(r"[a-z0-9]{8,64}")
MAX_NAME = 253


class InvalidTarget(ValueError):
    """Not an address or domain name mailsec can look up on a blocklist."""


def reverse_ipv4(address: str) -> str:
    return ".".join(reversed(str(ipaddress.IPv4Address(address)).split(".")))


def reverse_ipv6(address: str) -> str:
    """The 32 nibbles of the address, least significant first (::1 -> 1.0.0. ... .0)."""
    return ".".join(reversed(ipaddress.IPv6Address(address).exploded.replace(":", "")))


def normalise_address(text: str) -> str:
    """An IP address in its canonical text; raises InvalidTarget."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise InvalidTarget(f"{text!r} is not an IP address.") from None


def normalise_domain_target(text: str) -> str:
    """A domain name (ASCII, lower case, no final dot) as blocklists are asked about it."""
    name = text.strip().lower().rstrip(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > MAX_NAME
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
    ):
        raise InvalidTarget(f"{text!r} is not a domain name (in its ASCII form).")
    return name


def normalise_target(kind: ZoneKind, text: str) -> str:
    if kind is ZoneKind.IP:
        return normalise_address(text)
    return normalise_domain_target(text)


def normalise_dqs_key(text: str) -> str:
    """A Spamhaus DQS key: it becomes a label of every query name, so only letters and digits."""
    key = text.strip().lower()
    if not _DQS_KEY.fullmatch(key):
        raise InvalidTarget("A DQS key is 8 to 64 letters and digits (as Spamhaus issued it).")
    return key


def target_label(kind: ZoneKind, target: str) -> str:
    """The part of the query name that names the target (before the zone)."""
    if kind is ZoneKind.DOMAIN:
        return normalise_domain_target(target)
    address = ipaddress.ip_address(normalise_address(target))
    if address.version == 4:
        return reverse_ipv4(str(address))
    return reverse_ipv6(str(address))


def query_name(kind: ZoneKind, target: str, zone: str, *, dqs_key: str = "") -> str:
    """The name to look up: `<target label>.<zone>`, or `<target label>.<key>.<zone>` for a
    Spamhaus DQS zone (`zone` is then the DQS zone, e.g. zen.dq.spamhaus.net).

    Raises InvalidTarget when the name would exceed DNS's 253 characters (a long domain under a
    long zone), or for a malformed target.
    """
    parts = [target_label(kind, target)]
    if dqs_key:
        parts.append(normalise_dqs_key(dqs_key))
    parts.append(zone)
    name = ".".join(parts)
    if len(name) > MAX_NAME:
        raise InvalidTarget(f"{target} under {zone} makes a name longer than DNS allows.")
    return name


def probe_name(kind: ZoneKind, zone: str, *, dqs_key: str = "") -> str:
    """RFC 5782 section 5: the entry every list must NOT have (127.0.0.1; the name `invalid`).

    A list that answers it lists everything (its domain lapsed and was parked behind a wildcard,
    or it was shut down that way): none of its answers may be read as a listing.
    """
    if kind is ZoneKind.IP:
        return query_name(kind, "127.0.0.1", zone, dqs_key=dqs_key)
    return ".".join(["invalid", *([normalise_dqs_key(dqs_key)] if dqs_key else []), zone])


def address_version(target: str) -> int:
    return ipaddress.ip_address(target).version
