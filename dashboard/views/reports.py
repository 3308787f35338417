"""DMARC and TLS reports: per-domain dashboards, a report's records, raw messages, the quarantine.

Each page reads the reports selectors (rollups for the per-domain pages); the range switch and
the pagers fetch the same URL's fragment through htmx.
"""

from __future__ import annotations

import json
import re
from calendar import timegm
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from dashboard.http import HtmxRequest
from dns_records import selectors as domain_selectors
from dns_records.models import Domain
from mailsec.selectors import can_write, organisations_writable
from reports import selectors
from reports import services as report_services
from reports.classify import classify, record_counts
from reports.geo import attribution as ip_database_attribution
from reports.models import RawMessage
from reports.parsed import REJECTION_REASONS

DEFAULT_DAYS = 30
RECORDS_PAGE_SIZE = 50
QUARANTINE_PAGE_SIZE = 50
DOMAINS_PAGE_SIZE = 25
RECENT_REPORTS = 20


def _days(request: HtmxRequest) -> int:
    value = request.GET.get("days", "")
    return int(value) if value in {str(d) for d in selectors.RANGES} else DEFAULT_DAYS


def _domain(request: HtmxRequest, pk: int) -> Domain:
    domain = domain_selectors.domain_visible(request.user, pk)
    if domain is None:
        raise Http404("No such domain.")
    return domain


def _percent(part: float, whole: float) -> float:
    return 100 * part / whole if whole else 0.0


@require_GET
def report_home(request: HtmxRequest) -> HttpResponse:
    """The user's domains with their last 30 days of DMARC results, each linking to its page."""
    page = Paginator(domain_selectors.domains_visible(request.user), DOMAINS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    start = selectors.range_start(DEFAULT_DAYS)
    rows = [
        (domain, selectors.report_totals(domain.organisation, domain.name, start=start))
        for domain in page.object_list
    ]
    context = {
        "page": page,
        "rows": rows,
        "quarantined": selectors.quarantine_visible(request.user).count(),
    }
    if request.htmx and request.htmx.target == "report-domains":
        return render(request, "dashboard/partials/reports/domain_table.html", context)
    return render(request, "dashboard/reports.html", context)


def chart_data(summary: selectors.DomainSummary) -> dict[str, Any]:
    """What static/js/report-charts.js draws: days (Unix seconds) and messages per result."""
    return {
        "x": [timegm(point.day.timetuple()) for point in summary.by_day],
        "series": [
            {
                "label": "DMARC pass",
                "kind": "pass",
                "values": [p.dmarc_pass for p in summary.by_day],
            },
            {
                "label": "DMARC fail",
                "kind": "fail",
                "values": [p.dmarc_fail for p in summary.by_day],
            },
        ],
    }


def _dashboard_context(request: HtmxRequest, domain: Domain, days: int) -> dict[str, Any]:
    summary = selectors.domain_summary(domain.organisation, domain.name, days=days)
    totals = summary.totals
    advice = summary.advice
    return {
        "domain": domain,
        "days": days,
        "ranges": selectors.RANGES,
        "summary": summary,
        "totals": totals,
        "advice": advice,
        # In an attribute, not a json_script block: htmx drops <script> elements from swapped
        # content (allowScriptTags is off), so the range switch would lose a script's data.
        "chart_json": json.dumps(chart_data(summary), separators=(",", ":")),
        "shares": {
            "dmarc": _percent(totals.dmarc_pass, totals.messages),
            "spf": _percent(totals.spf_aligned_pass, totals.messages),
            "dkim": _percent(totals.dkim_aligned_pass, totals.messages),
            "quarantine": 100 * advice.fail_share_quarantine,
            "reject": 100 * advice.fail_share_reject,
            "legitimate_failing": 100 * advice.failing_share,
        },
        "recent_reports": selectors.recent_reports(
            domain.organisation, domain.name, start=summary.start, limit=RECENT_REPORTS
        ),
        "attribution": ip_database_attribution(),
    }


@require_GET
def report_dashboard(request: HtmxRequest, pk: int) -> HttpResponse:
    """One domain's reports over 7, 30 or 90 days; the range switch swaps the body in place."""
    domain = _domain(request, pk)
    context = _dashboard_context(request, domain, _days(request))
    if request.htmx and request.htmx.target == "report-body":
        return render(request, "dashboard/partials/reports/body.html", context)
    return render(request, "dashboard/reports_domain.html", context)


@require_GET
def report_domain_card(request: HtmxRequest, pk: int) -> HttpResponse:
    """The small "DMARC reports (30 days)" card the domain page loads."""
    domain = _domain(request, pk)
    start = selectors.range_start(DEFAULT_DAYS)
    totals = selectors.report_totals(domain.organisation, domain.name, start=start)
    context = {
        "domain": domain,
        "totals": totals,
        "pass_percent": _percent(totals.dmarc_pass, totals.messages),
    }
    return render(request, "dashboard/partials/reports/domain_card.html", context)


@require_GET
def report_detail(request: HtmxRequest, pk: int) -> HttpResponse:
    """A report, its published policy and its records, a page at a time."""
    report = selectors.report_visible(request.user, pk)
    if report is None:
        raise Http404("No such report.")
    page = Paginator(selectors.report_records(report), RECORDS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = []
    for record in page.object_list:
        counts = record_counts(
            count=record.count,
            dkim_aligned=record.dkim_aligned,
            spf_aligned=record.spf_aligned,
            dkim_results=[str(r.get("result", "")) for r in _dicts(record.dkim_results)],
            spf_results=[str(r.get("result", "")) for r in _dicts(record.spf_results)],
            override_types=[str(r.get("type", "")) for r in _dicts(record.reasons)],
        )
        rows.append((record, classify(counts)))
    domain = report.domain
    context = {
        "report": report,
        "page": page,
        "rows": rows,
        "domain": domain
        if domain is not None and domain.organisation_id == report.organisation_id
        else None,
    }
    if request.htmx and request.htmx.target == "report-records":
        return render(request, "dashboard/partials/reports/records.html", context)
    return render(request, "dashboard/reports_detail.html", context)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _download_name(message: RawMessage) -> str:
    base = _UNSAFE_FILENAME.sub("_", message.filename).strip("._")[:100]
    return f"{base or f'message-{message.pk}'}.txt"


@require_GET
def raw_message_download(request: HtmxRequest, pk: int) -> HttpResponse:
    """The message exactly as received, as a plain-text attachment: never rendered as a page."""
    message = selectors.raw_message_visible(request.user, pk)
    if message is None:
        raise Http404("No such message.")
    response = HttpResponse(bytes(message.content), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_download_name(message)}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _quarantine_context(request: HtmxRequest, **extra: Any) -> dict[str, Any]:
    page = Paginator(selectors.quarantine_visible(request.user), QUARANTINE_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    writable = {org.pk for org in organisations_writable(request.user)}
    staff = request.user.is_superuser
    rows = [
        (
            message,
            REJECTION_REASONS.get(message.reason, message.reason or "Unknown reason"),
            (message.organisation_id in writable) if message.organisation_id else staff,
        )
        for message in page.object_list
    ]
    return {"page": page, "rows": rows, **extra}


@require_GET
def quarantine_list(request: HtmxRequest) -> HttpResponse:
    """Messages that held no storable report, with why; admins can have one parsed again."""
    context = _quarantine_context(request)
    if request.htmx and request.htmx.target == "quarantine-table":
        return render(request, "dashboard/partials/reports/quarantine_table.html", context)
    return render(request, "dashboard/reports_quarantine.html", context)


@require_POST
def raw_message_reprocess(request: HtmxRequest, pk: int) -> HttpResponse:
    """Queue a quarantined message's parse again (after a parser fix); admins only."""
    message = selectors.raw_message_visible(request.user, pk)
    if message is None:
        raise Http404("No such message.")
    if message.organisation is not None and not can_write(request.user, message.organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")
    try:
        report_services.raw_message_reprocess(raw_message_id=message.pk, actor=request.user)
    except ValidationError as exc:
        notice = " ".join(exc.messages)
    else:
        notice = f"Message {message.pk} is queued to be parsed again."
    context = _quarantine_context(request, notice=notice)
    return render(request, "dashboard/partials/reports/quarantine_table.html", context)
