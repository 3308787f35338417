"""The blocklist page in headless Chromium: the matrix reads at a glance, the blacklist form
works without a reload, no console error. Leaves a screenshot in the test's tmp directory (and
in MAILSEC_TEST_SCREENSHOTS when set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from blocklists import services
from blocklists.models import BlacklistEntry
from tests.conftest import PASSWORD
from tests.servers import missing

pytestmark = [pytest.mark.browser, pytest.mark.knot, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture
def browser_page(tmp_path: Any) -> Iterator[tuple[Any, list[str]]]:
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


def test_blocklist_page_in_the_browser(
    browser_page, live_server, bl_dns, org, owner, acme, tmp_path
):
    services.organisation_poll(organisation_id=org.pk)
    bl_dns.silent = "uribl.com"  # one list goes silent: its known states show as stale
    services.organisation_poll(organisation_id=org.pk)
    page, problems = browser_page
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.click("nav >> text=Blocklists")
    page.wait_for_url(f"{live_server.url}/blocklists/")

    listed = page.locator("#matrix-ip td[data-zone='zen.spamhaus.org'][data-status=listed]")
    assert listed.count() == 3  # 127.0.0.2, ::ffff:7f00:2 and 192.0.2.25
    assert page.locator("#matrix-ip td[data-status=clean]").count() > 0
    assert page.locator("#matrix-ip td[data-status=error]").count() > 0
    stale = page.locator("#matrix-domain td[data-stale=true]")
    assert stale.count() >= 1
    # Listed red, clean green: the colours the matrix is read by.
    red = page.locator("#matrix-ip .badge.listed").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    green = page.locator("#matrix-ip .badge.clean").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert red == "rgb(180, 35, 24)" and green == "rgb(29, 122, 70)"

    page.evaluate("window.mailsecMarker = 'same-page'")
    page.fill("#blacklist-network", "198.51.100.0/24")
    page.fill("#blacklist-reason", "brute force")
    page.select_option("#blacklist-expires", "30")
    page.click("#blacklist-panel button[type=submit]")
    page.locator("#blacklist-entries code", has_text="198.51.100.0/24").wait_for()
    assert page.evaluate("window.mailsecMarker") == "same-page"
    assert BlacklistEntry.objects.get().reason == "brute force"

    _shot(page, tmp_path, "blocklists.png")

    # The domain page loads its own listings, and the domain list shows the listing as fail.
    page.goto(f"{live_server.url}/domains/{acme.pk}/")
    page.locator("#domain-blocklists tr[data-status=listed]").first.wait_for()
    assert page.locator("#domain-blocklists tr[data-status=listed]").count() == 4
    _shot(page, tmp_path, "domain-blocklists.png")
    page.goto(f"{live_server.url}/domains/")
    row = page.locator(f"#domain-{acme.pk}")
    assert row.locator("[data-status=fail]").count() == 1
    assert "is listed on" in row.inner_text()
    assert problems == [], problems


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    target = os.environ.get("MAILSEC_TEST_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)
