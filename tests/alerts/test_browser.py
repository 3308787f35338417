"""The alerts page in headless Chromium: a channel added without a reload, the current
problems with acknowledge, no console or CSP error. Leaves a screenshot in the test's tmp
directory (and in MAILSEC_TEST_SCREENSHOTS when set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from alerts import services
from alerts.models import AlertState, Channel
from tests.conftest import PASSWORD
from tests.servers import missing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        missing("Chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on(
            "console", lambda m: problems.append(m.text) if m.type in {"error", "warning"} else None
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            yield page, problems
        finally:
            browser.close()
            connections.close_all()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_alerts_page_in_the_browser(browser_page, live_server, org, owner, tmp_path) -> None:
    channel, _ = services.channel_create(
        organisation=org, kind="email", name="admins", target="admins@example.com", actor=owner
    )
    Channel.objects.filter(pk=channel.pk).update(
        disabled_at=timezone.now(), consecutive_failures=3,
        last_error="recipient refused: admins@example.com (550 5.1.1 no such user)",
    )  # fmt: skip
    now = timezone.now()
    AlertState.objects.create(
        organisation=org, key="check:example.com:dmarc", event="check", status="fail",
        since=now, summary="No DMARC record", notified_status="fail",
    )  # fmt: skip
    AlertState.objects.create(
        organisation=org, key="listing:192.0.2.25:zen.spamhaus.org", event="blocklist",
        status="fail", since=now, summary="192.0.2.25 on zen.spamhaus.org: listed",
    )  # fmt: skip
    page, problems = browser_page
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.click("nav >> text=Alerts")
    page.wait_for_url(f"{live_server.url}/alerts/")

    assert page.locator("#alert-state-table tbody tr").count() == 2
    assert page.locator("#alert-channels .badge.fail").inner_text() == "disabled"
    assert page.locator("#alert-channels button", has_text="Re-enable").count() == 1

    page.select_option("#channel-kind", "webhook")
    page.fill("#channel-name", "ops hook")
    page.fill("#channel-target", "https://hooks.example.com/mailsec")
    page.click("#alert-channels button[type=submit]")
    page.wait_for_selector("#channel-secret")
    assert len(page.locator("#channel-secret").inner_text().strip()) >= 40
    assert Channel.objects.filter(name="ops hook", kind="webhook").exists()
    # The rule form now offers the new channel, without a reload.
    page.wait_for_selector("#alert-rules label:has-text('ops hook')")

    page.locator("#alert-state-table button", has_text="Acknowledge").first.click()
    page.wait_for_selector("#alert-state-table >> text=acknowledged")
    assert AlertState.objects.exclude(acknowledged_at=None).count() == 1

    shot = tmp_path / "alerts.png"
    page.screenshot(path=str(shot), full_page=True)
    target = os.environ.get("MAILSEC_TEST_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / "alerts.png")
    assert problems == []
