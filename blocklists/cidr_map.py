"""The local IP blacklist rendered as a Postfix `cidr:` access map (control 2). Pure.

Used by `check_client_access cidr:/etc/postfix/mailsec_blacklist.cidr` in
`smtpd_client_restrictions`; the managed-hosts app pushes the file. One line per network,
`<network>/<prefix> REJECT <reason>`, most specific networks first (Postfix uses the first
match, so a narrower entry's reason wins), then by address: the same entries always render the
same bytes, so an unchanged map is never redeployed. Entries expired at `now` are left out.
IPv6 networks are written as Postfix's cidr_table(5) reads them, `[2001:db8::]/32`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

MAX_REASON = 200
DEFAULT_REASON = "Blocked by local policy"
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_SPACES = re.compile(r"\s+")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CidrEntry:
    """One entry of the local blacklist: a network, why, and until when (None: for good)."""

    network: str
    reason: str = ""
    expires_at: datetime | None = None


def parse_network(text: str) -> Network:
    """An address or network (`192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`) as a network.

    Host bits set (`192.0.2.7/24`) are refused rather than silently cleared: the admin meant
    something, and mailsec should not guess which.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP address or network: {exc}") from None


def sanitise_reason(text: str) -> str:
    """The reason as Postfix may send it in an SMTP reply: printable ASCII on one line.

    Anything else (newlines that would start another map entry, control characters, non-ASCII
    that SMTP replies cannot carry) becomes a space or '?'.
    """
    one_line = _SPACES.sub(" ", text).strip()
    safe = _UNSAFE.sub("?", one_line)[:MAX_REASON].strip()
    return safe or DEFAULT_REASON


def cidr_key(network: Network) -> str:
    if network.version == 6:
        return f"[{network.network_address}]/{network.prefixlen}"
    return str(network)


def active_entries(entries: Iterable[CidrEntry], *, now: datetime) -> list[CidrEntry]:
    return [e for e in entries if e.expires_at is None or e.expires_at > now]


def render_cidr_map(entries: Iterable[CidrEntry], *, now: datetime) -> str:
    """The map's text: a comment line, then one REJECT line per network in force at `now`."""
    rows: dict[Network, str] = {}
    for entry in active_entries(entries, now=now):
        network = parse_network(entry.network)
        reason = sanitise_reason(entry.reason)
        # One line per network: two entries for the same network keep the first reason by order.
        if network not in rows or reason < rows[network]:
            rows[network] = reason
    ordered = sorted(
        rows.items(),
        key=lambda item: (item[0].version, -item[0].prefixlen, int(item[0].network_address)),
    )
    lines = [f"# mailsec local IP blacklist: {len(ordered)} entries (generated; do not edit)"]
    lines += [f"{cidr_key(network)}\tREJECT {reason}" for network, reason in ordered]
    return "\n".join(lines) + "\n"
