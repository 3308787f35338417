"""Runs the registered checks against the real world: the resolver, HTTPS and pyspf adapters.

`run_domain_checks` checks one context; `iter_many` checks many on a bounded thread pool, all
sharing one caching resolver, so a name that several domains (or organisations) depend on is
looked up once per batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from django.conf import settings

from dns_records.bimi_assets import inspect_bimi
from dns_records.checks import CheckContext, all_checks
from dns_records.lookups import BimiAsset, Fetch, Net, SpfEvaluation
from dns_records.resolver import CachingResolver, DeadlineResolver, Resolver
from dns_records.results import CheckOutcome
from dns_records.spf_eval import evaluate_spf
from dns_records.status import CheckStatus
from dns_records.web import fetch_https

logger = logging.getLogger(__name__)


def net_for(resolver: Resolver) -> Net:
    """The adapters a run of checks uses, all resolving through `resolver`.

    With a `DeadlineResolver`, HTTPS fetches keep to its deadline too: none starts after it,
    and none may run past it.
    """

    def fetch(host: str, path: str, addresses: Sequence[str], *, timeout: float) -> Fetch:
        if isinstance(resolver, DeadlineResolver):
            remaining = resolver.remaining()
            if remaining <= 0:
                return Fetch(f"https://{host}{path}", error="out of time: not fetched")
            timeout = min(timeout, remaining)
        return fetch_https(host, path, addresses, timeout=timeout)

    def check_host(ip: str, domain: str) -> SpfEvaluation:
        return evaluate_spf(ip, domain, resolver=resolver)

    def bimi(domain: str, logo: str, authority: str) -> list[BimiAsset]:
        return inspect_bimi(domain, logo, authority, resolver=resolver, fetch=fetch)

    return Net(resolver=resolver, fetch_https=fetch, check_host=check_host, inspect_bimi=bimi)


def run_domain_checks(
    context: CheckContext,
    resolver: Resolver,
    *,
    only: Collection[str] | None = None,
    budget: float | None = None,
) -> list[CheckOutcome]:
    """The checks of one domain (all, or those named in `only`), in the registry's order.

    The checks together get `budget` seconds (MAILSEC_CHECK_DOMAIN_BUDGET_SECONDS unless
    given); lookups after that answer "out of time". A check that raises becomes an `error`
    outcome, logged, so a fault in one check (or one stranger's record tripping it) costs
    neither the domain's other checks nor the rest of a batch.
    """
    cached = resolver if isinstance(resolver, CachingResolver) else CachingResolver(resolver)
    seconds = settings.MAILSEC_CHECK_DOMAIN_BUDGET_SECONDS if budget is None else budget
    net = net_for(DeadlineResolver.starting_now(cached, seconds))
    outcomes = []
    for check in all_checks():
        if only is not None and check.name not in set(only):
            continue
        try:
            outcomes.append(check.run(context, net))
        except Exception:
            logger.exception("the %s check of %s failed", check.name, context.domain)
            outcomes.append(
                CheckOutcome(
                    check.name,
                    CheckStatus.ERROR,
                    "mailsec could not complete this check (an internal error, logged).",
                )
            )
    return outcomes


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
