"""Celery tasks for blocklists: thin wrappers with explicit time limits."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from blocklists.services import (
    blacklist_entries_purge_expired,
    organisation_poll,
    polls_claim_due,
)
from mailsec.jobs import task_run_execute

POLL_SOFT_LIMIT = 240
POLL_HARD_LIMIT = 300


def _poll(organisation_id: int) -> dict[str, Any]:
    cancelled = threading.Event()
    try:
        results = organisation_poll(organisation_id=organisation_id, cancelled=cancelled)
    except SoftTimeLimitExceeded:
        cancelled.set()
        raise
    counts: dict[str, int] = {}
    for result in results:
        counts[result.verdict.status] = counts.get(result.verdict.status, 0) + 1
    return {"lookups": len(results), **counts}


@shared_task(soft_time_limit=POLL_SOFT_LIMIT, time_limit=POLL_HARD_LIMIT)
def poll_organisation(task_run_id: str, organisation_id: int) -> None:
    """A poll asked for through the API or the page (202 and a task run)."""
    task_run_execute(
        task_run_id=task_run_id,
        stale_after=timedelta(seconds=POLL_HARD_LIMIT),
        work=lambda: _poll(organisation_id),
    )


@shared_task(soft_time_limit=POLL_SOFT_LIMIT, time_limit=POLL_HARD_LIMIT)
def poll_organisation_scheduled(organisation_id: int) -> dict[str, Any]:
    return _poll(organisation_id)


@shared_task(soft_time_limit=50, time_limit=60)
def queue_due_polls() -> int:
    """Beat calls this every minute: each organisation is polled every
    MAILSEC_DNSBL_INTERVAL_MINUTES."""
    due = polls_claim_due(now=timezone.now())
    for organisation_id in due:
        poll_organisation_scheduled.delay(organisation_id)
    return len(due)


@shared_task(soft_time_limit=240, time_limit=280)
def purge_expired_entries() -> int:
    return blacklist_entries_purge_expired(now=timezone.now())
