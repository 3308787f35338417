"""Celery tasks of the reports app: thin wrappers with explicit time limits.

A parse is idempotent through the message's claim (`raw_message_process`): a task delivered
twice, or queued again by the sweep while it runs, does nothing the second time. With late acks
a worker killed mid-parse has its task delivered again; a whole worker lost is covered by the
sweep, which queues every pending message whose claimer is gone or whose claim expired.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from reports.services import (
    raw_message_process,
    raw_messages_due,
    raw_messages_enqueue,
    reports_prune,
)
from reports.source_tasks import resolve_sources  # noqa: F401  (registered with the worker)

# A million-record report takes minutes. The hard limit is below the services' CLAIM_TIMEOUT,
# so a claim older than that is certainly a dead one.
PARSE_SOFT_LIMIT = 1500
PARSE_HARD_LIMIT = 1560


@shared_task(acks_late=True, soft_time_limit=PARSE_SOFT_LIMIT, time_limit=PARSE_HARD_LIMIT)
def parse_raw_message(raw_message_id: int) -> str | None:
    """Parse and store one received message: "stored", "duplicate", "rejected", or None when
    it was not claimable (already processed, or being parsed elsewhere)."""
    outcome = raw_message_process(raw_message_id=raw_message_id)
    return str(outcome.status) if outcome is not None else None


@shared_task(soft_time_limit=50, time_limit=60)
def sweep_pending_messages() -> int:
    """Beat calls this every few minutes: queue again the pending messages whose task was lost
    or whose parser died."""
    return raw_messages_enqueue(raw_messages_due(now=timezone.now()))


@shared_task(soft_time_limit=1800, time_limit=1860)
def prune_reports() -> dict[str, int]:
    """Beat calls this daily: delete reports, records, rollups and raw messages older than
    MAILSEC_REPORT_RETENTION_DAYS, in batches."""
    return reports_prune(now=timezone.now())
