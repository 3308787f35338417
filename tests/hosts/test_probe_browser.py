"""A person in headless Chromium presses Probe now on a host page: the section polls while the
real worker probes the real Postfix and Dovecot on 127.0.0.90, then shows the results; no
console or CSP error."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.models import Host, ProbeResult
from tests.hosts import probe_servers as ps
from tests.hosts.test_pages_browser import SCREENSHOTS, browser_page, log_in  # noqa: F401
from tests.hosts.test_probe import Servers, servers  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_probe_now_polls_and_shows_the_results(
    browser_page: Any,  # noqa: F811
    live_server: Any,
    celery_worker: Any,
    servers: Servers,  # noqa: F811
    owner: Any,
    org: Any,
) -> None:
    page, problems = browser_page
    host = Host.objects.create(organisation=org, name=ps.MX_NAME, address=ps.GOOD)
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/hosts/{host.pk}/")
    assert page.locator("#host-probes .empty").inner_text() == "Not probed yet."
    page.click("#host-probes button:has-text('Probe now')")
    page.wait_for_selector("#host-probes .badge.pending", timeout=10_000)
    # The section polls every 2 s until the worker has finished.
    page.wait_for_selector("#probe-smtp_relay-25", timeout=120_000)
    assert page.locator("#host-probes .badge.pending").count() == 0
    assert page.locator("#probe-smtp_relay-25").get_attribute("data-status") == "ok"
    assert page.locator("#probe-imap_cleartext_login-143").get_attribute("data-status") == "ok"
    assert ProbeResult.objects.filter(host=host).exists()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#host-probes").screenshot(path=str(SCREENSHOTS / "host-probes.png"))
    assert not problems, problems
