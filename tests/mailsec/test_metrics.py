"""`/metrics`: Prometheus text format, answered only to the token or an allowed network."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from blocklists.models import BlocklistTarget, Listing
from dns_records.models import CheckState, Domain
from hosts.models import Deployment, DeploymentState, Host
from mailsec.models import TaskKind, TaskRun, TaskState
from reports.models import RawMessage

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token-0123456789"

# The exposition format, strictly: comments, then `name{label="value",...} number` lines.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(
    rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)\}})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$"
)
HELP = re.compile(rf"^# HELP ({NAME}) .+$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|summary|histogram|untyped)$")


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample by name and labels; any malformed line fails the test."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP"):
            assert HELP.match(line), line
            continue
        if line.startswith("# TYPE"):
            match = TYPE.match(line)
            assert match, line
            assert match.group(1) not in typed, f"TYPE twice for {match.group(1)}"
            typed[match.group(1)] = match.group(2)
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(sum|count)$", "", name)
        assert name in typed or family in typed, f"{name} has no TYPE"
        pairs = frozenset(
            (k, v)
            for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")
        )
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value)
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics_settings(settings):
    settings.MAILSEC_METRICS_TOKEN = TOKEN
    settings.MAILSEC_METRICS_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    return settings


def test_loopback_is_allowed_and_other_addresses_need_the_token(metrics_settings):
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="203.0.113.5")
    refused = outside.get("/metrics")
    assert refused.status_code == 403
    assert "mailsec_" not in refused.content.decode()
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert outside.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 403
    ok = outside.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200
    assert ok["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert ok["Cache-Control"].startswith("max-age=0")
    # No login redirect: a scraper is not a person.
    assert "Location" not in ok


def test_without_a_token_only_the_networks_count(metrics_settings):
    metrics_settings.MAILSEC_METRICS_TOKEN = ""
    outside = Client(REMOTE_ADDR="203.0.113.5")
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    metrics_settings.MAILSEC_METRICS_ALLOW_NETWORKS = [ipaddress.ip_network("203.0.113.0/24")]
    assert outside.get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


def test_a_forwarded_address_counts_only_through_a_trusted_proxy(metrics_settings):
    metrics_settings.MAILSEC_TRUSTED_PROXIES = []
    spoofed = Client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.get("/metrics").status_code == 403


def test_the_default_network_is_loopback_only():
    from django.conf import settings

    networks = settings.MAILSEC_METRICS_ALLOW_NETWORKS
    assert {str(n) for n in networks} == {"127.0.0.0/8", "::1/128"}


def test_post_is_refused(metrics_settings):
    assert Client(REMOTE_ADDR="127.0.0.1").post("/metrics").status_code == 405


def test_the_figures_follow_the_database(metrics_settings, org):
    now = timezone.now()
    a = Domain.objects.create(organisation=org, name="a.test", worst_status="fail")
    Domain.objects.create(organisation=org, name="b.test", worst_status="ok")
    Domain.objects.create(organisation=org, name='c"\\.test')
    for name, status in (("spf", "fail"), ("mx", "ok")):
        CheckState.objects.create(
            domain=a, name=name, status=status, summary="x", checked_at=now, changed_at=now
        )
    host = Host.objects.create(organisation=org, name="mx1.test", address="192.0.2.1")
    Deployment.objects.create(host=host, state=DeploymentState.FAILED)
    Deployment.objects.create(host=host, state=DeploymentState.SUCCEEDED)
    Host.objects.create(organisation=org, name="mx2.test", address="192.0.2.2")
    target = BlocklistTarget.objects.create(organisation=org, kind="ip", value="192.0.2.1")
    Listing.objects.create(target=target, zone="z.example", status="listed", checked_at=now,
                           changed_at=now)  # fmt: skip
    TaskRun.objects.create(organisation=org, kind=TaskKind.DOMAIN_CHECK, state=TaskState.PENDING)
    TaskRun.objects.create(organisation=org, kind=TaskKind.DOMAIN_CHECK, state=TaskState.PENDING)
    for seconds in (2, 4):
        TaskRun.objects.create(
            organisation=org, kind=TaskKind.HOST_DEPLOY, state=TaskState.SUCCEEDED,
            started_at=now - timedelta(seconds=seconds), finished_at=now,
        )  # fmt: skip
    RawMessage.objects.create(organisation=org, source="upload", content=b"x", size=1,
                              state="quarantined")  # fmt: skip

    text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    samples = parse(text)
    assert value(samples, "mailsec_domains", status="fail") == 1
    assert value(samples, "mailsec_domains", status="ok") == 1
    assert value(samples, "mailsec_domains", status="unchecked") == 1
    assert value(samples, "mailsec_domain_checks", check="spf", status="fail") == 1
    assert value(samples, "mailsec_hosts", deployment_state="succeeded") == 1
    assert value(samples, "mailsec_hosts", deployment_state="none") == 1
    assert value(samples, "mailsec_blocklist_listings", kind="ip", status="listed") == 1
    assert value(samples, "mailsec_task_queue_depth") == 2
    assert value(samples, "mailsec_task_runs", kind="domain.check", state="pending") == 2
    assert value(samples, "mailsec_task_duration_seconds_sum", kind="host.deploy") == 6
    assert value(samples, "mailsec_task_duration_seconds_count", kind="host.deploy") == 2
    assert value(samples, "mailsec_task_duration_max_seconds", kind="host.deploy") == 4
    assert value(samples, "mailsec_raw_messages", state="quarantined") == 1
    assert value(samples, "mailsec_reports") == 0
    assert value(samples, "mailsec_events_last_24h", source="check") == 0
    # No organisation or domain names leak into labels.
    assert "a.test" not in text and org.slug not in text


def test_queries_do_not_grow_with_rows(metrics_settings, org, django_assert_max_num_queries):
    for i in range(40):
        Domain.objects.create(organisation=org, name=f"d{i}.test", worst_status="ok")
        Host.objects.create(organisation=org, name=f"h{i}.test", address="192.0.2.3")
    with django_assert_max_num_queries(20):
        assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200


def test_notifications_are_counted_by_channel_kind_and_state(metrics_settings, org):
    from django.apps import apps

    if not apps.is_installed("alerts"):
        pytest.skip("the alerts app is not installed")
    channel_model = apps.get_model("alerts", "Channel")
    notification_model = apps.get_model("alerts", "Notification")
    channel = channel_model.objects.create(
        organisation=org, kind="webhook", name="hook", target="https://example.org/hook"
    )
    for state in ("sent", "sent", "failed"):
        notification_model.objects.create(channel=channel, subject="s", body="b", state=state)
    samples = parse(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode())
    assert value(samples, "mailsec_notifications", channel="webhook", state="sent") == 2
    assert value(samples, "mailsec_notifications", channel="webhook", state="failed") == 1
