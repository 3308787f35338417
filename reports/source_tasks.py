"""Celery task naming report sources (reverse DNS, AS, country): beat runs it every few minutes.

Its name is explicit so beat's schedule finds it wherever the module is imported from; the
reports app's `tasks` module imports this one, so the worker registers it.
"""

from __future__ import annotations

from celery import shared_task

from reports.sources import BATCH_SIZE, sources_resolve


@shared_task(name="reports.tasks.resolve_sources", soft_time_limit=240, time_limit=300)
def resolve_sources(limit: int = BATCH_SIZE) -> dict[str, int]:
    """Name one bounded batch of new or stale sources."""
    return sources_resolve(limit=min(max(int(limit), 1), 1000))
