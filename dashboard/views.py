"""The htmx UI. Each URL serves its whole page, or only its fragment for an htmx request."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget
from django_htmx.middleware import HtmxDetails

from dns_records import selectors as domain_selectors
from dns_records import services as domain_services
from dns_records.models import Domain
from mailsec.api.errors import api_not_found, api_server_error
from mailsec.models import ApiToken, Membership, Role, TokenScope
from mailsec.selectors import (
    audit_log_visible,
    can_write,
    organisations_visible,
    organisations_writable,
)
from mailsec.services.members import member_add as services_member_add
from mailsec.services.members import member_remove as services_member_remove
from mailsec.services.tokens import api_token_create, api_token_revoke

PAGE_SIZE = 25


class HtmxRequest(HttpRequest):
    """A request after django-htmx's middleware has annotated it."""

    htmx: HtmxDetails


def _visible_domain(request: HttpRequest, pk: int) -> Domain:
    """The domain if the user may see it; another organisation's domain is a plain 404."""
    return get_object_or_404(domain_selectors.domains_visible(request.user), pk=pk)


def _domain_table_context(request: HttpRequest) -> dict[str, object]:
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    queryset = domain_selectors.domains_visible(request.user, search=search, status=status)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    writable = list(organisations_writable(request.user))
    query = urlencode({k: v for k, v in (("q", search), ("status", status)) if v})
    return {
        "page": page,
        "search": search,
        "status": status,
        "statuses": ["ok", "warning", "fail", "error", "unchecked"],
        "status_counts": domain_selectors.worst_status_counts(request.user),
        "query": query,
        "writable_organisations": writable,
        "writable_ids": {org.pk for org in writable},
    }


@require_GET
def domain_list(request: HtmxRequest) -> HttpResponse:
    context = _domain_table_context(request)
    if request.htmx and request.htmx.target == "domain-table":
        context["fragment"] = True
        return render(request, "dashboard/partials/domain_table.html", context)
    return render(request, "dashboard/domain_list.html", context)


@require_POST
def domain_add(request: HttpRequest) -> HttpResponse:
    writable = list(organisations_writable(request.user))
    name = request.POST.get("name", "")
    org_id = request.POST.get("organisation") or (str(writable[0].pk) if writable else "")
    organisation = next((org for org in writable if str(org.pk) == org_id), None)
    errors: list[str] = []
    if organisation is None:
        errors.append("You cannot add domains to that organisation.")
    else:
        try:
            domain_services.domain_create(organisation=organisation, name=name, actor=request.user)
        except ValidationError as exc:
            errors.extend(msg for msgs in exc.message_dict.values() for msg in msgs)
        except PermissionDenied as exc:
            errors.append(str(exc))
    if errors:
        form = render(
            request,
            "dashboard/partials/domain_add_form.html",
            {"errors": errors, "name": name, "writable_organisations": writable},
        )
        return reswap(retarget(form, "#domain-add-form"), "outerHTML")
    context = _domain_table_context(request)
    context["reset_form"] = True
    context["fragment"] = True
    return render(request, "dashboard/partials/domain_table.html", context)


@require_GET
def domain_row(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
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


def _checks_context(request: HttpRequest, domain: Domain) -> dict[str, object]:
    return {
        "domain": domain,
        "results": domain_selectors.current_checks(domain),
        "counts": domain_selectors.status_counts(domain),
        "pending": domain_selectors.check_pending(domain),
        "can_write": can_write(request.user, domain.organisation),
    }


@require_GET
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    context = _checks_context(request, domain)
    context["events"] = domain_selectors.check_events(domain)
    return render(request, "dashboard/domain_detail.html", context)


@require_GET
def domain_checks(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    return render(
        request, "dashboard/partials/check_results.html", _checks_context(request, domain)
    )


@require_POST
def domain_check(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _visible_domain(request, pk)
    domain_services.domain_check_request(domain=domain, actor=request.user)
    return render(
        request, "dashboard/partials/check_results.html", _checks_context(request, domain)
    )


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    page = Paginator(audit_log_visible(request.user), 50).get_page(request.GET.get("page"))
    return render(request, "dashboard/audit_log.html", {"page": page})


EXPIRY_CHOICES = {"30": 30, "90": 90, "365": 365, "never": None}


@require_http_methods(["GET", "POST"])
def token_list(request: HtmxRequest) -> HttpResponse:
    new_key = None
    error = ""
    if request.method == "POST":
        scope = request.POST.get("scope", TokenScope.READ)
        expiry = request.POST.get("expires", "90")
        if scope not in TokenScope.values or expiry not in EXPIRY_CHOICES:
            error = "Choose a scope and an expiry."
        else:
            days = EXPIRY_CHOICES[expiry]
            _token, new_key = api_token_create(
                user=request.user,  # type: ignore[arg-type]
                scope=TokenScope(scope),
                actor=request.user,
                name=request.POST.get("name", "")[:100],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
    tokens = ApiToken.objects.filter(user=request.user)  # type: ignore[misc]
    context = {"tokens": tokens, "new_key": new_key, "error": error, "now": timezone.now()}
    template = "dashboard/partials/token_panel.html" if request.htmx else "dashboard/tokens.html"
    return TemplateResponse(request, template, context)


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    api_token_revoke(token=token, actor=request.user)
    tokens = ApiToken.objects.filter(user=request.user)  # type: ignore[misc]
    return TemplateResponse(
        request,
        "dashboard/partials/token_panel.html",
        {"tokens": tokens, "new_key": None, "error": "", "now": timezone.now()},
    )


def _organisations_context(request: HttpRequest, **extra: object) -> dict[str, object]:
    members = Membership.objects.select_related("user").order_by("user__username")
    memberships = (
        Membership.objects.filter(user=request.user)  # type: ignore[misc]
        .select_related("organisation")
        .prefetch_related(Prefetch("organisation__memberships", queryset=members))
        .order_by("organisation__name")
    )
    organisations = [
        {
            "membership": own,
            "organisation": own.organisation,
            "members": own.organisation.memberships.all(),
        }
        for own in memberships
    ]
    return {"organisations": organisations, "roles": Role.choices, **extra}


@require_GET
def organisation_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/organisations.html", _organisations_context(request))


def _member_panel(request: HttpRequest, **extra: object) -> HttpResponse:
    template = "dashboard/partials/organisations.html"
    return render(request, template, _organisations_context(request, **extra))


@require_POST
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = get_object_or_404(organisations_visible(request.user), slug=slug)
    role = request.POST.get("role", Role.VIEWER)
    if role not in Role.values:
        return _member_panel(request, error="Choose a role.", error_org=slug)
    try:
        membership, password = services_member_add(
            organisation=organisation,
            username=request.POST.get("username", ""),
            role=Role(role),
            actor=request.user,
        )
    except ValidationError as exc:
        return _member_panel(request, error=" ".join(exc.messages), error_org=slug)
    return _member_panel(
        request, new_user=membership.user if password else None, new_password=password
    )


@require_POST
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_object_or_404(
        Membership.objects.filter(organisation__in=organisations_visible(request.user)), pk=pk
    )
    slug = membership.organisation.slug
    try:
        services_member_remove(membership=membership, actor=request.user)
    except ValidationError as exc:
        return _member_panel(request, error=" ".join(exc.messages), error_org=slug)
    return _member_panel(request)


@login_not_required
def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        response: HttpResponse | JsonResponse = api_not_found(request, exception)
        return response
    return render(request, "404.html", status=404)


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        response: HttpResponse | JsonResponse = api_server_error(request)
        return response
    return render(request, "500.html", status=500)
