"""Runs the DNS checks: the lookups through the resolver adapter, then each pure verdict.

`run_domain_checks` checks one domain; `iter_many` (and `run_many`, which collects it) checks many
at once on a bounded thread pool, each domain with its own short-lived answer cache so its checks
share lookups.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime

from dns_records.bimi import evaluate_bimi
from dns_records.delegation import evaluate_delegation
from dns_records.dmarc import (
    DmarcLookups,
    DmarcSyntaxError,
    authorisation_name,
    evaluate_dmarc,
    external_report_domains,
    is_dmarc,
    organisational_domain,
    parse_dmarc,
    suggest_dmarc,
)
from dns_records.dnssec import evaluate_dnssec
from dns_records.models import CheckName, CheckStatus
from dns_records.mta_sts import evaluate_mta_sts, evaluate_tls_rpt
from dns_records.mx import MxLookups, evaluate_mx, host_addresses, is_null_mx, parse_mx
from dns_records.rdns import ReverseLookups, evaluate_rdns
from dns_records.resolver import CachingResolver, Lookup, LookupStatus, Resolver
from dns_records.results import CheckOutcome
from dns_records.spf import (
    SpfNode,
    effective_terms,
    evaluate_spf_tree,
    suggest_spf,
    term_target,
)
from dns_records.spf_eval import evaluate_spf
from dns_records.web import fetch_https

ALL_CHECKS = [
    CheckName.DELEGATION,
    CheckName.SPF,
    CheckName.DMARC,
    CheckName.MX,
    CheckName.RDNS,
    CheckName.MTA_STS,
    CheckName.TLS_RPT,
    CheckName.DNSSEC,
    CheckName.BIMI,
]
# Records fetched for one SPF tree at most: ten lookups allowed, so this is well past any verdict.
MAX_SPF_NODES = 40
MAX_EVALUATED_ADDRESSES = 10


def check_delegation(domain: str, resolver: Resolver) -> CheckOutcome:
    """The delegation of the domain's zone: its own, or the nearest parent zone serving it."""
    zone = domain
    ns = resolver.lookup(zone, "NS")
    # A name that exists without NS records lives inside its parent's zone (mail.example.com
    # in example.com): that zone's delegation is the one that matters.
    while ns.status is LookupStatus.NODATA and zone.count(".") > 1:
        zone = zone.split(".", 1)[1]
        ns = resolver.lookup(zone, "NS")
    soa = resolver.lookup(zone, "SOA")
    ns_addresses: dict[str, list[Lookup]] = {}
    if ns.ok:
        for host in ns.records:
            ns_addresses[host] = list(resolver.addresses(host))
    outcome = evaluate_delegation(zone, ns, soa, ns_addresses)
    outcome.details.setdefault("resolvers", resolver.nameservers)
    if zone != domain:
        outcome.details["zone"] = zone
        outcome = CheckOutcome(
            outcome.name,
            outcome.status,
            f"Served by its parent zone {zone}. {outcome.summary}",
            outcome.details,
        )
    return outcome


def build_spf_tree(domain: str, resolver: Resolver) -> SpfNode:
    """Look up a domain's SPF record and, recursively, what its include/redirect terms name.

    A hostile record set can fan out exponentially (each record including several others that
    include each other): the tree stops growing after MAX_SPF_NODES records, far past the ten
    lookups any receiver allows, and the verdict reports the truncation as a fail.
    """
    budget = [MAX_SPF_NODES]
    return _spf_node(domain, resolver, via="", seen=frozenset(), budget=budget)


def _spf_node(
    domain: str, resolver: Resolver, *, via: str, seen: frozenset[str], budget: list[int]
) -> SpfNode:
    if domain in seen:
        return SpfNode(domain, Lookup(domain, "TXT", LookupStatus.OK), via=via, loop=True)
    if budget[0] <= 0:
        return SpfNode(domain, Lookup(domain, "TXT", LookupStatus.OK), via=via, truncated=True)
    budget[0] -= 1
    node = SpfNode(domain, resolver.lookup(domain, "TXT"), via=via)
    record = node.record()
    if record is None:
        return node
    seen = seen | {domain}
    for term in effective_terms(record):
        target = term_target(term, domain)
        if term.name in {"include", "redirect"}:
            if target is None:
                lookup = Lookup(term.value, "TXT", LookupStatus.OK)
                node.children.append(SpfNode(term.value, lookup, via=str(term), unexpanded=True))
            else:
                child = _spf_node(target, resolver, via=str(term), seen=seen, budget=budget)
                node.children.append(child)
        elif term.kind == "mechanism" and target is not None:
            if term.name in {"a", "exists"}:
                node.term_lookups[str(term)] = [resolver.lookup(target, "A")]
            elif term.name == "mx":
                node.term_lookups[str(term)] = [resolver.lookup(target, "MX")]
    return node


def _mx_lookups(domain: str, resolver: Resolver) -> MxLookups:
    lookups = MxLookups(domain, resolver.lookup(domain, "MX"))
    if lookups.mx.ok:
        for host in parse_mx(lookups.mx.records):
            if host.host != ".":
                found = list(resolver.addresses(host.host))
                # An alias to another zone comes back from an authoritative server as a bare
                # CNAME with no address: ask for the CNAME itself to tell it from a missing host.
                if not host_addresses(found):
                    found.append(resolver.lookup(host.host, "CNAME"))
                lookups.addresses[host.host] = found
    return lookups


def _mx_addresses(mx: MxLookups) -> dict[str, str]:
    """Each address of the MX hosts, with the host it belongs to."""
    result: dict[str, str] = {}
    for host, lookups in mx.addresses.items():
        for address in host_addresses(lookups):
            result.setdefault(address, host)
    return result


def check_spf(
    domain: str, resolver: Resolver, mx: MxLookups, host_addresses_: list[str]
) -> CheckOutcome:
    tree = build_spf_tree(domain, resolver)
    senders: list[tuple[str, str, str]] = [(a, "Managed host", "fail") for a in host_addresses_]
    if not senders:
        senders = [(a, f"MX {h}", "warning") for a, h in _mx_addresses(mx).items()]
    evaluations = []
    if len(tree.spf_records()) == 1:
        for address, role, severity in senders[:MAX_EVALUATED_ADDRESSES]:
            result = evaluate_spf(address, domain, resolver=resolver)
            evaluations.append(
                {"ip": address, "role": role, "severity": severity, "result": result.result,
                 "explanation": result.explanation}
            )  # fmt: skip
    outcome = evaluate_spf_tree(tree, evaluations)
    if outcome.status in {CheckStatus.FAIL, CheckStatus.WARNING}:
        records = tree.spf_records()
        current = records[0] if len(records) == 1 else None
        mx_refused = any(e["result"] != "pass" and e["role"].startswith("MX") for e in evaluations)
        value = suggest_spf(domain, current, host_addresses_, authorise_mx=mx_refused)
        if value != current:
            outcome.details["suggested_record"] = {"name": domain, "type": "TXT", "value": value}
    return outcome


def check_dmarc(domain: str, resolver: Resolver, report_address: str) -> CheckOutcome:
    name = f"_dmarc.{domain}"
    lookups = DmarcLookups(domain, name, resolver.lookup(name, "TXT"))
    has_record = lookups.txt.ok and any(is_dmarc(r) for r in lookups.txt.records)
    organisational = organisational_domain(domain)
    if not has_record and not lookups.txt.failed and organisational != domain:
        lookups.fallback_name = f"_dmarc.{organisational}"
        lookups.fallback = resolver.lookup(lookups.fallback_name, "TXT")
    chosen = lookups.fallback if lookups.fallback is not None else lookups.txt
    records = [r for r in chosen.records if is_dmarc(r)] if chosen.ok else []
    parsed = None
    if len(records) == 1:
        try:
            parsed = parse_dmarc(records[0])
        except DmarcSyntaxError:
            parsed = None
    if parsed is not None:
        policy_domain = organisational if chosen is lookups.fallback else domain
        for report_domain in external_report_domains(policy_domain, parsed):
            lookups.authorisations[report_domain] = resolver.lookup(
                authorisation_name(policy_domain, report_domain), "TXT"
            )
    outcome = evaluate_dmarc(lookups)
    if outcome.status in {CheckStatus.FAIL, CheckStatus.WARNING}:
        outcome.details["suggested_record"] = {
            "name": name, "type": "TXT",
            "value": suggest_dmarc(
                domain, parsed, report_address, inherited=chosen is lookups.fallback
            ),
        }  # fmt: skip
    return outcome


POLICY_FETCH_TIMEOUT = 10.0


def check_mta_sts(domain: str, resolver: Resolver, mx: MxLookups, stamp: str) -> CheckOutcome:
    """The record, the policy host, and the policy itself, fetched over verified HTTPS."""
    txt = resolver.lookup(f"_mta-sts.{domain}", "TXT")
    host = f"mta-sts.{domain}"
    host_lookups = list(resolver.addresses(host))
    policy = None
    if txt.ok and any(r.split(";", 1)[0].strip() == "v=STSv1" for r in txt.records):
        addresses = host_addresses(host_lookups)
        if addresses:
            policy = fetch_https(
                host, "/.well-known/mta-sts.txt", addresses, timeout=POLICY_FETCH_TIMEOUT
            )
    mx_hosts = [h.host for h in parse_mx(mx.mx.records) if h.host != "."] if mx.mx.ok else []
    return evaluate_mta_sts(
        domain, txt, host_lookups, suggestion=f"v=STSv1; id={stamp}",
        policy=policy, mx_hosts=mx_hosts,
    )  # fmt: skip


def check_rdns(mx: MxLookups, mx_outcome: CheckOutcome, resolver: Resolver) -> CheckOutcome:
    lookups = ReverseLookups(
        addresses=_mx_addresses(mx),
        mx_usable=mx_outcome.status is not CheckStatus.ERROR,
        null_mx=mx.mx.ok and is_null_mx(parse_mx(mx.mx.records)),
    )
    for address in lookups.addresses:
        ptr = resolver.reverse(address)
        lookups.ptr[address] = ptr
        if ptr.ok:
            for name in ptr.records:
                lookups.forward[name] = list(resolver.addresses(name))
    return evaluate_rdns(lookups)


def run_domain_checks(
    domain: str,
    resolver: Resolver,
    *,
    report_address: str,
    host_addresses_: list[str] | None = None,
    only: Collection[str] | None = None,
    now: datetime | None = None,
) -> list[CheckOutcome]:
    """The checks of one domain (all, or those named in `only`) sharing one answer cache."""
    cached = resolver if isinstance(resolver, CachingResolver) else CachingResolver(resolver)
    wanted = set(only) if only is not None else set(ALL_CHECKS)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")
    mx: MxLookups | None = None
    mx_outcome: CheckOutcome | None = None
    if wanted & {CheckName.MX, CheckName.RDNS, CheckName.SPF, CheckName.MTA_STS}:
        mx = _mx_lookups(domain, cached)
        mx_outcome = evaluate_mx(mx)
    runners: dict[str, Callable[[], CheckOutcome]] = {
        CheckName.DELEGATION: lambda: check_delegation(domain, cached),
        CheckName.SPF: lambda: check_spf(domain, cached, _need(mx), host_addresses_ or []),
        CheckName.DMARC: lambda: check_dmarc(domain, cached, report_address),
        CheckName.MX: lambda: _need(mx_outcome),
        CheckName.RDNS: lambda: check_rdns(_need(mx), _need(mx_outcome), cached),
        CheckName.MTA_STS: lambda: check_mta_sts(domain, cached, _need(mx), stamp),
        CheckName.TLS_RPT: lambda: evaluate_tls_rpt(
            domain, cached.lookup(f"_smtp._tls.{domain}", "TXT"),
            suggestion=f"v=TLSRPTv1; rua=mailto:{report_address}",
        ),
        CheckName.DNSSEC: lambda: evaluate_dnssec(domain, cached.lookup(domain, "DNSKEY")),
        CheckName.BIMI: lambda: evaluate_bimi(domain, cached.lookup(f"default._bimi.{domain}", "TXT")),
    }  # fmt: skip
    return [runners[name]() for name in ALL_CHECKS if name in wanted]


def _need[T](value: T | None) -> T:
    assert value is not None
    return value


def iter_many(
    domains: Iterable[str],
    resolver: Resolver,
    *,
    report_address: Callable[[str], str],
    only: Collection[str] | None = None,
    max_workers: int = 16,
) -> Generator[tuple[str, list[CheckOutcome]]]:
    """Check many domains on a bounded thread pool, yielding each as it completes.

    Lookups wait on the network, not on each other. If the consumer stops early (a Celery soft
    time limit, say), queued domains are dropped and running ones have every further lookup
    answered with an error at once, so the pool winds down in moments instead of minutes.
    """
    names = list(domains)
    cancelled = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(names) or 1)))

    def check(name: str) -> tuple[str, list[CheckOutcome]]:
        cached = CachingResolver(resolver, cancelled=cancelled)
        return name, run_domain_checks(name, cached, report_address=report_address(name), only=only)

    try:
        for future in as_completed([pool.submit(check, name) for name in names]):
            yield future.result()
    finally:
        cancelled.set()
        pool.shutdown(wait=False, cancel_futures=True)


def run_many(
    domains: Iterable[str],
    resolver: Resolver,
    *,
    report_address: Callable[[str], str],
    only: Collection[str] | None = None,
    max_workers: int = 16,
) -> dict[str, list[CheckOutcome]]:
    """Every result of `iter_many`, by domain name."""
    return dict(
        iter_many(
            domains, resolver, report_address=report_address, only=only, max_workers=max_workers
        )
    )
