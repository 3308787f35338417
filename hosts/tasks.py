"""Celery tasks for managed hosts: thin wrappers with explicit time limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task

from hosts.deploy import deployment_run
from hosts.drift import hosts_drift_check
from mailsec.jobs import task_run_execute

DEPLOY_SOFT_LIMIT = 900  # waiting for another deployment's lease (300 s) plus the deployment
DEPLOY_HARD_LIMIT = 960
DRIFT_SOFT_LIMIT = 1500
DRIFT_HARD_LIMIT = 1560


@shared_task(acks_late=True, soft_time_limit=DEPLOY_SOFT_LIMIT, time_limit=DEPLOY_HARD_LIMIT)
def deploy_host(task_run_id: str, deployment_id: int) -> None:
    """Run one deployment. A redelivered task whose deployment finished does nothing (the
    task run is already finished, and deployment_run returns a finished deployment as is)."""

    def work() -> dict[str, Any]:
        return deployment_run(deployment_id)

    task_run_execute(
        task_run_id=task_run_id, stale_after=timedelta(seconds=DEPLOY_HARD_LIMIT), work=work
    )


@shared_task(soft_time_limit=DRIFT_SOFT_LIMIT, time_limit=DRIFT_HARD_LIMIT)
def check_drift() -> dict[str, int]:
    """Beat: compare every deployed host's live files with the last deployed ones."""
    return hosts_drift_check()
