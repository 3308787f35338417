"""MX check: at least two mail exchangers, each a real host name with its own address. Pure."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import Lookup, LookupStatus, Net, Resolving, host_addresses
from dns_records.results import CheckOutcome, Finding, outcome_from_findings
from dns_records.status import CheckStatus

NAME = "mx"
# A domain's zone is a stranger's: a thousand MX records, or a host with a thousand addresses,
# must not cost a thousand lookups and a megabyte of stored details. Senders try a handful of
# MX hosts in preference order, so the first twenty (ten addresses each) are what mail meets.
MAX_MX_HOSTS = 20
MAX_ADDRESSES_PER_HOST = 10


@dataclass(frozen=True)
class MxHost:
    preference: int
    host: str


def parse_mx(records: tuple[str, ...]) -> list[MxHost]:
    hosts = []
    for record in records:
        preference, _, host = record.partition(" ")
        hosts.append(MxHost(int(preference), host.strip().rstrip(".") or "."))
    return sorted(hosts, key=lambda h: (h.preference, h.host))


def is_null_mx(hosts: list[MxHost]) -> bool:
    return len(hosts) == 1 and hosts[0].host == "." and hosts[0].preference == 0


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass
class MxLookups:
    domain: str
    mx: Lookup
    addresses: dict[str, list[Lookup]] = field(default_factory=dict)  # by host: [A, AAAA]

    def hosts(self) -> list[str]:
        """The MX host names, without a null MX's '.'."""
        return [h.host for h in parse_mx(self.mx.records) if h.host != "."] if self.mx.ok else []

    def is_null(self) -> bool:
        return self.mx.ok and is_null_mx(parse_mx(self.mx.records))

    def address_owners(self) -> dict[str, str]:
        """Each address of the MX hosts looked up (MAX_ADDRESSES_PER_HOST of each), with the
        host it belongs to."""
        result: dict[str, str] = {}
        for host, lookups in self.addresses.items():
            for address in host_addresses(lookups)[:MAX_ADDRESSES_PER_HOST]:
                result.setdefault(address, host)
        return result


def mx_lookups(domain: str, resolver: Resolving, *, max_hosts: int = MAX_MX_HOSTS) -> MxLookups:
    """The MX records and the addresses of the first `max_hosts` hosts by preference; shared by
    the MX, rDNS, SPF and MTA-STS checks (a caching resolver asks each question once)."""
    lookups = MxLookups(domain, resolver.lookup(domain, "MX"))
    for host in lookups.hosts()[:max_hosts]:
        found = list(resolver.addresses(host))
        # An alias to another zone comes back from an authoritative server as a bare CNAME
        # with no address: ask for the CNAME itself to tell it from a missing host.
        if not host_addresses(found):
            found.append(resolver.lookup(host, "CNAME"))
        lookups.addresses[host] = found
    return lookups


def _alias_target(host: str, lookups: list[Lookup]) -> str | None:
    for lookup in lookups:
        if lookup.ok and lookup.rdtype == "CNAME" and lookup.records:
            return lookup.records[0]
        if lookup.ok and lookup.canonical_name and lookup.canonical_name != host:
            return lookup.canonical_name
    return None


def evaluate_mx(lookups: MxLookups) -> CheckOutcome:
    mx = lookups.mx
    details: dict[str, Any] = {}
    if mx.failed:
        return CheckOutcome(
            NAME,
            CheckStatus.ERROR,
            f"Could not look up the MX records: {mx.reason}",
            details,
        )
    if mx.status is LookupStatus.NXDOMAIN:
        return CheckOutcome(
            NAME, CheckStatus.FAIL, f"{lookups.domain} does not exist (NXDOMAIN).", details
        )
    if mx.status is LookupStatus.NODATA:
        return CheckOutcome(
            NAME,
            CheckStatus.FAIL,
            "No MX records: mail for this domain has nowhere defined to go.",
            details,
        )
    hosts = parse_mx(mx.records)
    if is_null_mx(hosts):
        details["null_mx"] = True
        return CheckOutcome(
            NAME,
            CheckStatus.OK,
            "Null MX (RFC 7505): this domain accepts no mail.",
            details,
        )
    findings: list[Finding] = []
    if any(h.host == "." for h in hosts):
        findings.append(
            Finding(
                CheckStatus.FAIL,
                "A null MX ('.') is mixed with real MX records (RFC 7505 forbids it)",
            )
        )
    rows = []
    if len(hosts) > MAX_MX_HOSTS:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                f"{len(hosts)} MX records: mailsec examined the first {MAX_MX_HOSTS} by "
                "preference (senders try only a few)",
            )
        )
        details["hosts_not_examined"] = len(hosts) - MAX_MX_HOSTS
    for host in hosts[:MAX_MX_HOSTS]:
        row: dict[str, Any] = {"preference": host.preference, "host": host.host, "addresses": []}
        rows.append(row)
        if host.host == ".":
            continue
        if _is_ip_literal(host.host):
            findings.append(
                Finding(CheckStatus.FAIL, f"MX {host.host} is an IP address; MX must name a host")
            )
            row["problem"] = "ip_literal"
            continue
        found = lookups.addresses.get(host.host, [])
        addresses = host_addresses(found)
        if len(addresses) > MAX_ADDRESSES_PER_HOST:
            findings.append(
                Finding(
                    CheckStatus.WARNING,
                    f"MX {host.host} has {len(addresses)} addresses: mailsec examined the "
                    f"first {MAX_ADDRESSES_PER_HOST}",
                )
            )
            row["addresses_not_examined"] = len(addresses) - MAX_ADDRESSES_PER_HOST
            addresses = addresses[:MAX_ADDRESSES_PER_HOST]
        row["addresses"] = addresses
        alias = _alias_target(host.host, found)
        if alias:
            row["cname"] = alias
            findings.append(
                Finding(
                    CheckStatus.FAIL,
                    f"MX {host.host} is a CNAME to {alias}; RFC 5321 forbids aliases",
                )
            )
        elif not addresses:
            errors = [lk.reason for lk in found if lk.failed]
            if errors:
                findings.append(
                    Finding(CheckStatus.ERROR, f"Could not resolve MX {host.host}: {errors[0]}")
                )
            else:
                findings.append(Finding(CheckStatus.FAIL, f"MX {host.host} has no address record"))
                row["problem"] = "no_address"
    details["hosts"] = rows
    usable = [row for row in rows if row["addresses"]]
    if len(hosts) == 1:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                "Only one MX: mail waits in senders' queues whenever it is down",
            )
        )
    elif len(usable) >= 2:
        owners: dict[str, list[str]] = {}
        for row in usable:
            for address in row["addresses"]:
                owners.setdefault(address, []).append(row["host"])
        shared = {a: hosts for a, hosts in owners.items() if len(hosts) > 1}
        if shared:
            address, sharing = next(iter(sorted(shared.items())))
            findings.append(
                Finding(
                    CheckStatus.WARNING,
                    f"MX hosts {' and '.join(sharing)} share the address {address}: they are not independent",
                )
            )
    return outcome_from_findings(
        NAME, findings, f"{len(hosts)} MX hosts, each with its own address", details
    )


def gather(context: CheckContext, net: Net) -> MxLookups:
    return mx_lookups(context.domain, net.resolver)


def verdict(context: CheckContext, lookups: MxLookups) -> CheckOutcome:
    return evaluate_mx(lookups)


CHECK = Check(name=NAME, label="MX", order=40, gather=gather, verdict=verdict)
