"""What an organisation polls: every source of targets is a provider, registered here.

A provider takes an organisation and the fan-out resolver and returns the addresses and domains
it knows, each with where it came from. The built-in ones give every domain of the organisation
(for the domain lists), every address of every MX host of those domains, and every address of
every managed host, source "host <name>" (for the IP lists). The managed-hosts app sits below
this one, so its provider is a function here reading its model; an app above (none yet) would
call `register_target_provider` from its own `AppConfig.ready()`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from blocklists.zones import ZoneKind
from dns_records.checks.mx import MAX_ADDRESSES_PER_HOST, MAX_MX_HOSTS, is_null_mx, parse_mx
from dns_records.lookups import Lookup, host_addresses
from dns_records.models import Domain
from dns_records.resolver import Resolver
from hosts.models import Host
from mailsec.models import Organisation


@dataclass(frozen=True)
class FoundTarget:
    kind: ZoneKind
    value: str
    source: str
    domain_id: int | None = None


@dataclass
class FoundTargets:
    """What the providers found; `errors` (lookups that failed) mean the list may be short, so
    no target is retired on the strength of it."""

    targets: list[FoundTarget] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


TargetProvider = Callable[[Organisation, Resolver, int], FoundTargets]
_providers: list[TargetProvider] = []


def register_target_provider(provider: TargetProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def find_targets(organisation: Organisation, resolver: Resolver, concurrency: int) -> FoundTargets:
    found = FoundTargets()
    for provider in _providers:
        part = provider(organisation, resolver, concurrency)
        found.targets += part.targets
        found.errors += part.errors
    return found


def _domains(organisation: Organisation) -> list[Domain]:
    return list(Domain.objects.filter(organisation=organisation).order_by("name"))


def domain_targets(
    organisation: Organisation, resolver: Resolver, concurrency: int
) -> FoundTargets:
    """Every domain of the organisation, for the domain blocklists."""
    return FoundTargets(
        [
            FoundTarget(ZoneKind.DOMAIN, d.name, f"domain {d.name}", d.pk)
            for d in _domains(organisation)
        ]
    )


def mx_address_targets(
    organisation: Organisation, resolver: Resolver, concurrency: int
) -> FoundTargets:
    """Every address of the first MX hosts of every domain (as the mx check examines them),
    looked up in two waves through the fan-out: the MX records, then the hosts' A and AAAA."""
    domains = _domains(organisation)
    found = FoundTargets()
    mx_answers = resolver.lookup_many([(d.name, "MX") for d in domains], concurrency=concurrency)
    hosts_of: dict[int, list[str]] = {}
    for domain, answer in zip(domains, mx_answers, strict=True):
        if answer.failed:
            found.errors.append(f"MX of {domain.name}: {answer.reason}")
            continue
        if not answer.ok:
            continue
        hosts = parse_mx(answer.records)
        if is_null_mx(hosts):
            continue
        hosts_of[domain.pk] = [h.host for h in hosts if h.host != "."][:MAX_MX_HOSTS]
    names = sorted({host for hosts in hosts_of.values() for host in hosts})
    questions = [(host, rdtype) for host in names for rdtype in ("A", "AAAA")]
    answers = resolver.lookup_many(questions, concurrency=concurrency)
    by_host: dict[str, list[Lookup]] = {}
    for (host, _rdtype), answer in zip(questions, answers, strict=True):
        by_host.setdefault(host, []).append(answer)
        if answer.failed:
            found.errors.append(f"{_rdtype} of {host}: {answer.reason}")
    for domain in domains:
        for host in hosts_of.get(domain.pk, []):
            for address in host_addresses(by_host.get(host, []))[:MAX_ADDRESSES_PER_HOST]:
                # One spelling per address (dnspython writes ::ffff:127.0.0.2 for ::ffff:7f00:2).
                canonical = str(ipaddress.ip_address(address))
                found.targets.append(
                    FoundTarget(ZoneKind.IP, canonical, f"MX {host} of {domain.name}", domain.pk)
                )
    return found


def _canonical(text: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return None


def host_address_targets(
    organisation: Organisation, resolver: Resolver, concurrency: int
) -> FoundTargets:
    """Every address of every managed host: the addresses the host reported (`facts`), else its
    address when it is an IP address, else the A and AAAA records of its name."""
    hosts = list(Host.objects.filter(organisation=organisation).prefetch_related("domains"))
    found = FoundTargets()
    addresses: dict[int, list[str]] = {}
    to_resolve: list[Host] = []
    for host in hosts:
        reported = host.facts.get("addresses") if isinstance(host.facts, dict) else None
        if isinstance(reported, list):
            addresses[host.pk] = [a for a in map(_canonical, reported) if a]
        elif (address := _canonical(host.address)) is not None:
            addresses[host.pk] = [address]
        else:
            to_resolve.append(host)
    questions = [(host.address, rdtype) for host in to_resolve for rdtype in ("A", "AAAA")]
    answers = resolver.lookup_many(questions, concurrency=concurrency)
    for (name, rdtype), answer in zip(questions, answers, strict=True):
        if answer.failed:
            found.errors.append(f"{rdtype} of {name}: {answer.reason}")
    for index, host in enumerate(to_resolve):
        lookups = answers[2 * index : 2 * index + 2]
        addresses[host.pk] = [a for a in map(_canonical, host_addresses(lookups)) if a]
    for host in hosts:
        domain_ids: list[int | None] = [d.pk for d in host.domains.all()] or [None]
        for address in addresses.get(host.pk, [])[:MAX_ADDRESSES_PER_HOST]:
            for domain_id in domain_ids:
                found.targets.append(
                    FoundTarget(ZoneKind.IP, address, f"host {host.name}", domain_id)
                )
    return found


def register_builtin_providers() -> None:
    register_target_provider(domain_targets)
    register_target_provider(mx_address_targets)
    register_target_provider(host_address_targets)


def merge(targets: Sequence[FoundTarget]) -> dict[tuple[ZoneKind, str], tuple[list[str], set[int]]]:
    """The targets by (kind, value), each with its sources and its domains' ids."""
    merged: dict[tuple[ZoneKind, str], tuple[list[str], set[int]]] = {}
    for target in targets:
        sources, domain_ids = merged.setdefault((target.kind, target.value), ([], set()))
        if target.source not in sources:
            sources.append(target.source)
        if target.domain_id is not None:
            domain_ids.add(target.domain_id)
    return merged
