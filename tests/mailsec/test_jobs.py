"""Task-run claiming: a job is taken by one worker only, and a finished one never again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mailsec.jobs import current_claimer, task_run_claim, task_run_execute, task_run_finish
from mailsec.models import TaskRun, TaskState

pytestmark = pytest.mark.django_db

STALE = timedelta(seconds=90)


@pytest.fixture
def run(org):
    return TaskRun.objects.create(organisation=org, kind="test", object_type="x", object_id="1")


def test_a_pending_run_is_claimed_once(run):
    assert task_run_claim(task_run_id=run.id, stale_after=STALE) is True
    assert task_run_claim(task_run_id=run.id, stale_after=STALE) is False
    run.refresh_from_db()
    assert run.state == TaskState.RUNNING and run.attempts == 1


def test_a_finished_run_is_never_claimed_again(run):
    task_run_claim(task_run_id=run.id, stale_after=STALE)
    task_run_finish(task_run_id=run.id, result={"ok": True})
    assert task_run_claim(task_run_id=run.id, stale_after=timedelta(0)) is False
    run.refresh_from_db()
    assert run.state == TaskState.SUCCEEDED and run.result == {"ok": True}


def test_a_run_abandoned_by_a_dead_worker_can_be_reclaimed(run):
    task_run_claim(task_run_id=run.id, stale_after=STALE)
    TaskRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=91))
    assert task_run_claim(task_run_id=run.id, stale_after=STALE) is True
    run.refresh_from_db()
    assert run.attempts == 2


def test_execute_records_the_error_and_reraises(run):
    def work():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        task_run_execute(task_run_id=run.id, stale_after=STALE, work=work)
    run.refresh_from_db()
    assert run.state == TaskState.FAILED and run.error == "ValueError: boom"


def test_execute_skips_work_of_a_claimed_run(run):
    task_run_claim(task_run_id=run.id, stale_after=STALE)
    calls = []
    assert (
        task_run_execute(task_run_id=run.id, stale_after=STALE, work=lambda: calls.append(1))
        is False
    )
    assert calls == []


def test_a_run_whose_claimer_died_on_this_host_is_reclaimed_at_once(run):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = current_claimer().rpartition(":")[0]
    assert task_run_claim(task_run_id=run.id, stale_after=STALE, claimer=f"{host}:{dead.pid}")
    assert task_run_claim(task_run_id=run.id, stale_after=STALE)
    run.refresh_from_db()
    assert (run.attempts, run.claimed_by) == (2, current_claimer())


def test_a_run_held_by_a_live_claimer_elsewhere_is_not_taken(run):
    assert task_run_claim(task_run_id=run.id, stale_after=STALE, claimer="other-host:1")
    assert task_run_claim(task_run_id=run.id, stale_after=STALE) is False


def test_a_superseded_claimer_cannot_record_an_outcome(run):
    task_run_claim(task_run_id=run.id, stale_after=STALE, claimer="other-host:1")
    task_run_finish(task_run_id=run.id, result={"late": True}, claimer="someone-else:2")
    run.refresh_from_db()
    assert run.state == TaskState.RUNNING


def test_abandoned_runs_are_reaped_as_failed(org):
    from mailsec.jobs import task_runs_reap

    now = timezone.now()
    stuck = TaskRun.objects.create(organisation=org, kind="t", state=TaskState.RUNNING,
                                   started_at=now - timedelta(hours=3))  # fmt: skip
    fresh = TaskRun.objects.create(
        organisation=org, kind="t", state=TaskState.RUNNING, started_at=now
    )
    never = TaskRun.objects.create(organisation=org, kind="t")
    TaskRun.objects.filter(pk=never.pk).update(created_at=now - timedelta(days=2))
    assert task_runs_reap(now=now) == 2
    states = {r.pk: (r.state, r.error[:9]) for r in TaskRun.objects.all()}
    assert states[stuck.pk] == (TaskState.FAILED, "abandoned")
    assert states[never.pk] == (TaskState.FAILED, "never sta")
    assert states[fresh.pk] == (TaskState.RUNNING, "")
