"""A worker process killed mid-task loses no job: the message is redelivered and run again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dns_records.models import CheckState, Domain
from dns_records.tasks import check_domain
from mailsec.jobs import task_run_create
from mailsec.models import TaskKind, TaskRun, TaskState
from tests import settings as test_settings
from tests.servers import CeleryWorker, SlowDnsRelay, missing

pytestmark = [pytest.mark.worker, pytest.mark.knot, pytest.mark.django_db(transaction=True)]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def slow_worker(celery_worker, knot, tmp_path):
    """A one-process worker on a queue of its own, resolving through a relay that can stall."""
    if not test_settings.REDIS_AVAILABLE:
        missing("Redis is not running on 127.0.0.1:6379")
    relay = SlowDnsRelay((knot.address, knot.port))
    relay.start()
    queue = f"{test_settings.TEST_QUEUE}-loss"
    env = {
        **celery_worker.env,
        "MAILSEC_CELERY_QUEUE": queue,
        "MAILSEC_DNS_NAMESERVERS": relay.nameserver,
        "MAILSEC_DNS_TIMEOUT": "5",
    }
    worker = CeleryWorker(tmp_path, env, concurrency=1)
    worker.start()
    try:
        yield worker, relay, queue
    finally:
        worker.stop()
        relay.stop()


def test_killed_pool_process_job_is_redelivered_and_completed(slow_worker, org):
    worker, relay, queue = slow_worker
    domain = Domain.objects.create(organisation=org, name="good.test")
    run = task_run_create(organisation=org, kind=TaskKind.DOMAIN_CHECK, obj=domain, actor=None)
    relay.slow.set()
    check_domain.apply_async(
        kwargs={"task_run_id": str(run.id), "domain_id": domain.pk},
        task_id=str(run.id),
        queue=queue,
    )

    def running():
        current = TaskRun.objects.get(pk=run.pk)
        return current.claimed_by if current.state == TaskState.RUNNING else None

    claimer = _wait(running, 30, "the first attempt to start")
    pid = int(claimer.rpartition(":")[2])
    assert pid != worker.process.pid, "the task should run in a pool process"
    os.kill(pid, signal.SIGKILL)
    relay.slow.clear()

    def finished():
        current = TaskRun.objects.get(pk=run.pk)
        return current if current.finished else None

    done = _wait(finished, 60, "the redelivered attempt to finish")
    assert done.state == TaskState.SUCCEEDED, (done.error, worker.log_path.read_text()[-2000:])
    assert done.attempts == 2
    assert done.claimed_by != claimer
    assert CheckState.objects.filter(domain=domain).count() == 10
