"""Celery tasks for DNS checks: thin wrappers with explicit time limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from dns_records.dkim_keys import (
    dkim_key_generate,
    dkim_key_verify_signing,
    dkim_keys_advance,
    dkim_signing_due,
)
from dns_records.services import (
    check_history_prune,
    domain_checks_run,
    domains_check,
    domains_claim_due,
)
from mailsec.jobs import task_run_execute

CHECK_SOFT_LIMIT = 120
CHECK_HARD_LIMIT = 150
BATCH_SIZE = 200
BATCH_SOFT_LIMIT = 900
BATCH_HARD_LIMIT = 960
MAX_BATCHES_PER_TICK = 50


@shared_task(soft_time_limit=CHECK_SOFT_LIMIT, time_limit=CHECK_HARD_LIMIT)
def check_domain(task_run_id: str, domain_id: int) -> None:
    def work() -> dict[str, Any]:
        return domain_checks_run(domain_id=domain_id)

    task_run_execute(
        task_run_id=task_run_id, stale_after=timedelta(seconds=CHECK_HARD_LIMIT), work=work
    )


@shared_task(soft_time_limit=BATCH_SOFT_LIMIT, time_limit=BATCH_HARD_LIMIT)
def check_domains_batch(domain_ids: list[int]) -> int:
    return len(domains_check(domain_ids=domain_ids))


@shared_task(soft_time_limit=50, time_limit=60)
def queue_due_checks() -> int:
    """Beat calls this every minute: due domains go out in batches for the workers."""
    queued = 0
    for _ in range(MAX_BATCHES_PER_TICK):
        due = domains_claim_due(now=timezone.now(), limit=BATCH_SIZE)
        if due:
            check_domains_batch.delay(due)
            queued += len(due)
        if len(due) < BATCH_SIZE:
            break
    return queued


@shared_task(soft_time_limit=600, time_limit=660)
def prune_check_history() -> int:
    return check_history_prune(now=timezone.now())


GENERATE_SOFT_LIMIT = 120  # an RSA 4096 key takes seconds; 2048 well under one
GENERATE_HARD_LIMIT = 150


@shared_task(soft_time_limit=GENERATE_SOFT_LIMIT, time_limit=GENERATE_HARD_LIMIT)
def generate_dkim_key(task_run_id: str, key_id: int) -> None:
    def work() -> dict[str, Any]:
        return dkim_key_generate(key_id=key_id)

    task_run_execute(
        task_run_id=task_run_id, stale_after=timedelta(seconds=GENERATE_HARD_LIMIT), work=work
    )


@shared_task(soft_time_limit=240, time_limit=280)
def advance_dkim_keys() -> dict[str, int]:
    """Beat calls this every few minutes: states move by what DNS shows and by the clock."""
    now = timezone.now()
    moved = dkim_keys_advance(now=now)
    for key_id in dkim_signing_due(now=now):
        dkim_key_verify_signing(key_id=key_id)
    return moved
