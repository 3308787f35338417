"""Two deliveries of one report at once, each in its own thread, connection and transaction:
the report is stored once and the other delivery is a duplicate."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Sum

from dns_records.models import Domain
from reports.models import DailyRollup, RawMessage, RawMessageState, Record, Report
from reports.services import OutcomeStatus, ProcessOutcome, raw_message_process, report_store
from tests.reports.generate import aggregate_xml, expected_totals
from tests.reports.store_helpers import document, mixed_rows, stored_message

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(work: Any, results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = work()
        except BaseException as exc:  # reported by the test
            results[name] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.fixture
def example_domain(org):
    return Domain.objects.create(organisation=org, name="example.com")


def test_second_writer_waits_for_the_first_and_becomes_the_duplicate(example_domain):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency is PostgreSQL's")
    first_message, second_message = stored_message(), stored_message()
    # The first delivery inserts its report, then holds its transaction open mid-records.
    first_doc = document(rows=mixed_rows(), hold_after=2)
    results: dict[str, Any] = {}
    first = _in_thread(lambda: report_store(first_doc, message=first_message), results, "first")
    assert first_doc.holding.wait(10)
    second = _in_thread(
        lambda: report_store(document(rows=mixed_rows()), message=second_message),
        results,
        "second",
    )
    time.sleep(1.0)
    # The second is blocked on the unique index behind the first's uncommitted insert.
    assert second.is_alive() and "second" not in results
    first_doc.release.set()
    first.join(20)
    second.join(20)
    assert isinstance(results["first"], ProcessOutcome), results
    assert isinstance(results["second"], ProcessOutcome), results
    assert results["first"].status == OutcomeStatus.STORED
    assert results["second"].status == OutcomeStatus.DUPLICATE
    assert Report.objects.count() == 1
    assert Record.objects.count() == 5
    assert DailyRollup.objects.aggregate(n=Sum("messages"))["n"] == 26


def test_first_writer_rolling_back_lets_the_second_store_it(example_domain):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency is PostgreSQL's")
    first_doc = document(rows=mixed_rows(), hold_after=2, fail_after=3)
    results: dict[str, Any] = {}
    first_message, second_message = stored_message(), stored_message()
    first = _in_thread(lambda: report_store(first_doc, message=first_message), results, "first")
    assert first_doc.holding.wait(10)
    second = _in_thread(
        lambda: report_store(document(rows=mixed_rows()), message=second_message),
        results,
        "second",
    )
    time.sleep(0.5)
    first_doc.release.set()
    first.join(20)
    second.join(20)
    assert results["first"].__class__.__name__ == "Rejection"
    assert results["second"].status == OutcomeStatus.STORED
    assert Report.objects.get().raw_message_id == second_message.pk
    assert Record.objects.count() == 5


def test_two_workers_parsing_two_deliveries_at_once_store_one_report(example_domain):
    content = aggregate_xml(3000)
    messages = [stored_message(content), stored_message(content)]
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def deliver(message: RawMessage) -> Any:
        barrier.wait(10)
        return raw_message_process(raw_message_id=message.pk)

    threads = [_in_thread(lambda m=m: deliver(m), results, str(m.pk)) for m in messages]
    for thread in threads:
        thread.join(120)
    statuses = sorted(str(results[str(m.pk)].status) for m in messages)
    assert statuses == ["duplicate", "stored"], results
    report = Report.objects.get()
    messages_total, passing = expected_totals(3000)
    assert (report.record_count, report.message_count, report.dmarc_pass_count) == (
        3000, messages_total, passing,
    )  # fmt: skip
    assert Record.objects.count() == 3000
    assert DailyRollup.objects.aggregate(n=Sum("messages"))["n"] == messages_total
    states = sorted(RawMessage.objects.values_list("state", flat=True))
    assert states == [RawMessageState.DUPLICATE, RawMessageState.STORED]


def test_one_message_given_to_two_workers_at_once_is_parsed_once(example_domain):
    message = stored_message(aggregate_xml(500))
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def deliver() -> Any:
        barrier.wait(10)
        return raw_message_process(raw_message_id=message.pk)

    threads = [_in_thread(deliver, results, name) for name in ("a", "b")]
    for thread in threads:
        thread.join(60)
    outcomes = [results["a"], results["b"]]
    assert sorted(o is None for o in outcomes) == [False, True], outcomes
    assert Report.objects.count() == 1
    message.refresh_from_db()
    assert (message.state, message.attempts) == (RawMessageState.STORED, 1)
