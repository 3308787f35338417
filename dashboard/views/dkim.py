"""A domain's DKIM panel: its keys (generate, rotate, retire), the selectors of other senders it
watches, automatic rotation, and the RFC 2136 server mailsec may publish through."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from dashboard.forms import DkimKeyForm, DkimRotationForm, DkimSelectorForm, DnsUpdateForm
from dashboard.http import HtmxRequest, error_text
from dns_records import dkim_keys
from dns_records import selectors as domain_selectors
from dns_records import services as domain_services
from dns_records.models import DkimKey, DkimKeyState, DkimSelector, Domain
from mailsec.selectors import can_write
from reports import selectors as report_selectors
from reports.selectors import SelectorRow

# While a key is being generated or waits for its record, the panel refreshes itself.
WAITING = {DkimKeyState.GENERATING, DkimKeyState.PENDING, DkimKeyState.PUBLISHED}


def _domain(request: HtmxRequest, pk: int) -> Domain:
    domain = domain_selectors.domain_visible(request.user, pk)
    if domain is None:
        raise Http404("No such domain.")
    return domain


def dkim_context(request: HtmxRequest, domain: Domain, **extra: object) -> dict[str, object]:
    """What the DKIM panel shows; the domain page renders it in place too."""
    keys = list(domain_selectors.dkim_keys_of(domain))
    watched = list(domain_selectors.dkim_selectors_of(domain))
    return {
        "domain": domain,
        "keys": keys,
        "watched": watched,
        "seen_in_reports": _selectors_seen(domain, keys, watched),
        "dns_update": domain_selectors.dns_update_of(domain),
        "can_write": can_write(request.user, domain.organisation),
        "waiting": any(key.state in WAITING for key in keys),
        "key_form": extra.pop("key_form", None) or DkimKeyForm(),
        "selector_form": extra.pop("selector_form", None) or DkimSelectorForm(),
        "rotation_form": extra.pop("rotation_form", None)
        or DkimRotationForm(initial={"rotation_days": domain.dkim_rotation_days}),
        "dns_update_form": extra.pop("dns_update_form", None) or DnsUpdateForm(),
        **extra,
    }


def _selectors_seen(
    domain: Domain, keys: list[DkimKey], watched: list[DkimSelector]
) -> list[SelectorRow]:
    """Selectors that signed the domain's own mail and passed in the last 30 days' DMARC
    reports, which mailsec neither holds a key for nor watches: another sender's, to watch."""
    known = {key.selector for key in keys} | {w.selector for w in watched}
    seen = report_selectors.dkim_selectors_seen(
        domain.organisation, domain.name, start=report_selectors.range_start(30)
    )
    return [
        row
        for row in seen
        if row.dkim_domain == domain.name and row.passed and row.selector not in known
    ][:10]


def _panel(request: HtmxRequest, domain: Domain, **extra: object) -> HttpResponse:
    context = dkim_context(request, domain, **extra)
    return render(request, "dashboard/partials/dkim_panel.html", context)


@require_GET
def dkim_panel(request: HtmxRequest, pk: int) -> HttpResponse:
    return _panel(request, _domain(request, pk))


@require_POST
def dkim_key_add(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    form = DkimKeyForm(request.POST)
    if not form.is_valid():
        return _panel(request, domain, key_form=form)
    try:
        dkim_keys.dkim_key_create(
            domain=domain,
            algorithm=form.cleaned_data["algorithm"],
            selector=form.cleaned_data["selector"],
            actor=request.user,
        )
    except (ValidationError, PermissionDenied) as exc:
        return _panel(request, domain, key_form=form, error=error_text(exc))
    return _panel(request, domain)


def _key_action(request: HtmxRequest, pk: int, action: str) -> HttpResponse:
    key = domain_selectors.dkim_key_visible(request.user, pk)
    if key is None:
        raise Http404("No such key.")
    try:
        if action == "rotate":
            dkim_keys.dkim_key_rotate(key=key, actor=request.user)
        else:
            dkim_keys.dkim_key_retire(key=key, actor=request.user)
    except (ValidationError, PermissionDenied) as exc:
        return _panel(request, key.domain, error=error_text(exc))
    return _panel(request, key.domain)


@require_POST
def dkim_key_rotate(request: HtmxRequest, pk: int) -> HttpResponse:
    return _key_action(request, pk, "rotate")


@require_POST
def dkim_key_retire(request: HtmxRequest, pk: int) -> HttpResponse:
    return _key_action(request, pk, "retire")


@require_POST
def dkim_selector_add(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    form = DkimSelectorForm(request.POST)
    if not form.is_valid():
        return _panel(request, domain, selector_form=form)
    try:
        dkim_keys.dkim_selector_add(
            domain=domain,
            selector=form.cleaned_data["selector"],
            note=form.cleaned_data["note"],
            actor=request.user,
        )
    except (ValidationError, PermissionDenied) as exc:
        return _panel(request, domain, selector_form=form, error=error_text(exc))
    return _panel(request, domain)


@require_POST
def dkim_selector_remove(request: HtmxRequest, pk: int) -> HttpResponse:
    watched = domain_selectors.dkim_selector_visible(request.user, pk)
    if watched is None:
        raise Http404("No such selector.")
    try:
        dkim_keys.dkim_selector_remove(watched=watched, actor=request.user)
    except PermissionDenied as exc:
        return _panel(request, watched.domain, error=str(exc))
    return _panel(request, watched.domain)


@require_POST
def dkim_rotation(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    form = DkimRotationForm(request.POST)
    if not form.is_valid():
        return _panel(request, domain, rotation_form=form)
    try:
        domain_services.domain_dkim_rotation_set(
            domain=domain, days=form.cleaned_data["rotation_days"], actor=request.user
        )
    except PermissionDenied as exc:
        return _panel(request, domain, rotation_form=form, error=str(exc))
    domain.refresh_from_db()
    return _panel(request, domain)


@require_POST
def dns_update_set(request: HtmxRequest, pk: int) -> HttpResponse:
    domain = _domain(request, pk)
    if request.POST.get("remove"):
        try:
            dkim_keys.dns_update_remove(domain=domain, actor=request.user)
        except PermissionDenied as exc:
            return _panel(request, domain, error=str(exc))
        return _panel(request, domain)
    form = DnsUpdateForm(request.POST)
    if not form.is_valid():
        return _panel(request, domain, dns_update_form=form)
    try:
        dkim_keys.dns_update_set(domain=domain, actor=request.user, **form.cleaned_data)
    except (ValidationError, PermissionDenied) as exc:
        return _panel(request, domain, dns_update_form=form, error=error_text(exc))
    return _panel(request, domain)
