"""The whole IMAP way in: a person adds a mailbox in Chromium, a real Celery worker polls the
real Dovecot, and the page shows the outcome without a reload, with no console or CSP error.

The worker is this module's own (its queue, MAILSEC_TLS_CA_FILE naming the Dovecot's test CA):
the session's worker trusts another test CA. The poll task is routed to its queue by name, as
`reports.tasks.poll_imap_mailbox`, so the test also proves the worker registers it.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mailsec.celery import app as celery_app
from reports.models import ImapMailbox, IngestSource, RawMessage
from tests import settings as test_settings
from tests.conftest import PASSWORD
from tests.dashboard.test_browser import browser_page  # noqa: F401 (the fixture)
from tests.reports.imap_server import IMAP_ADDRESS, DovecotServer
from tests.reports.test_imap import PASSWORD as IMAP_PASSWORD
from tests.reports.test_imap import USER, Mailbox, report
from tests.reports.test_smtp_listener import _test_database_url
from tests.servers import CeleryWorker, missing

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    server = DovecotServer({USER: IMAP_PASSWORD})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _route(routes: Any) -> None:
    """Set the test process's task routes; Celery caches its router at the first send."""
    celery_app.conf.task_routes = routes
    celery_app.amqp.flush_routes()
    celery_app.amqp.__dict__.pop("router", None)


@pytest.fixture
def imap_worker(dovecot: DovecotServer, tmp_path: Any) -> Iterator[CeleryWorker]:
    if not test_settings.REDIS_AVAILABLE:
        missing("Redis is not running on 127.0.0.1:6379")
    queue = f"mailsec-test-imap-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MAILSEC_", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "mailsec.settings",
        "MAILSEC_DEBUG": "1",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": test_settings.TEST_BROKER_URL,
        "MAILSEC_CELERY_QUEUE": queue,
        "MAILSEC_TLS_CA_FILE": str(dovecot.ca_file),
        "MAILSEC_PROBE_ALLOW_NETWORKS": f"{IMAP_ADDRESS}/32",
        "MAILSEC_DNS_NAMESERVERS": "127.0.0.1:9",
        "MAILSEC_VAR_DIR": str(tmp_path / "var"),
        "MAILSEC_ENCRYPTION_KEYS": test_settings.TEST_ENCRYPTION_KEYS,
    }
    worker = CeleryWorker(tmp_path, env)
    worker.start()
    routes = celery_app.conf.task_routes
    _route({"reports.tasks.poll_imap_mailbox": {"queue": queue}})
    try:
        yield worker
    finally:
        _route(routes)
        worker.stop()
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)  # type: ignore[attr-defined]


def test_a_mailbox_added_in_the_browser_is_polled_by_the_worker(
    browser_page,  # noqa: F811
    live_server,
    imap_worker,
    dovecot,
    owner,
    settings,
):
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network(f"{IMAP_ADDRESS}/32")]
    inbox = Mailbox(dovecot)
    sent = [report(1), report(2)]
    for content in sent:
        inbox.append(content)
    page, problems = browser_page
    page.goto(f"{live_server.url}/reports/mailboxes/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/reports/mailboxes/")
    page.evaluate("window.mailsecMarker = 'same-page'")

    page.fill("#mailbox-host", IMAP_ADDRESS)
    page.fill("#mailbox-port", str(dovecot.imaps_port))
    page.fill("#mailbox-username", USER)
    page.fill("#mailbox-password", IMAP_PASSWORD)
    page.click("#mailbox-form button[type=submit]")

    # The first poll is queued on creation; while it is pending the table reloads itself
    # every 5 s, then stops.
    try:
        page.locator("#mailbox-table tbody tr", has_text="2 stored").wait_for(timeout=60_000)
    except Exception:
        state = list(ImapMailbox.objects.values("last_error", "last_polled_at"))
        pytest.fail(f"no poll result: {state}\n{imap_worker.log_path.read_text()[-3000:]}")
    assert page.get_attribute("#mailbox-table", "hx-trigger") is None
    assert page.evaluate("window.mailsecMarker") == "same-page"
    assert IMAP_PASSWORD not in page.content()

    mailbox = ImapMailbox.objects.get()
    assert mailbox.last_error == ""
    stored = RawMessage.objects.filter(source=IngestSource.IMAP, organisation=mailbox.organisation)
    assert sorted(bytes(r.content) for r in stored) == sorted(sent)
    assert inbox.messages() == []
    assert problems == [], problems
