"""Security policies: the list, and one form with every control's value grouped by the thirteen
controls, each with help text saying what it stops. Viewers see the form read-only.

Reads go through hosts' selectors, writes through its services (role check, validation, audit).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.forms import PolicyForm
from dashboard.http import HtmxRequest
from hosts import selectors, services
from hosts.models import Policy
from hosts.policy import PolicyValues
from mailsec.models import Organisation
from mailsec.selectors import can_write, organisations_visible, organisations_writable


def _policy(request: HtmxRequest, pk: int) -> Policy:
    policy = selectors.policy_visible(request.user, pk)
    if policy is None:
        raise Http404("No such policy.")
    return policy


def _apply_errors(form: PolicyForm, exc: ValidationError | PermissionDenied) -> None:
    if isinstance(exc, PermissionDenied):
        form.add_error(None, str(exc))
    elif hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@require_GET
def policy_list(request: HtmxRequest) -> HttpResponse:
    policies = selectors.policies_visible(request.user).prefetch_related("hosts")
    return render(
        request,
        "dashboard/policies.html",
        {
            "policies": policies,
            "can_add": organisations_writable(request.user).exists(),
            "has_organisation": organisations_visible(request.user).exists(),
        },
    )


def _form_page(
    request: HtmxRequest,
    form: PolicyForm,
    *,
    policy: Policy | None,
    organisation: Organisation | None,
    writable: bool,
    saved: bool = False,
    error: str = "",
) -> HttpResponse:
    if not writable:
        for field in form.fields.values():
            field.disabled = True
    context: dict[str, Any] = {
        "form": form,
        "policy": policy,
        "organisation": organisation,
        "can_write": writable,
        "saved": saved,
        "error": error,
        "organisations": list(organisations_writable(request.user).order_by("name")),
    }
    return render(request, "dashboard/policies_form.html", context)


@require_http_methods(["GET", "POST"])
def policy_add(request: HtmxRequest) -> HttpResponse:
    writable = list(organisations_writable(request.user).order_by("name"))
    if not writable:
        raise PermissionDenied("You cannot add policies to any organisation.")
    slug = request.POST.get("organisation") or request.GET.get("org", "")
    organisation = next((o for o in writable if o.slug == slug), writable[0])
    defaults = selectors.policy_values_json(PolicyValues())
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                policy = services.policy_create(
                    organisation=organisation,
                    name=form.cleaned_data["name"],
                    values=form.values(),
                    actor=request.user,
                )
            except (ValidationError, PermissionDenied) as exc:
                _apply_errors(form, exc)
            else:
                return redirect(reverse("dashboard:policy_edit", args=[policy.pk]))
    else:
        form = PolicyForm(initial_values=defaults)
    return _form_page(request, form, policy=None, organisation=organisation, writable=True)


@require_http_methods(["GET", "POST"])
def policy_edit(request: HtmxRequest, pk: int) -> HttpResponse:
    policy = _policy(request, pk)
    writable = can_write(request.user, policy.organisation)
    saved = False
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                policy = services.policy_update(
                    policy=policy,
                    name=form.cleaned_data["name"],
                    values=form.values(),
                    actor=request.user,
                )
            except (ValidationError, PermissionDenied) as exc:
                _apply_errors(form, exc)
            else:
                saved = True
        if saved:
            form = PolicyForm(
                initial={"name": policy.name},
                initial_values=selectors.policy_values_json(selectors.policy_values(policy)),
            )
    else:
        form = PolicyForm(
            initial={"name": policy.name},
            initial_values=selectors.policy_values_json(selectors.policy_values(policy)),
        )
    return _form_page(
        request, form, policy=policy, organisation=policy.organisation, writable=writable,
        saved=saved,
    )  # fmt: skip


@require_POST
def policy_delete(request: HtmxRequest, pk: int) -> HttpResponse:
    policy = _policy(request, pk)
    try:
        services.policy_delete(policy=policy, actor=request.user)
    except ValidationError as exc:
        form = PolicyForm(
            initial={"name": policy.name},
            initial_values=selectors.policy_values_json(selectors.policy_values(policy)),
        )
        return _form_page(
            request,
            form,
            policy=policy,
            organisation=policy.organisation,
            writable=can_write(request.user, policy.organisation),
            error=" ".join(exc.messages),
        )
    return redirect(reverse("dashboard:policy_list"))
