"""POST /api/v1/hosts/{id}/probe/ (202, a real worker probes real servers) and
GET /api/v1/hosts/{id}/probes/ in the check shape; roles, organisations, the rate limit."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from dns_records.models import Domain
from hosts.models import Host, HostEvent, ProbeResult
from hosts.services import hosts_probe_queue_due
from mailsec.models import AuditLog, TaskKind, TaskRun, TaskState
from tests.hosts import probe_servers as ps
from tests.hosts.test_probe import Servers, servers  # noqa: F401  (the module's servers)

pytestmark = pytest.mark.django_db(transaction=True)
SHAPE = {"name", "status", "summary", "details", "checked_at"}


@pytest.fixture
def host(org: Any) -> Host:
    return Host.objects.create(organisation=org, name=ps.MX_NAME, address=ps.GOOD)


def test_probe_now_runs_on_the_worker_and_lists_results(
    celery_worker: Any,
    servers: Servers,  # noqa: F811
    owner_api: APIClient,
    host: Host,
) -> None:
    response = owner_api.post(f"/api/v1/hosts/{host.pk}/probe/")
    assert response.status_code == 202, response.content
    task_id = response.json()["task_id"]
    run = TaskRun.objects.get(pk=task_id)
    assert run.kind == TaskKind.HOST_PROBE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.state in (TaskState.SUCCEEDED, TaskState.FAILED):
            break
        time.sleep(0.5)
    assert run.state == TaskState.SUCCEEDED, (run.state, run.error)
    # Asking again within the minute: 429 with Retry-After.
    again = owner_api.post(f"/api/v1/hosts/{host.pk}/probe/")
    assert again.status_code == 429 and int(again["Retry-After"]) > 0
    current = owner_api.get(f"/api/v1/hosts/{host.pk}/probes/").json()
    assert current and all(set(r) == SHAPE for r in current)
    found = {(r["name"], r["details"]["port"]): r for r in current}
    assert found[("smtp_relay", 25)]["status"] == "ok"
    assert found[("smtp_auth", 25)]["status"] == "ok"
    assert found[("imap_cleartext_login", 143)]["status"] == "ok"
    assert found[("smtp_relay", 25)]["details"]["address"] == ps.GOOD
    assert HostEvent.objects.filter(host=host, kind="probe").exists()


def test_probes_current_and_history(
    owner_api: APIClient, viewer_api: APIClient, host: Host
) -> None:
    now = timezone.now()
    for minutes, status in ((10, "fail"), (0, "ok")):
        ProbeResult.objects.create(
            host=host, name="smtp_relay", address=ps.GOOD, port=25, status=status,
            summary=status, details={}, probed_at=now - timedelta(minutes=minutes),
        )  # fmt: skip
    current = viewer_api.get(f"/api/v1/hosts/{host.pk}/probes/").json()
    assert [(r["name"], r["status"]) for r in current] == [("smtp_relay", "ok")]
    history = owner_api.get(f"/api/v1/hosts/{host.pk}/probes/?history=1").json()
    assert [r["status"] for r in history] == ["ok", "fail"]


def test_roles_and_organisations(
    viewer_api: APIClient, outsider_api: APIClient, host: Host
) -> None:
    assert viewer_api.post(f"/api/v1/hosts/{host.pk}/probe/").status_code == 403
    assert outsider_api.post(f"/api/v1/hosts/{host.pk}/probe/").status_code == 404
    assert outsider_api.get(f"/api/v1/hosts/{host.pk}/probes/").status_code == 404
    assert APIClient().get(f"/api/v1/hosts/{host.pk}/probes/").status_code in (401, 403)
    assert not TaskRun.objects.filter(kind=TaskKind.HOST_PROBE).exists()


def test_a_pending_probe_is_joined_and_beat_queues_due_hosts(
    owner_api: APIClient, host: Host, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        first = owner_api.post(f"/api/v1/hosts/{host.pk}/probe/").json()
        second = owner_api.post(f"/api/v1/hosts/{host.pk}/probe/").json()
    assert first["task_id"] == second["task_id"]
    assert AuditLog.objects.filter(action="host.probe").count() == 1
    # A host with a probe pending is not queued again by beat; others are.
    other = Host.objects.create(organisation=host.organisation, name="mx2.probe.test",
                                address=ps.GOOD)  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):
        assert hosts_probe_queue_due() == 1
    assert TaskRun.objects.filter(kind=TaskKind.HOST_PROBE, object_id=str(other.pk)).exists()
    assert AuditLog.objects.filter(action="host.probe").count() == 1  # beat's are not audited
    # Probed within the interval: not queued again.
    TaskRun.objects.filter(kind=TaskKind.HOST_PROBE).update(state=TaskState.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        assert hosts_probe_queue_due() == 0


HTMX = {"HX-Request": "true"}


def _login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_host_page_shows_probes_and_probe_now_polls(
    owner: Any, viewer: Any, outsider: Any, host: Host, django_capture_on_commit_callbacks: Any
) -> None:
    ProbeResult.objects.create(
        host=host, name="smtp_relay", address=ps.GOOD, port=25, status="fail",
        summary="Open relay: RCPT TO accepted", details={},
        probed_at=timezone.now() - timedelta(minutes=10),
    )  # fmt: skip
    domain = Domain.objects.create(organisation=host.organisation, name="probe.test")
    host.domains.add(domain)
    page = _login(viewer).get(f"/hosts/{host.pk}/").content.decode()
    assert 'id="host-probes"' in page and "Open relay: RCPT TO accepted" in page
    assert "Probe now" not in page  # viewers read only
    assert _login(viewer).post(f"/hosts/{host.pk}/probe/", headers=HTMX).status_code in (200, 403)
    assert not TaskRun.objects.filter(kind=TaskKind.HOST_PROBE).exists()
    assert _login(outsider).get(f"/hosts/{host.pk}/probes/").status_code == 404
    # CSRF is enforced on Probe now.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(f"/hosts/{host.pk}/probe/", headers=HTMX).status_code == 403
    with django_capture_on_commit_callbacks(execute=False):
        response = _login(owner).post(f"/hosts/{host.pk}/probe/", headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "probing…" in body and 'hx-trigger="every 2s"' in body
    assert TaskRun.objects.filter(kind=TaskKind.HOST_PROBE, object_id=str(host.pk)).count() == 1
    # Once it ends, asking again within the minute says so in place.
    TaskRun.objects.filter(kind=TaskKind.HOST_PROBE).update(state=TaskState.SUCCEEDED)
    again = _login(owner).post(f"/hosts/{host.pk}/probe/", headers=HTMX).content.decode()
    assert "less than a minute ago" in again and 'role="alert"' in again
    # The domain's page section lists the serving host's probe results.
    section = _login(viewer).get(f"/domains/{domain.pk}/hosts/", headers=HTMX).content.decode()
    assert f'id="domain-probes-{host.pk}"' in section and "smtp_relay" in section


def test_beat_prunes_old_results_but_keeps_each_newest(
    host: Host, django_capture_on_commit_callbacks: Any
) -> None:
    now = timezone.now()
    made = {}
    for name, days in (("smtp_relay", 200), ("smtp_relay", 100), ("smtp_relay", 1), ("dane", 120)):
        made[(name, days)] = ProbeResult.objects.create(
            host=host, name=name, address=ps.GOOD, port=25, status="ok", summary="",
            details={}, probed_at=now - timedelta(days=days),
        ).pk  # fmt: skip
    domain = Domain.objects.create(organisation=host.organisation, name="probe.test")
    for days in (200, 100):
        made[("mx", days)] = ProbeResult.objects.create(
            domain=domain, target="mx.probe.test", name="smtp_relay", address=ps.GOOD, port=25,
            status="ok", summary="", details={}, probed_at=now - timedelta(days=days),
        ).pk  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):
        hosts_probe_queue_due(now=now)
    left = set(ProbeResult.objects.values_list("pk", flat=True))
    assert left == {made[("smtp_relay", 1)], made[("dane", 120)], made[("mx", 100)]}


def test_same_address_under_two_hosts_is_probed_once_a_minute(
    owner_api: APIClient, host: Host, other_org: Any, outsider_api: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    twin = Host.objects.create(organisation=other_org, name="twin.example", address=host.address)
    with django_capture_on_commit_callbacks(execute=False):
        assert owner_api.post(f"/api/v1/hosts/{host.pk}/probe/").status_code == 202
        TaskRun.objects.filter(kind=TaskKind.HOST_PROBE).update(state=TaskState.SUCCEEDED)
        response = outsider_api.post(f"/api/v1/hosts/{twin.pk}/probe/")
    assert response.status_code == 429, response.content


def test_domain_mx_probe_endpoints(
    owner_api: APIClient, viewer_api: APIClient, outsider_api: APIClient, viewer: Any, org: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    domain = Domain.objects.create(organisation=org, name="probe.test")
    assert viewer_api.post("/api/v1/domains/probe.test/mx-probe/").status_code == 403
    assert outsider_api.post("/api/v1/domains/probe.test/mx-probe/").status_code == 404
    assert outsider_api.get("/api/v1/domains/probe.test/mx-probes/").status_code == 404
    with django_capture_on_commit_callbacks(execute=False):
        first = owner_api.post("/api/v1/domains/probe.test/mx-probe/")
        joined = owner_api.post("/api/v1/domains/probe.test/mx-probe/")
    assert first.status_code == 202 and joined.json()["task_id"] == first.json()["task_id"]
    run = TaskRun.objects.get(pk=first.json()["task_id"])
    assert (run.kind, run.object_type, run.object_id) == (
        TaskKind.HOST_PROBE,
        "domain",
        str(domain.pk),
    )
    TaskRun.objects.filter(pk=run.pk).update(state=TaskState.SUCCEEDED)
    assert owner_api.post("/api/v1/domains/probe.test/mx-probe/").status_code == 429
    now = timezone.now()
    for target, status in (("mx.probe.test", "ok"), ("relay.probe.test", "fail")):
        ProbeResult.objects.create(
            domain=domain, target=target, name="smtp_relay", address=ps.GOOD, port=25,
            status=status, summary=f"{target} {status}", details={}, probed_at=now,
        )  # fmt: skip
    listed = viewer_api.get("/api/v1/domains/probe.test/mx-probes/").json()
    assert [(r["details"]["target"], r["status"]) for r in listed] == [
        ("mx.probe.test", "ok"), ("relay.probe.test", "fail"),
    ]  # fmt: skip
    assert all(set(r) == SHAPE for r in listed)
    section = _login(viewer).get(f"/domains/{domain.pk}/hosts/", headers=HTMX).content.decode()
    assert 'id="domain-mx-probes"' in section and "relay.probe.test fail" in section


def test_beat_queues_domains_mx_probes_within_the_interval_once(
    org: Any, django_capture_on_commit_callbacks: Any
) -> None:
    domain = Domain.objects.create(organisation=org, name="probe.test")
    with django_capture_on_commit_callbacks(execute=False):
        assert hosts_probe_queue_due() == 1
        assert hosts_probe_queue_due() == 0  # queued within the interval
    run = TaskRun.objects.get(kind=TaskKind.HOST_PROBE, object_type="domain")
    assert run.object_id == str(domain.pk)
