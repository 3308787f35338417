"""Alerts: one organisation's channels (add, test, last delivery and error, disabled and
re-enable), its rules, and the subjects alerts follow with acknowledge and snooze.

Each panel is a fragment its forms swap in place (htmx). Reads go through alerts' selectors,
writes through its services, which check the role and audit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alerts import selectors as alert_selectors
from alerts import services as alert_services
from alerts.models import Channel, ChannelKind, DigestSettings, MinStatus
from alerts.services import EVENT_KINDS
from dashboard.forms import IdPrefixForm
from dashboard.http import HtmxRequest, error_text, organisation_or_404
from mailsec.models import Organisation
from mailsec.selectors import can_write, organisations_visible

CHANNELS_CHANGED = "alert-channels-changed"
SNOOZE_CHOICES = [("60", "1 hour"), ("240", "4 hours"), ("1440", "1 day"), ("10080", "1 week")]


class ChannelForm(IdPrefixForm):
    id_prefix = "channel-"

    kind = forms.ChoiceField(
        choices=ChannelKind.choices, widget=forms.Select(attrs={"aria-label": "Kind"})
    )
    name = forms.CharField(
        max_length=100, widget=forms.TextInput(attrs={"placeholder": "name, e.g. on-call"})
    )
    target = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "email address or https:// URL"}),
    )


class RuleForm(IdPrefixForm):
    id_prefix = "rule-"

    channels = forms.MultipleChoiceField(choices=[], widget=forms.CheckboxSelectMultiple)
    min_status = forms.ChoiceField(
        choices=MinStatus.choices, widget=forms.Select(attrs={"aria-label": "Minimum status"})
    )
    events = forms.MultipleChoiceField(
        choices=[(e, e.replace("_", " ")) for e in EVENT_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    domains = forms.CharField(
        max_length=5000,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "domains, comma separated (empty: all)"}),
    )

    def __init__(self, organisation: Organisation, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        channels = Channel.objects.filter(organisation=organisation)
        self.fields["channels"].choices = [(str(c.pk), c.name) for c in channels]  # type: ignore[attr-defined]


def channels_context(
    request: HtmxRequest, organisation: Organisation, **extra: Any
) -> dict[str, Any]:
    return {
        "organisation": organisation,
        "channels": alert_selectors.channels_visible(request.user).filter(
            organisation=organisation
        ),
        "can_write": can_write(request.user, organisation),
        "channel_form": extra.pop("channel_form", None) or ChannelForm(),
        **extra,
    }


def rules_context(request: HtmxRequest, organisation: Organisation, **extra: Any) -> dict[str, Any]:
    return {
        "organisation": organisation,
        "rules": alert_selectors.rules_visible(request.user).filter(organisation=organisation),
        "can_write": can_write(request.user, organisation),
        "rule_form": extra.pop("rule_form", None) or RuleForm(organisation),
        **extra,
    }


def states_context(
    request: HtmxRequest, organisation: Organisation, **extra: Any
) -> dict[str, Any]:
    states = alert_selectors.states_visible(request.user).filter(organisation=organisation)
    return {
        "organisation": organisation,
        "problems": states.exclude(status="ok").order_by("-status", "key"),
        "followed": states.count(),
        "can_write": can_write(request.user, organisation),
        "snooze_choices": SNOOZE_CHOICES,
        "confirm_runs": settings.MAILSEC_ALERT_CONFIRM_RUNS,
        "now": timezone.now(),
        **extra,
    }


@require_GET
def alerts_page(request: HtmxRequest) -> HttpResponse:
    organisations = list(organisations_visible(request.user).order_by("name"))
    slug = request.GET.get("org", "")
    organisation = next((o for o in organisations if o.slug == slug), None)
    if slug and organisation is None:
        raise Http404("No such organisation.")
    if organisation is None and organisations:
        organisation = organisations[0]
    context: dict[str, Any] = {"organisations": organisations, "organisation": organisation}
    if organisation is not None:
        context.update(channels_context(request, organisation))
        context.update(rules_context(request, organisation))
        context.update(states_context(request, organisation))
        context.update(digest_context(organisation, request))
    return render(request, "dashboard/alerts.html", context)


def _channels_panel(request: HtmxRequest, organisation: Organisation, **extra: Any) -> HttpResponse:
    return render(
        request,
        "dashboard/partials/alerts/channels.html",
        channels_context(request, organisation, **extra),
    )


@require_POST
def alert_channel_add(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    form = ChannelForm(request.POST)
    if not form.is_valid():
        return _channels_panel(request, organisation, channel_form=form)
    try:
        channel, secret = alert_services.channel_create(
            organisation=organisation, kind=form.cleaned_data["kind"],
            name=form.cleaned_data["name"], target=form.cleaned_data["target"],
            actor=request.user,
        )  # fmt: skip
    except (ValidationError, PermissionDenied) as exc:
        return _channels_panel(request, organisation, channel_form=form, error=error_text(exc))
    response = _channels_panel(request, organisation, created=channel, secret=secret)
    response["HX-Trigger"] = CHANNELS_CHANGED  # the rule form lists the channels
    return response


def _channel(request: HtmxRequest, pk: int) -> Any:
    return get_object_or_404(alert_selectors.channels_visible(request.user), pk=pk)


@require_POST
def alert_channel_test(request: HtmxRequest, pk: int) -> HttpResponse:
    channel = _channel(request, pk)
    try:
        alert_services.channel_test(channel=channel, actor=request.user)
    except (ValidationError, PermissionDenied) as exc:
        return _channels_panel(request, channel.organisation, error=error_text(exc))
    return _channels_panel(
        request, channel.organisation, notice=f"A test message to {channel.name} is on its way."
    )


@require_POST
def alert_channel_enable(request: HtmxRequest, pk: int) -> HttpResponse:
    channel = _channel(request, pk)
    try:
        alert_services.channel_enable(channel=channel, actor=request.user)
    except PermissionDenied as exc:
        return _channels_panel(request, channel.organisation, error=error_text(exc))
    return _channels_panel(request, channel.organisation)


@require_POST
def alert_channel_remove(request: HtmxRequest, pk: int) -> HttpResponse:
    channel = _channel(request, pk)
    organisation = channel.organisation
    try:
        alert_services.channel_delete(channel=channel, actor=request.user)
    except PermissionDenied as exc:
        return _channels_panel(request, organisation, error=error_text(exc))
    response = _channels_panel(request, organisation)
    response["HX-Trigger"] = CHANNELS_CHANGED
    return response


def _rules_panel(request: HtmxRequest, organisation: Organisation, **extra: Any) -> HttpResponse:
    return render(
        request,
        "dashboard/partials/alerts/rules.html",
        rules_context(request, organisation, **extra),
    )


def digest_context(
    organisation: Organisation, request: HtmxRequest, **extra: Any
) -> dict[str, Any]:
    row = DigestSettings.objects.filter(organisation=organisation).first()
    return {
        "organisation": organisation,
        "digest": row.frequency if row else "daily",
        "digest_sent_at": row.last_sent_at if row else None,
        "digest_choices": [("off", "Off"), ("daily", "Daily"), ("weekly", "Weekly")],
        "can_write": can_write(request.user, organisation),
        **extra,
    }


@require_POST
def alert_digest_set(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    error = ""
    try:
        alert_services.digest_set(
            organisation=organisation, frequency=request.POST.get("frequency", ""),
            actor=request.user,
        )  # fmt: skip
    except (ValidationError, PermissionDenied) as exc:
        error = error_text(exc)
    return render(
        request,
        "dashboard/partials/alerts/digest.html",
        digest_context(organisation, request, error=error),
    )


@require_GET
def alert_rules_panel(request: HtmxRequest, slug: str) -> HttpResponse:
    return _rules_panel(request, organisation_or_404(request, slug))


@require_POST
def alert_rule_add(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    form = RuleForm(organisation, request.POST)
    if not form.is_valid():
        return _rules_panel(request, organisation, rule_form=form)
    domains = [d for d in form.cleaned_data["domains"].replace(",", " ").split() if d]
    try:
        alert_services.rule_create(
            organisation=organisation,
            channels=[int(c) for c in form.cleaned_data["channels"]],
            min_status=form.cleaned_data["min_status"], events=form.cleaned_data["events"],
            domains=domains, actor=request.user,
        )  # fmt: skip
    except (ValidationError, PermissionDenied) as exc:
        return _rules_panel(request, organisation, rule_form=form, error=error_text(exc))
    return _rules_panel(request, organisation)


@require_POST
def alert_rule_remove(request: HtmxRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(alert_selectors.rules_visible(request.user), pk=pk)
    organisation = rule.organisation
    try:
        alert_services.rule_delete(rule=rule, actor=request.user)
    except PermissionDenied as exc:
        return _rules_panel(request, organisation, error=error_text(exc))
    return _rules_panel(request, organisation)


def _states_panel(request: HtmxRequest, organisation: Organisation, **extra: Any) -> HttpResponse:
    return render(
        request,
        "dashboard/partials/alerts/states.html",
        states_context(request, organisation, **extra),
    )


@require_POST
def alert_state_acknowledge(request: HtmxRequest, pk: int) -> HttpResponse:
    state = get_object_or_404(alert_selectors.states_visible(request.user), pk=pk)
    try:
        alert_services.state_acknowledge(state=state, actor=request.user)
    except (ValidationError, PermissionDenied) as exc:
        return _states_panel(request, state.organisation, error=error_text(exc))
    return _states_panel(request, state.organisation)


@require_POST
def alert_state_snooze(request: HtmxRequest, pk: int) -> HttpResponse:
    state = get_object_or_404(alert_selectors.states_visible(request.user), pk=pk)
    minutes = request.POST.get("minutes", "")
    if minutes not in {value for value, _label in SNOOZE_CHOICES}:
        return _states_panel(request, state.organisation, error="Choose how long to snooze.")
    until = timezone.now() + timedelta(minutes=int(minutes))
    try:
        alert_services.state_snooze(state=state, until=until, actor=request.user)
    except (ValidationError, PermissionDenied) as exc:
        return _states_panel(request, state.organisation, error=error_text(exc))
    return _states_panel(request, state.organisation)
