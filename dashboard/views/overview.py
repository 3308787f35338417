"""The overview, the landing page: each organisation's thirteen-control scorecard."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard import scorecard_rules as rules
from dashboard.http import HtmxRequest
from dashboard.overview import scorecards


@require_GET
def overview(request: HtmxRequest) -> HttpResponse:
    """All the user's organisations; `?org=slug` narrows to one (another's is a 404)."""
    slug = request.GET.get("org", "")
    cards = scorecards(request.user, slug=slug)
    if slug and not cards:
        raise Http404("No such organisation.")
    context = {
        "cards": cards,
        "statuses": rules.STATUSES,
        "labels": rules.STATUS_LABELS,
    }
    if request.htmx and request.htmx.target == "overview":
        return render(request, "dashboard/partials/overview/cards.html", context)
    return render(request, "dashboard/overview.html", context)
