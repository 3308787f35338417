"""The report pages in headless Chromium: they render, the chart draws, the range switch swaps in
place, copy and re-process work, with no console error and no CSP violation."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from dns_records.models import CheckState, Domain
from mailsec.models import AuditLog
from reports.models import RawMessageState
from tests.conftest import PASSWORD
from tests.reports.factories import (
    Rec,
    forwarded,
    make_raw_message,
    make_report,
    make_source,
    make_tls_report,
    own,
    spoof,
)
from tests.servers import missing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
SHOTS = Path(os.environ.get("MAILSEC_TEST_SCREENSHOTS", "/tmp/shots"))
# Records every CSP violation the page reports, before any of its own scripts run.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
def browser_page(live_server: Any) -> Iterator[tuple[Any, list[str]]]:
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        missing("Chromium is not installed at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        page = context.new_page()
        page.add_init_script(CSP_WATCH)
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


def _csp_violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__cspViolations || []"))


@pytest.fixture
def report_data(org: Any) -> dict[str, Any]:
    today = timezone.now().date()
    domain = Domain.objects.create(organisation=org, name="example.com")
    now = timezone.now()
    CheckState.objects.create(
        domain=domain, name="dmarc", status="ok", summary="", checked_at=now, changed_at=now,
        details={"record": "v=DMARC1; p=none; rua=mailto:dmarc@example.com", "inherited_from": None},
    )  # fmt: skip
    raw = make_raw_message(org, b"<feedback>report</feedback>", filename="google.xml")
    newest = None
    for n in range(1, 60):
        day = today - dt.timedelta(days=n)
        records = [
            own("192.0.2.1", 800 + 10 * (n % 7)),
            own("192.0.2.2", 120, selector="s2"),
            forwarded("198.51.100.7", 30 + n % 5),
            spoof("203.0.113.9", 15 + 3 * (n % 4)),
            Rec("198.51.100.20", 12, dkim_aligned="fail", spf_aligned="fail",
                spf=[("mailer.example.net", "mfrom", "pass")]),
        ]  # fmt: skip
        report = make_report(
            organisation=org,
            domain=domain,
            policy_domain="example.com",
            day=day,
            records=records,
            raw_message=raw if n == 1 else None,
        )
        newest = newest or report
    make_report(
        organisation=org,
        domain=domain,
        policy_domain="example.com",
        day=today - dt.timedelta(days=1),
        org_name="yahoo.com",
        records=[own("192.0.2.1", 300)],
    )
    make_source("192.0.2.1", "mail.example.com", asn=64500, as_org="Example Net", country="NL")
    make_source("198.51.100.7", "lists.example.org", ptr_status="ok")
    make_source("203.0.113.9", "", ptr_status="none")
    make_tls_report(
        organisation=org,
        policy_domain="example.com",
        day=today - dt.timedelta(days=2),
        failures=[("certificate-expired", 4), ("starttls-not-supported", 1)],
    )
    quarantined = make_raw_message(
        org,
        b"Subject: out of office\r\n\r\nI am away.",
        state=RawMessageState.QUARANTINED,
        reason="not_a_report",
        detail="text/plain body, no attachment",
    )
    return {"domain": domain, "report": newest, "quarantined": quarantined}


def _login(page: Any, live_server: Any, user: Any, then: str) -> None:
    page.goto(f"{live_server.url}{then}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{then}")


def test_dashboard_chart_range_switch_and_advisor_copy(
    browser_page, live_server, owner, report_data
):
    from playwright.sync_api import expect

    page, problems = browser_page
    domain = report_data["domain"]
    _login(page, live_server, owner, "/reports/")
    page.screenshot(path=str(SHOTS / "reports-home.png"), full_page=True)
    page.click(f"#report-domain-{domain.pk} a")
    page.wait_for_url(f"{live_server.url}/reports/domains/{domain.pk}/")
    chart = page.locator("#report-chart canvas")
    chart.wait_for(timeout=10_000)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert "mail.example.com" in page.inner_text("#top-sources")
    assert "Spoofing" in page.inner_text("#top-sources")
    page.screenshot(path=str(SHOTS / "reports-domain-30.png"), full_page=True)

    page.evaluate("window.mailsecMarker = 'same-page'")
    page.click("#report-body a[data-days='90']")
    expect(page.locator("#report-body")).to_have_attribute("data-days", "90")
    page.locator("#report-chart canvas").wait_for(timeout=10_000)
    assert page.locator("#report-chart canvas").count() >= 1
    assert "days=90" in page.url
    assert page.evaluate("window.mailsecMarker") == "same-page", "the range switch reloaded"
    page.click("#report-body a[data-days='7']")
    expect(page.locator("#report-body")).to_have_attribute("data-days", "7")
    page.locator("#report-chart canvas").wait_for(timeout=10_000)
    page.screenshot(path=str(SHOTS / "reports-domain-7.png"), full_page=True)

    record = page.inner_text("#advisor-record")
    assert record == "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"
    page.click("button[data-copy='#advisor-record']")
    expect(page.locator("button[data-copy='#advisor-record']")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == record

    assert problems == [], problems
    assert _csp_violations(page) == []


def test_drill_down_raw_message_and_quarantine(browser_page, live_server, owner, report_data):
    from playwright.sync_api import expect

    page, problems = browser_page
    domain, report = report_data["domain"], report_data["report"]
    _login(page, live_server, owner, f"/reports/domains/{domain.pk}/")
    page.click(f"#recent-reports a[href='/reports/{report.pk}/']")
    page.wait_for_url(f"{live_server.url}/reports/{report.pk}/")
    rows = page.locator("#report-records tbody tr")
    expect(rows).to_have_count(5)
    assert "Forwarder" in page.inner_text("#report-records")
    page.screenshot(path=str(SHOTS / "reports-detail.png"), full_page=True)
    with page.expect_download() as download_info:
        page.click("#raw-download")
    download = download_info.value
    assert download.suggested_filename == "google.xml.txt"
    assert Path(download.path()).read_bytes() == b"<feedback>report</feedback>"

    page.goto(f"{live_server.url}/reports/quarantine/")
    quarantined = report_data["quarantined"]
    row = page.locator(f"#raw-message-{quarantined.pk}")
    expect(row).to_contain_text("No DMARC aggregate or TLS report was found")
    page.screenshot(path=str(SHOTS / "reports-quarantine.png"), full_page=True)
    row.locator("button:has-text('Re-process')").click()
    expect(page.locator("#quarantine-table")).to_contain_text("queued to be parsed again")
    # Put back to be parsed (a worker running beside the test may already have parsed it again
    # and quarantined it anew: the audit record is what stays).
    assert AuditLog.objects.filter(
        action="report.raw_message.reprocess", object_id=str(quarantined.pk)
    ).exists()

    page.goto(f"{live_server.url}/domains/{domain.pk}/")
    expect(page.locator("#report-card")).to_contain_text("DMARC reports (30 days)")
    page.screenshot(path=str(SHOTS / "domain-detail-card.png"), full_page=True)
    assert problems == [], problems
    assert _csp_violations(page) == []
