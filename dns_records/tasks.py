"""Celery tasks for DNS checks: thin wrappers with explicit time limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task

from dns_records.services import domain_checks_run
from mailsec.services import task_run_execute

CHECK_SOFT_LIMIT = 60
CHECK_HARD_LIMIT = 90


@shared_task(soft_time_limit=CHECK_SOFT_LIMIT, time_limit=CHECK_HARD_LIMIT)
def check_domain(task_run_id: str, domain_id: int) -> None:
    def work() -> dict[str, Any]:
        return domain_checks_run(domain_id=domain_id)

    task_run_execute(
        task_run_id=task_run_id, stale_after=timedelta(seconds=CHECK_HARD_LIMIT), work=work
    )
