"""A poll asked for through the API runs in a real Celery worker and is stored."""

from __future__ import annotations

import time

import pytest

from blocklists import tasks
from blocklists.models import BlocklistSettings, Listing
from mailsec.models import TaskRun

pytestmark = [pytest.mark.worker, pytest.mark.knot, pytest.mark.django_db(transaction=True)]


def test_poll_runs_in_the_worker(celery_worker, owner_api, org, acme, settings):
    # The worker resolves through the suite's main Knot, which serves none of these zones: every
    # answer is REFUSED, so every state is an error, never clean.
    response = owner_api.post("/api/v1/blacklists/poll/")
    assert response.status_code == 202
    run_id = response.json()["task_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = TaskRun.objects.get(pk=run_id)
        if run.state in {"succeeded", "failed"}:
            break
        time.sleep(0.3)
    assert run.state == "succeeded", run.error
    assert run.result["lookups"] > 0 and run.result.get("error") == run.result["lookups"]
    states = list(Listing.objects.filter(target__organisation=org))
    assert states and {s.status for s in states} == {"error"}
    assert all("REFUSED" in s.error for s in states)
    assert BlocklistSettings.objects.get(organisation=org).next_poll_at is not None


def test_beat_queues_due_organisations_once(org, acme):
    assert tasks.queue_due_polls.apply().get() == 1
    assert tasks.queue_due_polls.apply().get() == 0
