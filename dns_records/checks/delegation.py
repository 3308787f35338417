"""Delegation check: does the domain exist as a zone, with a SOA and reachable name servers?

Pure: takes lookups already made, returns a verdict. A failed lookup yields `error`, never `fail`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import Lookup, LookupStatus, Net
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus

NAME = "delegation"

# Name servers whose addresses are looked up: the root zone has thirteen; a zone listing
# hundreds only multiplies lookups (its NS answer would not even fit a UDP response).
MAX_NS_HOSTS = 13

SOA_FIELDS = ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")


def parse_soa(text: str) -> dict[str, Any]:
    parts = text.split()
    if len(parts) != len(SOA_FIELDS):
        return {"raw": text}
    soa: dict[str, Any] = dict(
        zip(SOA_FIELDS[:2], (p.rstrip(".").lower() for p in parts[:2]), strict=True)
    )
    for key, value in zip(SOA_FIELDS[2:], parts[2:], strict=True):
        soa[key] = int(value) if value.isdigit() else value
    return soa


def evaluate_delegation(
    domain: str, ns: Lookup, soa: Lookup, ns_addresses: Mapping[str, Sequence[Lookup]]
) -> CheckOutcome:
    def outcome(status: CheckStatus, summary: str, **details: Any) -> CheckOutcome:
        return CheckOutcome(NAME, status, summary, details)

    if ns.failed:
        return outcome(
            CheckStatus.ERROR, f"Could not look up the NS records: {ns.reason}", lookup=ns.reason
        )
    if ns.status is LookupStatus.NXDOMAIN:
        return outcome(CheckStatus.FAIL, f"{domain} does not exist in DNS (NXDOMAIN).")
    if soa.failed:
        return outcome(
            CheckStatus.ERROR, f"Could not look up the SOA record: {soa.reason}", lookup=soa.reason
        )
    if ns.status is LookupStatus.NODATA:
        return outcome(
            CheckStatus.FAIL,
            f"{domain} has no NS records: it is not a delegated zone.",
            hint="Delegate the domain at its registrar to at least two name servers.",
        )
    if not soa.ok:
        return outcome(CheckStatus.FAIL, f"{domain} has NS records but no SOA record at its apex.")

    soa_fields = parse_soa(soa.records[0])
    servers: list[dict[str, Any]] = []
    for host in ns.records[:MAX_NS_HOSTS]:
        lookups = ns_addresses.get(host, ())
        addresses = sorted({a for lookup in lookups if lookup.ok for a in lookup.records})
        if addresses:
            state = "ok"
        elif any(lookup.failed for lookup in lookups):
            state = "error"
        else:
            state = "no_address"
        reasons = [f"{lookup.rdtype}: {lookup.reason}" for lookup in lookups if lookup.failed]
        servers.append({"name": host, "addresses": addresses, "state": state, "errors": reasons})
    details: dict[str, Any] = {"nameservers": servers, "soa": soa_fields, "ttl": ns.ttl}
    if len(ns.records) > MAX_NS_HOSTS:
        details["nameservers_not_examined"] = len(ns.records) - MAX_NS_HOSTS

    lame = [s["name"] for s in servers if s["state"] == "no_address"]
    if lame:
        return outcome(
            CheckStatus.FAIL,
            f"Name server {', '.join(lame)} has no address record (lame delegation).",
            **details,
        )
    unknown = [s["name"] for s in servers if s["state"] == "error"]
    if unknown:
        return outcome(
            CheckStatus.ERROR,
            f"Could not resolve the address of name server {', '.join(unknown)}.",
            **details,
        )
    if len(servers) < 2:
        return outcome(
            CheckStatus.WARNING,
            f"Only one name server ({servers[0]['name']}); RFC 2182 asks for at least two.",
            **details,
        )
    distinct = {a for s in servers for a in s["addresses"]}
    if len(distinct) < 2:
        return outcome(
            CheckStatus.WARNING,
            "All name servers share one address: one outage takes the domain off the net.",
            **details,
        )
    serial = soa_fields.get("serial", "?")
    if len(ns.records) > MAX_NS_HOSTS:
        return outcome(
            CheckStatus.WARNING,
            f"{len(ns.records)} name servers: mailsec examined the first {MAX_NS_HOSTS}; "
            f"resolvers try only a few. SOA serial {serial}.",
            **details,
        )
    return outcome(
        CheckStatus.OK,
        f"Delegated to {len(servers)} name servers; SOA serial {serial}.",
        **details,
    )


@dataclass(frozen=True)
class DelegationLookups:
    """The zone serving the domain (its own, or the nearest parent), its NS and SOA lookups."""

    zone: str
    ns: Lookup
    soa: Lookup
    ns_addresses: dict[str, list[Lookup]] = field(default_factory=dict)
    resolvers: list[str] = field(default_factory=list)


def gather(context: CheckContext, net: Net) -> DelegationLookups:
    resolver = net.resolver
    zone = context.domain
    ns = resolver.lookup(zone, "NS")
    # A name that exists without NS records lives inside its parent's zone (mail.example.com
    # in example.com): that zone's delegation is the one that matters.
    while ns.status is LookupStatus.NODATA and zone.count(".") > 1:
        zone = zone.split(".", 1)[1]
        ns = resolver.lookup(zone, "NS")
    soa = resolver.lookup(zone, "SOA")
    hosts = ns.records[:MAX_NS_HOSTS] if ns.ok else ()
    addresses = {host: list(resolver.addresses(host)) for host in hosts}
    return DelegationLookups(zone, ns, soa, addresses, resolver.nameservers)


def verdict(context: CheckContext, found: DelegationLookups) -> CheckOutcome:
    outcome = evaluate_delegation(found.zone, found.ns, found.soa, found.ns_addresses)
    outcome.details.setdefault("resolvers", found.resolvers)
    if found.zone == context.domain:
        return outcome
    outcome.details["zone"] = found.zone
    return CheckOutcome(
        outcome.name,
        outcome.status,
        f"Served by its parent zone {found.zone}. {outcome.summary}",
        outcome.details,
    )


CHECK = Check(name=NAME, label="Delegation (NS and SOA)", order=10, gather=gather, verdict=verdict)
