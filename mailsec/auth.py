"""Logging in and changing passwords: throttled guesses, and other sessions ended on a change.

Login failures are counted by django-axes per (username, client address) and per username
across addresses (AXES_LOCKOUT_PARAMETERS); LoginThrottleHandler gives the per-username count its
own, higher limit. Wrong old passwords on the password-change form are recorded as login
failures of the user, so they lock the change form and the account's logins alike.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials, get_lockout_parameters, get_lockout_response
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.models import Session
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone


class LoginThrottleHandler(AxesDatabaseHandler):  # type: ignore[misc]
    """django-axes' database handler with a limit per lockout parameter: the username alone is
    locked at MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT, every other combination at
    AXES_FAILURE_LIMIT.

    Axes compares one count with one limit, so the count returned is measured against
    AXES_FAILURE_LIMIT: at least that limit once any parameter has reached its own.
    """

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        pair_limit: int = settings.AXES_FAILURE_LIMIT
        parameters = get_lockout_parameters(request, credentials)
        attempts = self.get_user_attempts(request, credentials)
        pair_failures, reached = 0, False
        for parameter, queryset in zip(parameters, attempts, strict=True):
            count = queryset.aggregate(total=Sum("failures_since_start"))["total"] or 0
            if parameter == "username":
                reached = reached or count >= settings.MAILSEC_LOGIN_USERNAME_FAILURE_LIMIT
            else:
                pair_failures = max(pair_failures, count)
                reached = reached or count >= pair_limit
        return max(pair_failures, pair_limit) if reached else pair_failures


def sessions_end_others(user: AbstractBaseUser, *, keep: str | None) -> int:
    """Delete the user's sessions except the one keyed `keep`; returns how many ended.

    The database session backend stores the user id only inside the encoded data, so every
    unexpired session is decoded: fine for a dashboard's few hundred sessions.
    """
    ended = 0
    user_id = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).exclude(
        session_key=keep or ""
    ):
        if str(session.get_decoded().get("_auth_user_id", "")) == user_id:
            session.delete()
            ended += 1
    return ended


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, with wrong old passwords throttled like logins and every other
    session of the user ended on success (update_session_auth_hash keeps this one)."""

    def _credentials(self) -> dict[str, Any]:
        credentials: dict[str, Any] = get_credentials(self.request.user.get_username())
        return credentials

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        credentials = self._credentials()
        if not AxesProxyHandler.is_allowed(request, credentials):
            # Locked: the old password is not even checked, so right and wrong answer alike.
            response: HttpResponse = get_lockout_response(request, None, credentials)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: PasswordChangeForm) -> HttpResponse:
        if form.has_error("old_password", "password_incorrect"):
            # Recorded like a failed login; the axes middleware answers with the lockout page
            # when this failure reaches a limit.
            user_login_failed.send(
                sender=__name__, credentials=self._credentials(), request=self.request
            )
        return super().form_invalid(form)

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        response: HttpResponse = super().form_valid(form)
        sessions_end_others(form.user, keep=self.request.session.session_key)
        return response
