"""The request type the dashboard's views receive."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxRequest(HttpRequest):
    """A request after django-htmx's middleware has annotated it.

    `user` is a signed-in account: the login-required middleware turns everyone else away before
    any dashboard view runs (the error handlers, which opt out, take a plain HttpRequest).
    """

    htmx: HtmxDetails
    user: User
