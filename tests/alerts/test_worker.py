"""Through a real Celery worker: beat's `evaluate_alerts` runs in the worker, which queues
`deliver_notification`, which posts the signed webhook to the HTTPS receiver.

The worker has its own queue, so it never takes the session worker's tasks (nor they its).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from alerts import services
from alerts.models import AlertState, Notification, NotificationState
from alerts.tasks import evaluate_alerts
from dns_records.models import CheckState, Domain
from mailsec.celery import app as celery_app
from tests import settings as test_settings
from tests.alerts.conftest import WebhookReceiver
from tests.servers import CeleryWorker, missing

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUEUE = f"alerts-test-{uuid.uuid4().hex[:8]}"


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{db['HOST']}{port}/{db['NAME']}"


@pytest.fixture
def alerts_worker(
    webhook_receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    if not test_settings.REDIS_AVAILABLE:
        missing("Redis is not running on 127.0.0.1:6379")
    if connection.vendor != "postgresql":
        pytest.skip("the worker test shares the test database over PostgreSQL")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailsec.settings",
        "MAILSEC_DEBUG": "1",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": test_settings.TEST_BROKER_URL,
        "MAILSEC_CELERY_QUEUE": QUEUE,
        "MAILSEC_PROBE_ALLOW_NETWORKS": "127.0.0.0/8",
        "MAILSEC_TLS_CA_FILE": str(webhook_receiver.ca_file),
        "MAILSEC_VAR_DIR": str(tmp_path_factory.mktemp("alerts-worker-var")),
        "MAILSEC_ENCRYPTION_KEYS": test_settings.TEST_ENCRYPTION_KEYS,
        "MAILSEC_ALERT_CONFIRM_RUNS": "2",
    }
    worker = CeleryWorker(tmp_path_factory.mktemp("alerts-worker"), env, concurrency=1)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(QUEUE)  # type: ignore[attr-defined]


def _wait(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_evaluation_and_delivery_in_the_worker(
    alerts_worker: CeleryWorker, webhook_receiver: WebhookReceiver, org: Any, owner: Any
) -> None:
    webhook_receiver.requests.clear()
    webhook_receiver.status = 200
    url = f"https://{webhook_receiver.address}:{webhook_receiver.port}/hook"
    channel, secret = services.channel_create(
        organisation=org, kind="webhook", name="ops", target=url, actor=owner
    )
    services.rule_create(organisation=org, channels=[channel.pk], min_status="fail", actor=owner)
    domain = Domain.objects.create(organisation=org, name="example.com")
    when = timezone.now() - timedelta(minutes=30)
    for status in ("fail", "fail"):
        when += timedelta(minutes=5)
        CheckState.objects.update_or_create(
            domain=domain, name="dmarc",
            defaults={"status": status, "summary": "no record", "checked_at": when,
                      "changed_at": when},
        )  # fmt: skip
        evaluate_alerts.apply_async(queue=QUEUE)
        # No result backend: the evaluation is done when the subject has seen this run.
        assert _wait(
            lambda at=when: AlertState.objects.filter(
                key="check:example.com:dmarc", last_run_at=at
            ).exists()
        ), alerts_worker.log_path.read_text()[-2000:]
    assert _wait(lambda: len(webhook_receiver.requests) == 1), alerts_worker.log_path.read_text()[
        -3000:
    ]
    received = webhook_receiver.requests[0]
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["X-Mailsec-Signature"] == f"sha256={expected}"
    assert json.loads(received.body)["changes"][0]["key"] == "check:example.com:dmarc"
    assert _wait(
        lambda: Notification.objects.filter(channel=channel, state=NotificationState.SENT).exists()
    )
