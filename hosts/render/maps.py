"""Postfix access maps a host's policy needs: the local IP blacklist as a `cidr:` table. Pure.

The blacklist itself belongs to the blocklists app (which also renders such a map for its own
view); hosts sits below blocklists in the layers and cannot import it, so the entries arrive
here as plain `BlacklistEntry` values and this module writes the file a deployment pushes.
Postfix reads cidr tables directly (no postmap), first match wins, so the most specific
networks come first and a narrower entry's reason wins; the same entries always give the same
bytes. IPv6 networks are written `[2001:db8::]/32`, as cidr_table(5) documents.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from hosts.policy import BlacklistEntry, parse_network

CLIENT_BLACKLIST = "mailsec/client_blacklist.cidr"  # relative to the Postfix config directory
DEFAULT_REASON = "Blocked by local policy"
HEADER = (
    b"# mailsec: the organisation's local IP blacklist (do not edit; changes are overwritten)\n"
)


def _key(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if network.version == 6:
        return f"[{network.network_address}]/{network.prefixlen}"
    return str(network)


def render_client_blacklist(entries: Iterable[BlacklistEntry]) -> bytes:
    """The cidr table refusing each entry's network with its reason.

    Entries must have passed hosts.policy.blacklist_errors: a malformed one raises ValueError.
    """
    rows: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for entry in entries:
        network = parse_network(entry.network)
        reason = " ".join(entry.reason.split()) or DEFAULT_REASON
        if network not in rows or reason < rows[network]:
            rows[network] = reason
    ordered = sorted(
        rows.items(),
        key=lambda item: (item[0].version, -item[0].prefixlen, int(item[0].network_address)),
    )
    body = "".join(f"{_key(network)} REJECT {reason}\n" for network, reason in ordered)
    return HEADER + body.encode("ascii")
