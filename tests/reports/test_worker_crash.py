"""Real Celery workers parse stored messages; a worker killed mid-parse loses nothing.

A whole worker SIGKILLed while it stores a large report leaves no half report (its transaction
dies with its connection) and the message pending under a dead claim; the next sweep, run by a
new worker, queues it again and the report is stored exactly once.
"""

from __future__ import annotations

import gzip
import os
import signal
import time
from typing import Any

import pytest

from dns_records.models import Domain
from reports.models import DailyRollup, IngestSource, RawMessage, RawMessageState, Record, Report
from reports.services import raw_message_store
from reports.tasks import parse_raw_message, sweep_pending_messages
from tests import settings as test_settings
from tests.reports.generate import aggregate_xml, expected_totals
from tests.servers import CeleryWorker, missing

pytestmark = [pytest.mark.worker, pytest.mark.knot, pytest.mark.django_db(transaction=True)]


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _state(message: RawMessage) -> RawMessage:
    return RawMessage.objects.defer("content").get(pk=message.pk)


def test_a_real_worker_parses_a_stored_message(celery_worker, org):
    Domain.objects.create(organisation=org, name="example.com")
    message = raw_message_store(aggregate_xml(40), source=IngestSource.PIPE)
    done = _wait(
        lambda: (m := _state(message)).state != RawMessageState.PENDING and m,
        60,
        "the worker to parse the message",
    )
    assert done.state == RawMessageState.STORED, (done.reason, done.detail)
    report = Report.objects.get()
    assert (report.organisation, report.record_count) == (org, 40)
    assert DailyRollup.objects.filter(organisation=org).exists()


def test_a_task_delivered_twice_stores_once(celery_worker, org):
    message = raw_message_store(aggregate_xml(10), source=IngestSource.PIPE, parse=False)
    parse_raw_message.delay(raw_message_id=message.pk)
    parse_raw_message.delay(raw_message_id=message.pk)
    _wait(lambda: _state(message).state == RawMessageState.STORED, 60, "the parse")
    time.sleep(1.0)  # the second delivery finds nothing to claim
    assert Report.objects.count() == 1
    assert _state(message).attempts == 1


@pytest.fixture
def crash_queue(celery_worker, tmp_path):
    """A queue of its own, with the worker environment of the session's worker."""
    if not test_settings.REDIS_AVAILABLE:
        missing("Redis is not running on 127.0.0.1:6379")
    queue = f"{test_settings.TEST_QUEUE}-crash"
    env = {**celery_worker.env, "MAILSEC_CELERY_QUEUE": queue}
    started: list[CeleryWorker] = []

    def start(name: str) -> CeleryWorker:
        directory = tmp_path / name
        directory.mkdir()
        worker = CeleryWorker(directory, env, concurrency=1)
        worker.start()
        started.append(worker)
        return worker

    yield queue, start
    for worker in started:
        worker.stop()


def test_worker_killed_mid_parse_loses_nothing_and_the_sweep_finishes_it(crash_queue, org):
    queue, start = crash_queue
    Domain.objects.create(organisation=org, name="example.com")
    records = 200_000
    content = gzip.compress(aggregate_xml(records, report_id="huge"))
    message = raw_message_store(content, source=IngestSource.PIPE, parse=False)
    first = start("first")
    parse_raw_message.apply_async(kwargs={"raw_message_id": message.pk}, queue=queue)
    claimed = _wait(lambda: (m := _state(message)).claimed_by and m, 60, "the first claim")
    time.sleep(3.0)  # well into parsing and writing records, far from done
    assert _state(message).state == RawMessageState.PENDING, "the parse ended before the kill"
    os.killpg(first.process.pid, signal.SIGKILL)  # the worker and its pool process, at once
    first.process.wait(10)
    claimer_pid = int(claimed.claimed_by.rpartition(":")[2])
    _wait(lambda: not _alive(claimer_pid), 10, "the pool process to be gone")

    # Nothing of the report survived the kill; the message waits under a dead claim.
    assert Report.objects.count() == 0
    assert Record.objects.count() == 0
    assert DailyRollup.objects.count() == 0
    pending = _state(message)
    assert (pending.state, pending.attempts) == (RawMessageState.PENDING, 1)

    second = start("second")
    sweep_pending_messages.apply_async(queue=queue)
    done = _wait(
        lambda: (m := _state(message)).state != RawMessageState.PENDING and m,
        240,
        "the new worker to parse the swept message",
    )
    assert done.state == RawMessageState.STORED, (done.reason, done.detail)
    assert done.attempts == 2
    report = Report.objects.get()
    messages, passing = expected_totals(records)
    assert (report.record_count, report.message_count, report.dmarc_pass_count) == (
        records, messages, passing,
    )  # fmt: skip
    assert Record.objects.count() == records
    assert sum(DailyRollup.objects.values_list("messages", flat=True)) == messages
    assert "parse_raw_message" in second.log_path.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_pool_process_killed_mid_parse_has_its_task_redelivered_and_stored_once(crash_queue, org):
    queue, start = crash_queue
    records = 120_000
    content = gzip.compress(aggregate_xml(records, report_id="redelivered"))
    message = raw_message_store(content, source=IngestSource.PIPE, parse=False)
    worker = start("pool")
    parse_raw_message.apply_async(kwargs={"raw_message_id": message.pk}, queue=queue)
    claimed = _wait(lambda: (m := _state(message)).claimed_by and m, 60, "the first claim")
    pid = int(claimed.claimed_by.rpartition(":")[2])
    assert pid != worker.process.pid, "the task should run in a pool process"
    time.sleep(2.0)
    assert _state(message).state == RawMessageState.PENDING, "the parse ended before the kill"
    os.kill(pid, signal.SIGKILL)
    # Late acks: the broker message comes back, a new pool process takes over the dead claim.
    done = _wait(
        lambda: (m := _state(message)).state != RawMessageState.PENDING and m,
        240,
        "the redelivered task to finish",
    )
    assert done.state == RawMessageState.STORED, (done.reason, done.detail)
    assert done.attempts == 2
    assert Report.objects.get().record_count == records
    assert Record.objects.count() == records


def test_a_parse_over_its_soft_time_limit_stores_nothing_and_gives_the_message_back(
    crash_queue, org
):
    queue, start = crash_queue
    content = gzip.compress(aggregate_xml(200_000, report_id="slow"))
    message = raw_message_store(content, source=IngestSource.PIPE, parse=False)
    start("limited")
    parse_raw_message.apply_async(
        kwargs={"raw_message_id": message.pk}, queue=queue, soft_time_limit=3, time_limit=60
    )
    _wait(lambda: _state(message).attempts == 1, 60, "the claim")
    released = _wait(
        lambda: (m := _state(message)).claimed_at is None and m, 60, "the claim to be given back"
    )
    assert (released.state, released.attempts) == (RawMessageState.PENDING, 1)
    assert Report.objects.count() == 0
    assert Record.objects.count() == 0
