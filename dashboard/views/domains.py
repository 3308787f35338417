"""Domains: the list with search, status filter and add form, a row, the domain page and its checks."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from dashboard.forms import DomainAddForm
from dashboard.http import HtmxRequest
from dashboard.views.blocklists import (
    domains_with_listings,
    mark_listed_domains,
    status_counts_with_listings,
)
from dashboard.views.dkim import dkim_context
from dns_records import selectors as domain_selectors
from dns_records import services as domain_services
from dns_records.models import Domain
from mailsec.models import Organisation
from mailsec.selectors import can_write, organisations_writable

PAGE_SIZE = 25
STATUSES = ["ok", "warning", "fail", "error", "unchecked"]


def _visible_domain(request: HtmxRequest, pk: int) -> Domain:
    """The domain if the user may see it; another organisation's domain is a plain 404."""
    domain = domain_selectors.domain_visible(request.user, pk)
    if domain is None:
        raise Http404("No such domain.")
    return domain


def _domain_table_context(request: HtmxRequest, writable: list[Organisation]) -> dict[str, object]:
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    # A listed domain or MX address counts, filters and shows as fail (dashboard/views/blocklists.py).
    queryset = domains_with_listings(request.user, search=search, status=status)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    mark_listed_domains(page.object_list)
    query = urlencode({k: v for k, v in (("q", search), ("status", status)) if v})
    return {
        "page": page,
        "search": search,
        "status": status,
        "statuses": STATUSES,
        "status_counts": status_counts_with_listings(request.user),
        "query": query,
        "writable_organisations": writable,
        "writable_ids": {org.pk for org in writable},
        "add_form": DomainAddForm(organisations=writable),
    }


@require_GET
def domain_list(request: HtmxRequest) -> HttpResponse:
    context = _domain_table_context(request, list(organisations_writable(request.user)))
    if request.htmx and request.htmx.target == "domain-table":
        context["fragment"] = True
        return render(request, "dashboard/partials/domain_table.html", context)
    return render(request, "dashboard/domain_list.html", context)


@require_POST
def domain_add(request: HtmxRequest) -> HttpResponse:
    writable = list(organisations_writable(request.user))
    form = DomainAddForm(request.POST, organisations=writable)
    if form.is_valid():
        try:
            domain_services.domain_create(
                organisation=form.cleaned_data["organisation"],
                name=form.cleaned_data["name"],
                actor=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        except PermissionDenied as exc:  # the role changed since the form was shown
            form.add_error(None, str(exc))
    if form.errors:
        response = render(
            request,
            "dashboard/partials/domain_add_form.html",
            {"add_form": form, "writable_organisations": writable},
        )
        return reswap(retarget(response, "#domain-add-form"), "outerHTML")
    context = _domain_table_context(request, writable)
    context["reset_form"] = True
    context["fragment"] = True
    return render(request, "dashboard/partials/domain_table.html", context)


@require_GET
def domain_row(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    mark_listed_domains([domain])
    writable_ids = {org.pk for org in organisations_writable(request.user)}
    return render(
        request, "dashboard/partials/domain_row.html", {"d": domain, "writable_ids": writable_ids}
    )


@require_http_methods(["POST", "DELETE"])
def domain_delete(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    domain_services.domain_delete(domain=domain, actor=request.user)
    if request.htmx:
        return HttpResponse("")
    return HttpResponseClientRedirect("/domains/")


def _checks_context(request: HtmxRequest, domain: Domain) -> dict[str, object]:
    return {
        "domain": domain,
        "results": domain_selectors.current_checks(domain),
        "counts": domain_selectors.status_counts(domain),
        "pending": domain_selectors.check_pending(domain),
        "can_write": can_write(request.user, domain.organisation),
    }


@require_GET
def domain_detail(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    context = {**dkim_context(request, domain), **_checks_context(request, domain)}
    context["events"] = domain_selectors.check_events(domain)
    return render(request, "dashboard/domain_detail.html", context)


@require_GET
def domain_checks(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    return render(
        request, "dashboard/partials/check_results.html", _checks_context(request, domain)
    )


@require_POST
def domain_check(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    try:
        domain_services.domain_check_request(domain=domain, actor=request.user)
    except domain_services.CheckRateLimited as exc:
        # Answered 200 so htmx swaps it in (it shows a 4xx only as a generic toast): the
        # results as they are, with why no check was queued under the section's heading.
        context = {**_checks_context(request, domain), "check_error": str(exc)}
        return render(request, "dashboard/partials/check_results.html", context)
    return render(
        request, "dashboard/partials/check_results.html", _checks_context(request, domain)
    )
