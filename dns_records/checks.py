"""Runs each DNS check: the lookups through the resolver adapter, then the pure verdict."""

from __future__ import annotations

from dns_records.delegation import evaluate_delegation
from dns_records.resolver import Lookup, Resolver
from dns_records.results import CheckOutcome


def check_delegation(domain: str, resolver: Resolver) -> CheckOutcome:
    ns = resolver.lookup(domain, "NS")
    soa = resolver.lookup(domain, "SOA")
    ns_addresses: dict[str, list[Lookup]] = {}
    if ns.ok:
        for host in ns.records:
            ns_addresses[host] = list(resolver.addresses(host))
    outcome = evaluate_delegation(domain, ns, soa, ns_addresses)
    outcome.details.setdefault("resolvers", resolver.nameservers)
    return outcome
