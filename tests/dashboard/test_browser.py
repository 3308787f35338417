"""A person in headless Chromium: log in, add a domain, watch its check arrive without a reload."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from dns_records.models import Domain
from mailsec.models import TaskRun
from tests.conftest import PASSWORD
from tests.servers import missing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.knot,
    pytest.mark.django_db(transaction=True),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture
def browser_page(tmp_path: Any) -> Iterator[tuple[Any, list[str]]]:
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        missing("Chromium is not installed at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on(
            "console", lambda m: problems.append(m.text) if m.type in {"error", "warning"} else None
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            yield page, problems
        finally:
            page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
            browser.close()
            # ORM calls made inside Playwright's context opened their own connection.
            connections.close_all()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_add_domain_and_see_its_checks_without_reload(
    browser_page, live_server, celery_worker, owner, tmp_path
):
    page, problems = browser_page
    page.goto(f"{live_server.url}/domains/")
    assert "/login/" in page.url
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/domains/")

    page.evaluate("window.mailsecMarker = 'same-page'")
    page.fill("#domain-name", "good.test")
    page.click("#domain-add-form button[type=submit]")

    page.locator("#domain-table tbody tr").first.wait_for(timeout=10_000)
    domain = Domain.objects.get(name="good.test")
    row = page.locator(f"#domain-{domain.pk}")
    row.locator("[data-status=pending], [data-status=ok]").first.wait_for(timeout=10_000)
    # good.test passes every check but DNSSEC (its fixture zone is unsigned) and DKIM (mailsec
    # holds no key of it yet): warnings, and the row names one of them.
    row.locator("[data-status=warning]").wait_for(timeout=30_000)
    text = row.inner_text()
    assert "dnssec: good.test is not signed" in text or "dkim: No DKIM key" in text, text
    assert page.evaluate("window.mailsecMarker") == "same-page", "the page was reloaded"
    assert page.input_value("#domain-name") == "", "the add form was not reset"
    # Polling stops once the result is in: the row no longer asks for updates.
    assert row.get_attribute("hx-trigger") is None

    page.click(f"#domain-{domain.pk} a")
    page.locator("#check-delegation [data-status=ok]").wait_for()
    for name in ("spf", "dmarc", "mx", "rdns", "mta_sts", "tls_rpt", "bimi"):
        assert (
            page.locator(f"#check-{name} summary [data-status]").get_attribute("data-status")
            == "ok"
        ), name
    page.screenshot(path=str(tmp_path / "domain.png"), full_page=True)
    assert problems == [], problems


def test_search_filter_check_now_and_delete_in_the_browser(
    browser_page, live_server, celery_worker, owner, org
):
    from playwright.sync_api import expect

    from dns_records.services import domain_create

    page, problems = browser_page
    for name in ("good.test", "none.spf.test", "single.mx.test"):
        domain_create(organisation=org, name=name, actor=owner)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    # The landing page is the overview; the domain list has its own address.
    page.goto(f"{live_server.url}/domains/")
    rows = page.locator("#domain-table tbody tr")
    # Wait for every first check to land, then narrow the list without a reload.
    expect(page.locator("[data-status=pending]")).to_have_count(0, timeout=30_000)
    page.evaluate("window.mailsecMarker = 'same-page'")
    page.select_option("#domain-status", "fail")
    expect(rows).to_have_count(2)
    page.fill("#domain-search", "spf")
    expect(rows).to_have_count(1)
    assert "none.spf.test" in rows.first.inner_text()
    assert "status=fail" in page.url
    assert "q=spf" in page.url
    assert page.evaluate("window.mailsecMarker") == "same-page", "filtering reloaded the page"

    # Check now from the domain page: the badge goes pending, then the result returns.
    page.click("text=none.spf.test")
    target = Domain.objects.get(name="none.spf.test")
    runs_before = TaskRun.objects.filter(object_id=str(target.pk)).count()
    with page.expect_response(lambda response: response.url.endswith("/check/")):
        page.click("#check-results button:has-text('Check now')")
    # The section polls while the check runs and offers "Check now" again once it is done.
    expect(page.locator("#check-results button:has-text('Check now')")).to_be_visible(
        timeout=30_000
    )
    runs = TaskRun.objects.filter(object_id=str(target.pk)).order_by("-created_at")
    assert runs.count() == runs_before + 1, "Check now queued no new check"
    newest = runs.first()
    assert newest is not None
    assert newest.state == "succeeded"
    page.locator("#check-spf [data-status=fail]").wait_for()
    assert "publish" in page.inner_text("#check-spf").lower()

    # Delete, confirming the dialog; the row disappears and the domain is gone.
    page.goto(f"{live_server.url}/domains/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#domain-table tbody tr", has_text="single.mx.test").locator("button").click()
    expect(page.locator("#domain-table")).not_to_contain_text("single.mx.test")
    assert not Domain.objects.filter(name="single.mx.test").exists()
    assert problems == [], problems


def test_a_refused_domain_shows_its_error_in_place_without_breaking_the_csp(
    browser_page, live_server, owner, other_org
):
    """htmx swaps the form back with the error, twice; any console error (a CSP refusal of an
    inline style settled onto the new form, say) fails the test."""
    from mailsec.models import Role
    from mailsec.services.members import membership_set

    # Two writable organisations: the form shows the organisation choice too.
    membership_set(organisation=other_org, user=owner, role=Role.ADMIN, actor=None)
    page, problems = browser_page
    page.goto(f"{live_server.url}/domains/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/domains/")
    page.fill("#domain-name", "not a domain")
    page.click("#domain-add-form button[type=submit]")
    page.locator("#domain-add-form .error").first.wait_for(timeout=10_000)
    page.fill("#domain-name", "-bad-.test")
    page.click("#domain-add-form button[type=submit]")
    page.locator("#domain-add-form .error", has_text="-bad-").first.wait_for(timeout=10_000)
    assert problems == []
    assert not Domain.objects.exists()
