"""Adding a domain runs its delegation check on a real Celery worker against Knot."""

from __future__ import annotations

import time

import pytest

from dns_records.models import CheckResult, Domain
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


def test_created_domain_gets_its_delegation_checked_by_the_worker(celery_worker, owner_api):
    response = owner_api.post("/api/v1/domains/", {"name": "good.test"}, format="json")
    assert response.status_code == 201
    domain = Domain.objects.get(name="good.test")
    run = TaskRun.objects.get(object_id=str(domain.pk))
    run = _wait_finished(str(run.pk))
    assert run.state == TaskState.SUCCEEDED, run.error
    result = CheckResult.objects.get(domain=domain)
    assert (result.name, result.status) == ("delegation", "ok")
    checks = owner_api.get("/api/v1/domains/good.test/checks/").json()
    assert checks[0]["status"] == "ok"
    assert owner_api.get(f"/api/v1/tasks/{run.pk}/").json()["state"] == "succeeded"


def test_check_now_reports_a_lookup_failure_as_error(celery_worker, owner_api):
    owner_api.post("/api/v1/domains/", {"name": "unserved.example"}, format="json")
    task_id = owner_api.post("/api/v1/domains/unserved.example/check/").json()["task_id"]
    run = _wait_finished(task_id)
    assert run.state == TaskState.SUCCEEDED
    assert run.result["checks"][0]["status"] == "error"
    assert "REFUSED" in run.result["checks"][0]["summary"]
