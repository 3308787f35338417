"""The job runner: background work answered with 202, as `TaskRun` rows.

A request creates a run and queues its task once the transaction commits (`task_run_enqueue`);
the worker claims the run with a conditional UPDATE signed by its claimer, does the work and
records the outcome (`task_run_execute`); beat fails runs no worker will finish (`task_runs_reap`)
and deletes old finished ones (`task_runs_prune`).

Tasks are queued by name, so an app's services never import its tasks module (which imports
the services): the import graph stays acyclic.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from mailsec.models import FINISHED_TASK_STATES, Organisation, TaskKind, TaskRun, TaskState
from mailsec.services.audit import Actor

logger = logging.getLogger(__name__)


def task_run_create(
    *,
    organisation: Organisation,
    kind: TaskKind,
    obj: Any,
    actor: Actor,
) -> TaskRun:
    user = actor if isinstance(actor, User) else None
    return TaskRun.objects.create(
        organisation=organisation,
        kind=kind,
        object_type=type(obj).__name__.lower(),
        object_id=str(obj.pk),
        created_by=user,
    )


def task_run_enqueue(run: TaskRun, task: str, **kwargs: Any) -> None:
    """Send the named task for this run once the transaction commits; the run id is the task id.

    Before the commit no worker could see the run; after a rollback there is nothing to do.
    """
    task_id = str(run.id)
    transaction.on_commit(
        lambda: current_app.send_task(
            task, kwargs={"task_run_id": task_id, **kwargs}, task_id=task_id
        )
    )


def current_claimer() -> str:
    """This process, as it signs the task runs it claims: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claimer_is_dead(claimer: str) -> bool:
    """True only when the claimer was a process on this host that no longer exists."""
    host, _, pid = claimer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def task_run_claim(*, task_run_id: Any, stale_after: timedelta, claimer: str = "") -> bool:
    """Mark the run as started if nobody else holds it; False means skip this delivery.

    A finished run is never claimed again. A running one is, when its claimer died: Celery
    redelivers the message of a pool process killed mid-task (late acks), and the claimer's
    pid is gone on this host; on another host, once it has run longer than the hard time limit.
    """
    claimer = claimer or current_claimer()
    now = timezone.now()
    claimable = Q(state=TaskState.PENDING) | Q(
        state=TaskState.RUNNING, started_at__lt=now - stale_after
    )
    holder = (
        TaskRun.objects.filter(pk=task_run_id, state=TaskState.RUNNING)
        .values_list("claimed_by", flat=True)
        .first()
    )
    if holder and _claimer_is_dead(holder):
        claimable |= Q(state=TaskState.RUNNING, claimed_by=holder)
    updated = TaskRun.objects.filter(claimable, pk=task_run_id).update(
        state=TaskState.RUNNING, started_at=now, attempts=F("attempts") + 1, claimed_by=claimer
    )
    return updated == 1


def task_run_finish(
    *,
    task_run_id: Any,
    result: dict[str, Any] | None = None,
    error: str = "",
    claimer: str = "",
) -> None:
    """Record the outcome, unless another claimer has taken the run over meanwhile."""
    TaskRun.objects.filter(
        pk=task_run_id, state=TaskState.RUNNING, claimed_by=claimer or current_claimer()
    ).update(
        state=TaskState.FAILED if error else TaskState.SUCCEEDED,
        finished_at=timezone.now(),
        result=result,
        error=error[:2000],
    )


def task_run_execute(
    *, task_run_id: Any, stale_after: timedelta, work: Callable[[], dict[str, Any] | None]
) -> bool:
    """Claim the run, do the work, record the outcome. False when the run was not claimable.

    An exception is recorded on the run and re-raised, so Celery logs it too.
    """
    if not task_run_claim(task_run_id=task_run_id, stale_after=stale_after):
        logger.info("task run %s already claimed or finished; skipping", task_run_id)
        return False
    try:
        result = work()
    except SoftTimeLimitExceeded:
        task_run_finish(task_run_id=task_run_id, error="timed out")
        raise
    except Exception as exc:
        task_run_finish(task_run_id=task_run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    task_run_finish(task_run_id=task_run_id, result=result)
    return True


ABANDONED_RUNNING = timedelta(hours=2)
ABANDONED_PENDING = timedelta(days=1)


def task_runs_reap(*, now: datetime) -> int:
    """Mark runs no worker will ever finish as failed, so nothing polls a 'running' job forever.

    A run still RUNNING two hours after it started outlived every task's hard time limit and
    the broker's redelivery: its worker was killed. One PENDING for a day was never picked up.
    """
    running = TaskRun.objects.filter(
        state=TaskState.RUNNING, started_at__lt=now - ABANDONED_RUNNING
    ).update(
        state=TaskState.FAILED,
        finished_at=now,
        error="abandoned: the worker stopped without finishing (time limit or crash)",
    )
    pending = TaskRun.objects.filter(
        state=TaskState.PENDING, created_at__lt=now - ABANDONED_PENDING
    ).update(state=TaskState.FAILED, finished_at=now, error="never started: no worker took it")
    return running + pending


FINISHED_RUNS_KEPT = timedelta(days=30)


def task_runs_prune(*, now: datetime) -> int:
    """Delete finished runs after a month: nobody polls a job that old, and the table stays small."""
    deleted, _ = TaskRun.objects.filter(
        state__in=FINISHED_TASK_STATES, finished_at__lt=now - FINISHED_RUNS_KEPT
    ).delete()
    return deleted
