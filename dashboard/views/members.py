"""Organisations: the page listing the user's organisations and their members, and the user's
pending invitations. Owners change members' roles, remove members and invite anyone by name;
another organisation is a 404, a non-owner's change a 403. The invitation link's page lets whoever
holds it accept, or create an account and accept."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.forms import InvitationSignUpForm, MemberAddForm
from dashboard.http import HtmxRequest
from mailsec.models import Role
from mailsec.selectors import (
    invitation_by_code,
    invitation_open_owned,
    invitation_pending_for,
    invitations_open_by_organisation,
    invitations_pending_for,
    membership_visible,
    memberships_with_members,
    organisation_visible,
)
from mailsec.services.members import (
    MemberInvite,
    invitation_accept,
    invitation_decline,
    invitation_withdraw,
)
from mailsec.services.members import invitation_sign_up as services_invitation_sign_up
from mailsec.services.members import member_invite as services_member_invite
from mailsec.services.members import member_remove as services_member_remove


def _organisations_context(
    request: HtmxRequest,
    *,
    slug: str = "",
    form: MemberAddForm | None = None,
    errors: Sequence[str] = (),
    done: MemberInvite | None = None,
) -> dict[str, object]:
    """One entry per organisation of the user, each with its add-member form, and the user's
    pending invitations. The organisation whose change just failed (`slug`) keeps the add form as
    typed, with its errors, or shows why a change failed (`errors`); `done` is an owner's change
    just made (an invitation's link is shown this once)."""
    organisations = []
    open_invitations = invitations_open_by_organisation(request.user)
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
                "open_invitations": open_invitations.get(own.organisation.pk, []),
                "errors": errors if failed else (),
            }
        )
    invitation_link = (
        request.build_absolute_uri(reverse("dashboard:invitation_link", args=[done.code]))
        if done is not None and done.code
        else None
    )
    return {
        "organisations": organisations,
        "invitations": invitations_pending_for(request.user),
        "done": done,
        "invitation_link": invitation_link,
    }


@require_GET
def organisation_list(request: HtmxRequest) -> HttpResponse:
    return render(request, "dashboard/organisations.html", _organisations_context(request))


def _panel(request: HtmxRequest, context: dict[str, object]) -> HttpResponse:
    """The organisations fragment a change swaps in."""
    return render(request, "dashboard/partials/organisations.html", context)


@require_POST
def member_add(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_visible(request.user, slug)
    if organisation is None:
        raise Http404
    form = MemberAddForm(request.POST, slug=slug)
    if form.is_valid():
        try:
            done = services_member_invite(
                organisation=organisation,
                username=form.cleaned_data["username"],
                role=Role(form.cleaned_data["role"]),
                actor=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return _panel(request, _organisations_context(request, done=done))
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


@require_POST
def invitation_answer(request: HtmxRequest, pk: int, answer: str) -> HttpResponse:
    """Accept or decline one of the user's own pending invitations."""
    invitation = invitation_pending_for(request.user, pk)
    if invitation is None:
        raise Http404
    try:
        if answer == "accept":
            invitation_accept(invitation=invitation, user=request.user)
        else:
            invitation_decline(invitation=invitation, user=request.user)
    except ValidationError as exc:
        slug = invitation.organisation.slug
        return _panel(request, _organisations_context(request, slug=slug, errors=exc.messages))
    return _panel(request, _organisations_context(request))


@require_POST
def invitation_withdraw_view(request: HtmxRequest, pk: int) -> HttpResponse:
    """An owner takes back an open invitation of their organisation."""
    invitation = invitation_open_owned(request.user, pk)
    if invitation is None:
        raise Http404
    invitation_withdraw(invitation=invitation, actor=request.user)
    return _panel(request, _organisations_context(request))


@login_not_required
@require_http_methods(["GET", "POST"])
def invitation_link(request: HttpRequest, code: str) -> HttpResponse:
    """The page an invitation's link opens: the same for every invitation, whether or not the
    owner named an existing account. Logged in, accept with this account; else create one."""
    invitation = invitation_by_code(code)
    if invitation is None:
        return render(request, "dashboard/invitation.html", {"invitation": None}, status=404)
    form = InvitationSignUpForm(initial={"username": invitation.username})
    errors: list[str] = []
    if request.method == "POST" and request.user.is_authenticated:
        try:
            invitation_accept(invitation=invitation, user=request.user, by_code=True)
        except (ValidationError, PermissionDenied) as exc:
            errors = list(getattr(exc, "messages", [str(exc)]))
        else:
            return redirect("dashboard:organisation_list")
    elif request.method == "POST":
        form = InvitationSignUpForm(request.POST)
        if form.is_valid():
            try:
                user = services_invitation_sign_up(
                    invitation=invitation,
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password1"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return redirect("dashboard:organisation_list")
    return render(
        request,
        "dashboard/invitation.html",
        {"invitation": invitation, "form": form, "errors": errors, "code": code},
    )
