"""Organisations: the page listing the user's organisations and their members; owners add,
change and remove members. Another organisation is a 404; a non-owner's change is a 403."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from dashboard.forms import MemberAddForm
from dashboard.http import HtmxRequest
from mailsec.models import Role
from mailsec.selectors import membership_visible, memberships_with_members, organisation_visible
from mailsec.services.members import member_add as services_member_add
from mailsec.services.members import member_remove as services_member_remove


def _organisations_context(
    request: HtmxRequest,
    *,
    slug: str = "",
    form: MemberAddForm | None = None,
    errors: Sequence[str] = (),
    new_user: User | None = None,
    new_password: str | None = None,
) -> dict[str, object]:
    """One entry per organisation of the user, each with its add-member form. The organisation
    whose change just failed (`slug`) keeps the add form as typed, with its errors, or shows why
    a removal failed (`errors`)."""
    organisations = []
    for own in memberships_with_members(request.user):
        failed = own.organisation.slug == slug
        add_form = (
            form if failed and form is not None else MemberAddForm(slug=own.organisation.slug)
        )
        organisations.append(
            {
                "membership": own,
                "organisation": own.organisation,
                "members": own.organisation.memberships.all(),
                "form": add_form,
                "errors": errors if failed else (),
            }
        )
    return {"organisations": organisations, "new_user": new_user, "new_password": new_password}


@require_GET
def organisation_list(request: HtmxRequest) -> HttpResponse:
    return render(request, "dashboard/organisations.html", _organisations_context(request))


def _panel(request: HtmxRequest, context: dict[str, object]) -> HttpResponse:
    """The organisations fragment an owner's change swaps in."""
    return render(request, "dashboard/partials/organisations.html", context)


@require_POST
def member_add(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_visible(request.user, slug)
    if organisation is None:
        raise Http404
    form = MemberAddForm(request.POST, slug=slug)
    if form.is_valid():
        try:
            membership, password = services_member_add(
                organisation=organisation,
                username=form.cleaned_data["username"],
                role=Role(form.cleaned_data["role"]),
                actor=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            new_user = membership.user if password else None
            return _panel(
                request,
                _organisations_context(request, new_user=new_user, new_password=password),
            )
    return _panel(request, _organisations_context(request, slug=slug, form=form))


@require_POST
def member_remove(request: HtmxRequest, pk: int) -> HttpResponse:
    membership = membership_visible(request.user, pk)
    if membership is None:
        raise Http404
    try:
        services_member_remove(membership=membership, actor=request.user)
    except ValidationError as exc:
        slug = membership.organisation.slug
        return _panel(request, _organisations_context(request, slug=slug, errors=exc.messages))
    return _panel(request, _organisations_context(request))
