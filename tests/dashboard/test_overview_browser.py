"""The overview in headless Chromium: the landing page, no console or CSP errors, one click from
a failing control to its worst offender."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.utils import timezone

from dns_records.models import CheckState, Domain
from hosts.models import Deployment, DeploymentState, Host, Policy
from hosts.policy import PolicyValues
from hosts.selectors import policy_values_json
from tests.conftest import PASSWORD
from tests.dashboard.test_browser import browser_page  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT = os.environ.get("MAILSEC_OVERVIEW_SCREENSHOT", "")


def _check(domain, name, status, summary):
    now = timezone.now()
    CheckState.objects.create(
        domain=domain, name=name, status=status, summary=summary, checked_at=now, changed_at=now
    )


def test_the_overview_lands_after_login_and_leads_to_the_offender(
    browser_page,  # noqa: F811
    live_server,
    owner,
    org,
    tmp_path: Path,
):
    from playwright.sync_api import expect

    page, problems = browser_page
    bad = Domain.objects.create(organisation=org, name="nospf.acme.test", worst_status="fail")
    good = Domain.objects.create(organisation=org, name="acme.test", worst_status="ok")
    _check(bad, "spf", "fail", "No SPF record")
    _check(good, "spf", "ok", "One record, ends in -all")
    _check(good, "mx", "ok", "Two MX hosts")
    _check(bad, "mx", "warning", "Only one MX host")
    wide = Policy.objects.create(
        organisation=org,
        name="wide",
        values=policy_values_json(PolicyValues(mynetworks=("0.0.0.0/0",))),
    )
    host = Host.objects.create(organisation=org, name="mx1.acme.test", address="192.0.2.1",
                               policy=wide)  # fmt: skip
    Deployment.objects.create(
        host=host, state=DeploymentState.SUCCEEDED, finished_at=timezone.now()
    )

    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("nav.nav a[aria-current=page]")).to_have_text("Overview")
    controls = page.locator(".scorecard .control")
    expect(controls).to_have_count(13)
    expect(page.locator("[data-control=spf]")).to_have_attribute("data-status", "fail")
    expect(page.locator("[data-control=open_relay]")).to_have_attribute("data-status", "fail")
    expect(page.locator("[data-control=dnsbl]")).to_have_attribute("data-status", "unmeasured")
    first = page.locator(".overview-action li").first
    expect(first).to_contain_text("No open relay")

    # The htmx refresh swaps the cards in place, without a reload.
    page.evaluate("window.mailsecMarker = 'same-page'")
    with page.expect_response(lambda r: r.url.rstrip("/") == live_server.url):
        page.click("button:has-text('Refresh')")
    expect(controls).to_have_count(13)
    assert page.evaluate("window.mailsecMarker") == "same-page"

    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)

    # Worst offenders are one click away, and that click opens the domain.
    spf = page.locator("[data-control=spf]")
    spf.locator("summary").click()
    spf.locator("a:has-text('nospf.acme.test')").click()
    page.wait_for_url(f"{live_server.url}/domains/{bad.pk}/")
    expect(page.locator("h1")).to_contain_text("nospf.acme.test")
    assert problems == [], problems
