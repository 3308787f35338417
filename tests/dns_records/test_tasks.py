"""Adding a domain runs its delegation check on a real Celery worker against Knot."""

from __future__ import annotations

import time

import pytest

from dns_records.models import CheckEvent, CheckResult, CheckState, Domain
from mailsec.models import TaskRun, TaskState

pytestmark = [pytest.mark.worker, pytest.mark.knot, pytest.mark.django_db(transaction=True)]


def _wait_finished(task_id: str, timeout: float = 30.0) -> TaskRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = TaskRun.objects.get(pk=task_id)
        if run.finished:
            return run
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish: {TaskRun.objects.get(pk=task_id).state}")


def test_created_domain_gets_every_check_run_by_the_worker(celery_worker, owner_api):
    response = owner_api.post("/api/v1/domains/", {"name": "good.test"}, format="json")
    assert response.status_code == 201
    domain = Domain.objects.get(name="good.test")
    run = TaskRun.objects.get(object_id=str(domain.pk))
    run = _wait_finished(str(run.pk))
    assert run.state == TaskState.SUCCEEDED, run.error
    states = {s.name: s.status for s in CheckState.objects.filter(domain=domain)}
    assert states == {
        "delegation": "ok", "spf": "ok", "dmarc": "ok", "dkim": "warning", "mx": "ok",
        "rdns": "ok", "mta_sts": "ok", "tls_rpt": "ok", "dnssec": "warning", "bimi": "ok",
    }  # fmt: skip
    assert CheckResult.objects.filter(domain=domain).count() == 10
    assert CheckEvent.objects.filter(domain=domain, previous_status="").count() == 10
    checks = owner_api.get("/api/v1/domains/good.test/checks/").json()
    assert [c["name"] for c in checks][:2] == ["delegation", "spf"]
    domain.refresh_from_db()
    assert domain.worst_status == "warning"
    assert domain.next_check_at is not None
    assert run.finished_at is not None
    assert domain.next_check_at > run.finished_at
    assert owner_api.get(f"/api/v1/tasks/{run.pk}/").json()["state"] == "succeeded"


def test_check_now_reports_a_lookup_failure_as_error(celery_worker, owner_api):
    owner_api.post("/api/v1/domains/", {"name": "unserved.example"}, format="json")
    task_id = owner_api.post("/api/v1/domains/unserved.example/check/").json()["task_id"]
    run = _wait_finished(task_id)
    assert run.state == TaskState.SUCCEEDED
    statuses = {c["name"]: c["status"] for c in run.result["checks"]}
    # The resolver refuses every question about this domain: nothing is known, nothing failed.
    assert set(statuses.values()) == {"error"}, statuses
    assert "REFUSED" in run.result["checks"][0]["summary"]
