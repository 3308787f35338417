"""Storing check results, status-change events, and the scheduler's claiming of due domains."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from dns_records.models import CheckEvent, CheckResult, CheckState, CheckStatus, Domain
from dns_records.results import CheckOutcome
from dns_records.services import check_history_prune, check_outcomes_store, domains_claim_due
from mailsec.env import parse_nameserver

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name="good.test")


def store(domain, status, summary="s", at=None):
    at = at or timezone.now()
    check_outcomes_store(
        domain=domain, outcomes=[CheckOutcome("spf", status, summary)], checked_at=at
    )
    return at


def test_an_event_is_recorded_only_when_the_status_changes(domain):
    first = store(domain, CheckStatus.OK)
    store(domain, CheckStatus.OK, at=first + timedelta(minutes=1))
    changed = store(domain, CheckStatus.FAIL, "broken", at=first + timedelta(minutes=2))
    events = list(CheckEvent.objects.filter(domain=domain).order_by("created_at"))
    assert [(e.previous_status, e.status) for e in events] == [("", "ok"), ("ok", "fail")]
    state = CheckState.objects.get(domain=domain, name="spf")
    assert (state.status, state.summary, state.changed_at) == ("fail", "broken", changed)
    assert CheckResult.objects.filter(domain=domain).count() == 3


def test_storing_sets_worst_status_and_the_next_check(domain, settings):
    settings.MAILSEC_CHECK_INTERVAL_MINUTES = 60
    at = timezone.now()
    check_outcomes_store(
        domain=domain,
        outcomes=[
            CheckOutcome("spf", CheckStatus.WARNING, "w"),
            CheckOutcome("mx", CheckStatus.ERROR, "e"),
        ],
        checked_at=at,
    )
    domain.refresh_from_db()
    assert domain.worst_status == "error"
    assert domain.next_check_at == at + timedelta(minutes=60)


def test_due_domains_are_claimed_once(org, settings):
    settings.MAILSEC_CHECK_INTERVAL_MINUTES = 60
    now = timezone.now()
    due = Domain.objects.create(
        organisation=org, name="due.test", next_check_at=now - timedelta(seconds=1)
    )
    Domain.objects.create(
        organisation=org, name="later.test", next_check_at=now + timedelta(minutes=5)
    )
    assert domains_claim_due(now=now, limit=100) == [due.pk]
    assert domains_claim_due(now=now, limit=100) == []
    due.refresh_from_db()
    assert due.next_check_at == now + timedelta(minutes=60)


def test_never_scheduled_domains_are_spread_over_the_interval(org, settings):
    settings.MAILSEC_CHECK_INTERVAL_MINUTES = 60
    now = timezone.now()
    for n in range(40):
        Domain.objects.create(organisation=org, name=f"d{n}.test")
    assert domains_claim_due(now=now, limit=100) == []
    slots = sorted(d.next_check_at - now for d in Domain.objects.all() if d.next_check_at)
    assert len(slots) == 40
    assert slots[0] >= timedelta(0)
    assert slots[-1] <= timedelta(minutes=60)
    assert slots[-1] - slots[0] > timedelta(minutes=20), "all domains landed in one slot"


def test_claim_respects_the_batch_limit(org):
    now = timezone.now()
    for n in range(5):
        Domain.objects.create(
            organisation=org, name=f"d{n}.test", next_check_at=now - timedelta(minutes=n)
        )
    assert len(domains_claim_due(now=now, limit=3)) == 3
    assert len(domains_claim_due(now=now, limit=3)) == 2


def test_old_history_is_pruned_but_current_state_kept(domain, settings):
    settings.MAILSEC_CHECK_HISTORY_DAYS = 30
    now = timezone.now()
    store(domain, CheckStatus.OK, at=now - timedelta(days=31))
    store(domain, CheckStatus.OK, at=now)
    assert check_history_prune(now=now) == 1
    assert CheckResult.objects.count() == 1
    assert CheckState.objects.count() == 1


@pytest.mark.knot
def test_check_domain_command_prints_the_contract_json(knot):
    out = io.StringIO()
    call_command("check_domain", "Good.Test", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["domain"] == "good.test"
    assert [c["name"] for c in payload["checks"]] == [
        "delegation", "spf", "dmarc", "dkim", "mx", "rdns", "mta_sts", "tls_rpt", "dnssec", "bimi",
    ]  # fmt: skip
    for check in payload["checks"]:
        assert set(check) == {"name", "status", "summary", "details", "checked_at"}
        assert check["status"] in {"ok", "warning", "fail", "error"}


@pytest.mark.knot
def test_check_domain_command_prints_suggestions(knot):
    out = io.StringIO()
    call_command("check_domain", "none.spf.test", stdout=out)
    text = out.getvalue()
    assert "FAIL spf" in text
    assert "publish TXT none.spf.test: v=spf1 mx -all" in text


@pytest.mark.worker
@pytest.mark.knot
@pytest.mark.django_db(transaction=True)
def test_beat_tick_queues_due_domains_and_the_worker_checks_them(celery_worker, org):
    from dns_records.tasks import queue_due_checks

    past = timezone.now() - timedelta(minutes=1)
    names = ["good.test", "single.mx.test", "none.spf.test"]
    for name in names:
        Domain.objects.create(organisation=org, name=name, next_check_at=past)
    assert queue_due_checks() == 3
    deadline = time.monotonic() + 30
    while CheckState.objects.count() < 27 and time.monotonic() < deadline:
        time.sleep(0.2)
    statuses = dict(Domain.objects.values_list("name", "worst_status"))
    assert statuses == {"good.test": "warning", "single.mx.test": "fail", "none.spf.test": "fail"}
    assert queue_due_checks() == 0


def test_storing_for_a_domain_deleted_meanwhile_is_skipped(domain):
    pk = domain.pk
    Domain.objects.filter(pk=pk).delete()
    assert check_outcomes_store(domain=domain, outcomes=[CheckOutcome("spf", CheckStatus.OK, "s")],
                                checked_at=timezone.now()) is False  # fmt: skip
    assert not CheckResult.objects.filter(domain_id=pk).exists()


@pytest.mark.knot
def test_a_batch_stops_querying_when_its_consumer_gives_up(knot):
    """A Celery soft time limit arrives in the consuming thread: the pool must not run on."""
    from dns_records.checks import CheckContext
    from dns_records.resolver import Resolver
    from dns_records.runner import iter_many
    from tests.servers import SlowDnsRelay

    relay = SlowDnsRelay((knot.address, knot.port))
    relay.delay = 0.1
    relay.slow.set()
    relay.start()
    try:
        resolver = Resolver(nameservers=[parse_nameserver(relay.nameserver)], timeout=2)
        names = [f"d{n}.good.test" for n in range(40)]
        contexts = [(name, CheckContext(name, "r@x.test")) for name in names]
        results = iter_many(contexts, resolver, max_workers=4)
        next(results)
        results.close()  # what a SoftTimeLimitExceeded raised in the consumer does
        at_close = relay.queries
        time.sleep(1.0)  # ten times the relay's delay: any thread still checking would query on
        after = relay.queries
    finally:
        relay.stop()
    # Only the lookups already in flight at the moment of closing may still arrive.
    assert after - at_close <= 4
    # Four threads each get through about one domain (~25 lookups) before the first result: a
    # batch that ran on regardless would have sent about a thousand.
    assert at_close < 200, "the batch ran on before the consumer got its first result"


def test_an_older_result_does_not_replace_a_newer_one(domain):
    now = timezone.now()
    store(domain, CheckStatus.FAIL, "newer", at=now)
    store(domain, CheckStatus.OK, "older", at=now - timedelta(minutes=5))
    state = CheckState.objects.get(domain=domain, name="spf")
    assert (state.status, state.summary) == ("fail", "newer")
    assert CheckResult.objects.filter(domain=domain).count() == 2


def test_report_address_is_the_ingest_address_when_set(settings):
    from dns_records.context import report_address_for

    settings.MAILSEC_INGEST_ADDRESSES = ["dmarc@mailsec.example", "other@mailsec.example"]
    assert report_address_for("example.org") == "dmarc@mailsec.example"
    settings.MAILSEC_INGEST_ADDRESSES = []
    assert report_address_for("example.org") == "dmarc-reports@example.org"


@pytest.mark.knot
def test_a_name_in_two_organisations_is_checked_in_each_context_and_stored_for_both(
    knot, org, other_org
):
    from dns_records.services import domains_check

    first = Domain.objects.create(organisation=org, name="good.test")
    second = Domain.objects.create(organisation=other_org, name="good.test")
    outcomes = domains_check(domain_ids=[first.pk, second.pk])
    assert sorted(outcomes) == sorted([first.pk, second.pk])
    assert CheckState.objects.filter(domain=first).count() == 10
    assert CheckState.objects.filter(domain=second).count() == 10


def test_storing_a_run_costs_the_same_queries_whatever_the_number_of_checks(domain):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dns_records.checks import check_names

    def run(names, at):
        outcomes = [CheckOutcome(name, CheckStatus.WARNING, "w") for name in names]
        with CaptureQueriesContext(connection) as queries:
            check_outcomes_store(domain=domain, outcomes=outcomes, checked_at=at)
        return len(queries)

    at = timezone.now()
    few = run(["spf", "mx"], at)
    many = run(check_names(), at + timedelta(minutes=1))
    assert few == many
    assert CheckState.objects.filter(domain=domain).count() == len(check_names())


@pytest.mark.knot
def test_a_providers_host_addresses_must_pass_spf_in_that_domains_context(knot, org, other_org):
    """The managed-hosts app will add its hosts' addresses; a host SPF refuses is a fail."""
    from dns_records import context
    from dns_records.context import ContextExtras, register_context_provider
    from dns_records.services import domains_check

    ours = Domain.objects.create(organisation=org, name="good.test")
    theirs = Domain.objects.create(organisation=other_org, name="good.test")

    def hosts(domains):
        return {d.pk: ContextExtras(host_addresses=("192.0.2.99",)) for d in domains if d == ours}

    register_context_provider(hosts)
    try:
        domains_check(domain_ids=[ours.pk, theirs.pk])
    finally:
        context._providers.remove(hosts)
    spf = {s.domain_id: s for s in CheckState.objects.filter(name="spf")}
    assert spf[ours.pk].status == "fail"
    assert "Managed host 192.0.2.99 does not pass SPF" in spf[ours.pk].summary
    assert spf[theirs.pk].status == "ok"
    suggested = spf[ours.pk].details["suggested_record"]["value"]
    assert "ip4:192.0.2.99" in suggested


@pytest.mark.knot
def test_control_characters_from_dns_are_stored_escaped_and_shown(knot, org, owner):
    """A NUL in a TXT record is legal DNS; PostgreSQL's text and jsonb columns refuse it."""
    from django.test import Client

    from dns_records.services import domains_check

    domain = Domain.objects.create(organisation=org, name="controls.test")
    assert domain.pk in domains_check(domain_ids=[domain.pk])
    spf = CheckState.objects.get(domain=domain, name="spf")
    assert spf.status == "fail"
    assert "control character \\x00" in spf.summary
    assert spf.details["record"] == "v=spf1 mx -all\\x00"
    stored = CheckResult.objects.filter(domain=domain).values_list("summary", "details")
    assert not any("\x00" in summary or "\\u0000" in json.dumps(d) for summary, d in stored)
    client = Client()
    client.force_login(owner)
    body = client.get(f"/domains/{domain.pk}/").content.decode()
    assert "v=spf1 mx -all\\x00" in body
    assert "\x00" not in body


@pytest.mark.knot
def test_a_check_that_raises_costs_only_its_own_result(knot, org, other_org, monkeypatch):
    from dns_records.checks import spf
    from dns_records.services import domains_check

    real = spf.build_spf_tree

    def broken_for_one(domain, resolver):
        if domain == "single.mx.test":
            raise RuntimeError("a bug some record trips")
        return real(domain, resolver)

    monkeypatch.setattr(spf, "build_spf_tree", broken_for_one)
    broken = Domain.objects.create(organisation=org, name="single.mx.test")
    others = [Domain.objects.create(organisation=other_org, name="good.test")]
    others.append(Domain.objects.create(organisation=org, name="controls.test"))
    outcomes = domains_check(domain_ids=[broken.pk, *(d.pk for d in others)])
    assert sorted(outcomes) == sorted([broken.pk, *(d.pk for d in others)])
    for domain in [broken, *others]:
        assert CheckState.objects.filter(domain=domain).count() == 10
    state = CheckState.objects.get(domain=broken, name="spf")
    assert state.status == "error"
    assert "internal error" in state.summary
    assert CheckState.objects.get(domain=broken, name="mx").status == "warning"


@pytest.mark.knot
def test_a_domain_whose_result_cannot_be_stored_does_not_cost_the_batch(
    knot, org, other_org, monkeypatch
):
    from dns_records import services

    real = services.check_outcomes_store
    failing = Domain.objects.create(organisation=org, name="single.mx.test")
    others = [
        Domain.objects.create(organisation=other_org, name=n) for n in ("good.test", "null.mx.test")
    ]
    calls = []

    def store_failing_once(*, domain, outcomes, checked_at):
        calls.append(domain.pk)
        if domain.pk == failing.pk and calls.count(failing.pk) == 1:
            raise RuntimeError("the database refused this row")
        return real(domain=domain, outcomes=outcomes, checked_at=checked_at)

    monkeypatch.setattr(services, "check_outcomes_store", store_failing_once)
    outcomes = services.domains_check(domain_ids=[failing.pk, *(d.pk for d in others)])
    for domain in others:
        assert CheckState.objects.filter(domain=domain).count() == 10
        assert domain.pk in outcomes
    # The domain whose run could not be stored says so, as unknown, in every check.
    states = CheckState.objects.filter(domain=failing)
    assert states.count() == 10
    assert {s.status for s in states} == {"error"}
    assert all("could not store" in s.summary for s in states)


def test_the_domain_quota_refuses_one_domain_more(org, owner, settings):
    from django.core.exceptions import ValidationError

    from dns_records.services import domain_create

    settings.MAILSEC_DOMAINS_PER_ORGANISATION = 2
    domain_create(organisation=org, name="one.example", actor=owner)
    domain_create(organisation=org, name="two.example", actor=owner)
    with pytest.raises(ValidationError) as refused:
        domain_create(organisation=org, name="three.example", actor=owner)
    assert "already has 2 domains" in refused.value.message_dict["name"][0]
    assert Domain.objects.filter(organisation=org).count() == 2


def test_the_domain_quota_is_per_organisation(org, other_org, owner, settings):
    from dns_records.services import domain_create

    settings.MAILSEC_DOMAINS_PER_ORGANISATION = 1
    Domain.objects.create(organisation=other_org, name="theirs.example")
    domain_create(organisation=org, name="ours.example", actor=owner)
    assert Domain.objects.filter(organisation=org).count() == 1


def test_check_now_is_rate_limited_per_organisation(org, other_org, owner, settings):
    from dns_records.services import CheckRateLimited, domain_check_request
    from mailsec.models import Membership, Role

    settings.MAILSEC_CHECK_NOW_PER_MINUTE = 3
    domains = [Domain.objects.create(organisation=org, name=f"d{n}.example") for n in range(4)]
    for domain in domains[:3]:
        domain_check_request(domain=domain, actor=owner)
    with pytest.raises(CheckRateLimited) as limited:
        domain_check_request(domain=domains[3], actor=owner)
    assert "3 checks in the last minute" in str(limited.value)
    assert limited.value.retry_after == 60
    # Another organisation has its own allowance.
    Membership.objects.create(organisation=other_org, user=owner, role=Role.OWNER)
    theirs = Domain.objects.create(organisation=other_org, name="theirs.example")
    domain_check_request(domain=theirs, actor=owner)


def test_joining_a_pending_check_does_not_count_against_the_limit(org, owner, settings):
    from dns_records.services import domain_check_request

    settings.MAILSEC_CHECK_NOW_PER_MINUTE = 1
    domain = Domain.objects.create(organisation=org, name="one.example")
    first = domain_check_request(domain=domain, actor=owner)
    for _ in range(5):
        assert domain_check_request(domain=domain, actor=owner) == first


def test_check_runs_older_than_a_minute_no_longer_count(org, owner, settings):
    from dns_records.services import domain_check_request
    from mailsec.models import TaskRun, TaskState

    settings.MAILSEC_CHECK_NOW_PER_MINUTE = 1
    first, second = (Domain.objects.create(organisation=org, name=f"{n}.example") for n in "ab")
    run = domain_check_request(domain=first, actor=owner)
    TaskRun.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - timedelta(seconds=61), state=TaskState.SUCCEEDED
    )
    domain_check_request(domain=second, actor=owner)


@pytest.mark.knot
def test_the_check_now_result_holds_the_escaped_text_it_stored(knot, org):
    """The task run keeps the run's outcomes as JSON too: no NUL may reach it either."""
    from dns_records.services import domain_checks_run

    domain = Domain.objects.create(organisation=org, name="controls.test")
    result = domain_checks_run(domain_id=domain.pk)
    spf = next(c for c in result["checks"] if c["name"] == "spf")
    assert spf["details"]["record"] == "v=spf1 mx -all\\x00"
    assert "\\u0000" not in json.dumps(result)
