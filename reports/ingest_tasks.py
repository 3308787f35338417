"""Celery tasks of the IMAP way in: thin wrappers with explicit time limits.

Named under `reports.tasks.` like the app's other tasks (the services queue them by name); the
app's ready() imports this module so every worker registers them.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from reports.mailboxes import POLL_HARD_LIMIT_SECONDS, mailbox_poll_run, mailboxes_queue_due

POLL_SOFT_LIMIT_SECONDS = 600


@shared_task(
    name="reports.tasks.poll_imap_mailbox",
    soft_time_limit=POLL_SOFT_LIMIT_SECONDS,
    time_limit=POLL_HARD_LIMIT_SECONDS,
)
def poll_imap_mailbox(task_run_id: str, mailbox_id: int) -> None:
    mailbox_poll_run(task_run_id=task_run_id, mailbox_id=mailbox_id)


@shared_task(name="reports.tasks.queue_imap_polls", soft_time_limit=50, time_limit=60)
def queue_imap_polls() -> int:
    """Beat calls this every minute: each mailbox due for a poll gets one queued."""
    return mailboxes_queue_due(now=timezone.now())
