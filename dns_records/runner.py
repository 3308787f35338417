"""Runs the registered checks against the real world: the resolver, HTTPS and pyspf adapters.

`run_domain_checks` checks one context; `iter_many` checks many on a bounded thread pool, all
sharing one caching resolver, so a name that several domains (or organisations) depend on is
looked up once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial

from dns_records.bimi_assets import inspect_bimi
from dns_records.checks import CheckContext, all_checks
from dns_records.lookups import BimiAsset, Net, SpfEvaluation
from dns_records.resolver import CachingResolver, Resolver
from dns_records.results import CheckOutcome
from dns_records.spf_eval import evaluate_spf
from dns_records.web import fetch_https


def net_for(resolver: Resolver) -> Net:
    """The adapters a run of checks uses, all resolving through `resolver`."""

    def check_host(ip: str, domain: str) -> SpfEvaluation:
        return evaluate_spf(ip, domain, resolver=resolver)

    def bimi(domain: str, logo: str, authority: str) -> list[BimiAsset]:
        return inspect_bimi(domain, logo, authority, resolver=resolver, fetch=fetch_https)

    return Net(
        resolver=resolver,
        fetch_https=partial(fetch_https),
        check_host=check_host,
        inspect_bimi=bimi,
    )


def run_domain_checks(
    context: CheckContext, resolver: Resolver, *, only: Collection[str] | None = None
) -> list[CheckOutcome]:
    """The checks of one domain (all, or those named in `only`), in the registry's order."""
    cached = resolver if isinstance(resolver, CachingResolver) else CachingResolver(resolver)
    net = net_for(cached)
    return [
        check.run(context, net) for check in all_checks() if only is None or check.name in set(only)
    ]


def iter_many[K](
    contexts: Iterable[tuple[K, CheckContext]],
    resolver: Resolver,
    *,
    only: Collection[str] | None = None,
    max_workers: int = 16,
) -> Generator[tuple[K, list[CheckOutcome]]]:
    """Check many contexts on a bounded thread pool, yielding each (key, outcomes) as it completes.

    Lookups wait on the network, not on each other. If the consumer stops early (a Celery soft
    time limit, say), queued contexts are dropped and running ones have every further lookup
    answered with an error at once, so the pool winds down in moments instead of minutes.
    """
    items = list(contexts)
    cancelled = threading.Event()
    shared = CachingResolver(resolver, cancelled=cancelled)
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items) or 1)))

    def check(key: K, context: CheckContext) -> tuple[K, list[CheckOutcome]]:
        return key, run_domain_checks(context, shared, only=only)

    try:
        for future in as_completed([pool.submit(check, key, ctx) for key, ctx in items]):
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
    """Check bare domain names (no organisation's context), by name: the benchmark's entry."""
    contexts = ((name, CheckContext(name, report_address(name))) for name in domains)
    return dict(iter_many(contexts, resolver, only=only, max_workers=max_workers))
