"""Celery tasks of the core: housekeeping of task runs."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from mailsec.jobs import task_runs_prune, task_runs_reap


@shared_task(soft_time_limit=60, time_limit=90)
def reap_task_runs() -> int:
    return task_runs_reap(now=timezone.now())


@shared_task(soft_time_limit=300, time_limit=360)
def prune_task_runs() -> int:
    return task_runs_prune(now=timezone.now())
