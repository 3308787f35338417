"""The request type the dashboard's views receive."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest
from django_htmx.middleware import HtmxDetails

from mailsec.models import Organisation
from mailsec.selectors import organisation_visible


class HtmxRequest(HttpRequest):
    """A request after django-htmx's middleware has annotated it.

    `user` is a signed-in account: the login-required middleware turns everyone else away before
    any dashboard view runs (the error handlers, which opt out, take a plain HttpRequest).
    """

    htmx: HtmxDetails
    user: User


def error_text(exc: ValidationError | PermissionDenied) -> str:
    """What a refused change tells the user, in one line."""
    if isinstance(exc, PermissionDenied):
        return str(exc)
    return " ".join(exc.messages)


def organisation_or_404(request: HtmxRequest, slug: str) -> Organisation:
    """The organisation named in the URL, if the user is a member; else 404."""
    organisation = organisation_visible(request.user, slug)
    if organisation is None:
        raise Http404("No such organisation.")
    return organisation
