"""The audit log: changes in the user's organisations and the user's own, newest first."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.http import HtmxRequest
from mailsec.selectors import audit_log_visible

PAGE_SIZE = 50


@require_GET
def audit_log(request: HtmxRequest) -> HttpResponse:
    page = Paginator(audit_log_visible(request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "dashboard/audit_log.html", {"page": page})
