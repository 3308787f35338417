"""API tokens: the user's own tokens, creating one (its key shown once) and revoking one."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.forms import TokenCreateForm
from dashboard.http import HtmxRequest
from mailsec.models import TokenScope
from mailsec.selectors import api_token_of, api_tokens_of
from mailsec.services.tokens import api_token_create, api_token_revoke


def _panel_context(
    request: HtmxRequest, form: TokenCreateForm | None = None, new_key: str | None = None
) -> dict[str, object]:
    return {
        "form": form if form is not None else TokenCreateForm(),
        "tokens": api_tokens_of(request.user),
        "new_key": new_key,
        "now": timezone.now(),
    }


@require_http_methods(["GET", "POST"])
def token_list(request: HtmxRequest) -> HttpResponse:
    form, new_key = None, None
    if request.method == "POST":
        form = TokenCreateForm(request.POST)
        if form.is_valid():
            _token, new_key = api_token_create(
                user=request.user,
                scope=TokenScope(form.cleaned_data["scope"]),
                actor=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(timezone.now()),
            )
            form = None  # a fresh form for the next token
    template = "dashboard/partials/token_panel.html" if request.htmx else "dashboard/tokens.html"
    return render(request, template, _panel_context(request, form, new_key))


@require_POST
def token_revoke(request: HtmxRequest, pk: int) -> HttpResponse:
    token = api_token_of(request.user, pk)
    if token is None:
        raise Http404
    api_token_revoke(token=token, actor=request.user)
    return render(request, "dashboard/partials/token_panel.html", _panel_context(request))
