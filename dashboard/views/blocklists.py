"""Blocklists: one organisation's targets by zones (listed, clean, error; stale marked), the
history of listings, "poll now", the local IP blacklist, the zones polled and the Spamhaus DQS
key; a domain page's own listings; and the listing mark on the domain list.

Each panel is a fragment of the page that its forms swap in place (htmx). Reads go through
blocklists' selectors, writes through its services, which check the role and audit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from blocklists import selectors as bl_selectors
from blocklists import services as bl_services
from blocklists.models import BlacklistEntry, BlocklistZone
from blocklists.zones import ZoneKind, zone_info
from dashboard.forms import IdPrefixForm
from dashboard.http import HtmxRequest, error_text, organisation_or_404
from dns_records import selectors as domain_selectors
from dns_records.models import Domain
from mailsec.models import Organisation
from mailsec.selectors import User, can_write, organisations_visible

EXPIRY_CHOICES = [
    ("never", "never expires"),
    ("1", "expires in a day"),
    ("7", "expires in a week"),
    ("30", "expires in 30 days"),
    ("90", "expires in 90 days"),
]


class BlacklistEntryForm(IdPrefixForm):
    """An address or network to refuse, why, and for how long."""

    id_prefix = "blacklist-"

    network = forms.CharField(
        max_length=100,
        error_messages={"required": "Enter an address or network, e.g. 192.0.2.0/24."},
        widget=forms.TextInput(attrs={"placeholder": "192.0.2.0/24 or 2001:db8::/48"}),
    )
    reason = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"placeholder": "why"})
    )
    expires = forms.ChoiceField(
        choices=EXPIRY_CHOICES,
        initial="never",
        error_messages={"invalid_choice": "Choose an expiry."},
        widget=forms.Select(attrs={"aria-label": "Expires"}),
    )

    def expires_at(self) -> Any:
        choice = self.cleaned_data["expires"]
        return None if choice == "never" else timezone.now() + timedelta(days=int(choice))


class BlocklistZoneForm(IdPrefixForm):
    """Another blocklist to poll: its zone and what it lists."""

    id_prefix = "zone-"

    name = forms.CharField(
        max_length=200,
        error_messages={"required": "Enter the list's zone, e.g. bl.example.org."},
        widget=forms.TextInput(attrs={"placeholder": "bl.example.org"}),
    )
    kind = forms.ChoiceField(
        choices=[
            (ZoneKind.IP.value, "lists IP addresses"),
            (ZoneKind.DOMAIN.value, "lists domains"),
        ],
        error_messages={"invalid_choice": "Choose what the list lists."},
        widget=forms.Select(attrs={"aria-label": "What it lists"}),
    )


class DqsKeyForm(IdPrefixForm):
    """The Spamhaus Data Query Service key; write-only, never shown again."""

    id_prefix = "dqs-"

    key = forms.CharField(
        label="Spamhaus DQS key",
        max_length=64,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": "new key"}),
    )


# --- helpers ---------------------------------------------------------------------------------


def matrix_context(
    request: HtmxRequest, organisation: Organisation, **extra: Any
) -> dict[str, Any]:
    row = bl_selectors.settings_row(organisation)
    return {
        "organisation": organisation,
        "matrices": bl_selectors.matrices(organisation),
        "events": bl_selectors.events_visible(request.user, organisation=organisation)[:50],
        "pending": bl_selectors.poll_pending(organisation) is not None,
        "last_polled_at": row.last_polled_at if row else None,
        "can_write": can_write(request.user, organisation),
        **extra,
    }


def entries_context(
    request: HtmxRequest, organisation: Organisation, **extra: Any
) -> dict[str, Any]:
    return {
        "organisation": organisation,
        "entries": bl_selectors.entries_of(organisation).select_related("created_by"),
        "cidr_map": bl_services.cidr_map_of(organisation),
        "can_write": can_write(request.user, organisation),
        "entry_form": extra.pop("entry_form", None) or BlacklistEntryForm(),
        **extra,
    }


def zones_context(request: HtmxRequest, organisation: Organisation, **extra: Any) -> dict[str, Any]:
    zones = [
        (zone, zone_info(zone.name, ZoneKind(zone.kind)))
        for zone in bl_selectors.zones_of(organisation)
    ]
    return {
        "organisation": organisation,
        "zones": zones,
        "dqs_configured": bl_selectors.dqs_key_configured(organisation),
        "can_write": can_write(request.user, organisation),
        "zone_form": extra.pop("zone_form", None) or BlocklistZoneForm(),
        "dqs_form": extra.pop("dqs_form", None) or DqsKeyForm(),
        "nameservers": [f"{s.address}:{s.port}" for s in settings.MAILSEC_DNS_NAMESERVERS],
        **extra,
    }


# --- the page and its panels ------------------------------------------------------------------


@require_GET
def blocklist_page(request: HtmxRequest) -> HttpResponse:
    organisations = list(organisations_visible(request.user).order_by("name"))
    slug = request.GET.get("org", "")
    organisation = next((o for o in organisations if o.slug == slug), None)
    if slug and organisation is None:
        raise Http404("No such organisation.")
    if organisation is None and organisations:
        organisation = organisations[0]
    context: dict[str, Any] = {"organisations": organisations, "organisation": organisation}
    if organisation is not None:
        bl_services.zones_ensure(organisation)
        context.update(matrix_context(request, organisation))
        context.update(entries_context(request, organisation))
        context.update(zones_context(request, organisation))
    return render(request, "dashboard/blocklists.html", context)


@require_GET
def blocklist_matrix(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    return render(
        request,
        "dashboard/partials/blocklists/matrix.html",
        matrix_context(request, organisation),
    )


@require_POST
def blocklist_poll(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    error = ""
    try:
        bl_services.poll_request(organisation=organisation, actor=request.user)
    except (PermissionDenied, bl_services.PollRateLimited) as exc:
        error = str(exc)
    context = matrix_context(request, organisation, poll_error=error)
    if not error:
        context["pending"] = True
    return render(request, "dashboard/partials/blocklists/matrix.html", context)


def _entries_panel(request: HtmxRequest, organisation: Organisation, **extra: Any) -> HttpResponse:
    return render(
        request,
        "dashboard/partials/blocklists/entries.html",
        entries_context(request, organisation, **extra),
    )


@require_POST
def blacklist_entry_add(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    form = BlacklistEntryForm(request.POST)
    if not form.is_valid():
        return _entries_panel(request, organisation, entry_form=form)
    try:
        bl_services.blacklist_entry_add(
            organisation=organisation,
            network=form.cleaned_data["network"],
            reason=form.cleaned_data["reason"],
            expires_at=form.expires_at(),
            actor=request.user,
        )
    except (ValidationError, PermissionDenied) as exc:
        return _entries_panel(request, organisation, entry_form=form, error=error_text(exc))
    return _entries_panel(request, organisation)


@require_POST
def blacklist_entry_remove(request: HtmxRequest, pk: int) -> HttpResponse:
    entry = (
        BlacklistEntry.objects.select_related("organisation")
        .filter(organisation__in=organisations_visible(request.user), pk=pk)
        .first()
    )
    if entry is None:
        raise Http404("No such entry.")
    organisation = entry.organisation
    try:
        bl_services.blacklist_entry_remove(entry=entry, actor=request.user)
    except PermissionDenied as exc:
        return _entries_panel(request, organisation, error=str(exc))
    return _entries_panel(request, organisation)


def _zones_panel(request: HtmxRequest, organisation: Organisation, **extra: Any) -> HttpResponse:
    return render(
        request,
        "dashboard/partials/blocklists/zones.html",
        zones_context(request, organisation, **extra),
    )


@require_POST
def blocklist_zone_add(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    form = BlocklistZoneForm(request.POST)
    if not form.is_valid():
        return _zones_panel(request, organisation, zone_form=form)
    try:
        bl_services.zone_add(
            organisation=organisation,
            name=form.cleaned_data["name"],
            kind=form.cleaned_data["kind"],
            actor=request.user,
        )
    except (ValidationError, PermissionDenied) as exc:
        return _zones_panel(request, organisation, zone_form=form, error=error_text(exc))
    return _zones_panel(request, organisation)


def _zone(request: HtmxRequest, pk: int) -> BlocklistZone:
    zone = bl_selectors.zone_visible(request.user, pk)
    if zone is None:
        raise Http404("No such blocklist.")
    return zone


@require_POST
def blocklist_zone_toggle(request: HtmxRequest, pk: int) -> HttpResponse:
    zone = _zone(request, pk)
    try:
        bl_services.zone_set_enabled(zone=zone, enabled=not zone.enabled, actor=request.user)
    except PermissionDenied as exc:
        return _zones_panel(request, zone.organisation, error=str(exc))
    return _zones_panel(request, zone.organisation)


@require_POST
def blocklist_zone_remove(request: HtmxRequest, pk: int) -> HttpResponse:
    zone = _zone(request, pk)
    organisation = zone.organisation
    try:
        bl_services.zone_remove(zone=zone, actor=request.user)
    except PermissionDenied as exc:
        return _zones_panel(request, organisation, error=str(exc))
    return _zones_panel(request, organisation)


@require_POST
def blocklist_dqs_key(request: HtmxRequest, slug: str) -> HttpResponse:
    organisation = organisation_or_404(request, slug)
    form = DqsKeyForm(request.POST)
    if not form.is_valid():
        return _zones_panel(request, organisation, dqs_form=form)
    key = "" if request.POST.get("remove") else form.cleaned_data["key"]
    if not key and not request.POST.get("remove"):
        form.add_error("key", "Enter the key, or remove the one stored.")
        return _zones_panel(request, organisation, dqs_form=form)
    try:
        bl_services.dqs_key_set(organisation=organisation, key=key, actor=request.user)
    except (ValidationError, PermissionDenied) as exc:
        return _zones_panel(request, organisation, dqs_form=DqsKeyForm(), error=error_text(exc))
    return _zones_panel(request, organisation, saved=True)


# --- the domain pages ------------------------------------------------------------------------


@require_GET
def domain_listings(request: HtmxRequest, pk: int) -> HttpResponse:
    """The domain page's section: the domain's own listings and its MX addresses'."""
    domain = domain_selectors.domain_visible(request.user, pk)
    if domain is None:
        raise Http404("No such domain.")
    listings = bl_selectors.listings_of_domain(domain)
    rows = [
        (
            listing,
            zone_info(listing.zone, ZoneKind(listing.target.kind)).delisting(listing.target.value),
        )
        for listing in listings
    ]
    return render(
        request,
        "dashboard/partials/blocklists/domain_listings.html",
        {
            "domain": domain,
            "rows": rows,
            "listed": [row for row in rows if row[0].status == "listed"],
            "errors": sum(1 for listing in listings if listing.status == "error" or listing.stale),
        },
    )


def domains_with_listings(user: User, *, search: str, status: str) -> QuerySet[Domain]:
    """The domain list's rows (`domain_selectors.domains_visible`) with its status filter
    counting a listing as `fail`: a listed domain is among the failing ones, and no longer among
    those of its checks' own status."""
    listed = bl_selectors.listed_domain_ids(user)
    if status == "fail":
        return domain_selectors.domains_visible(user, search=search).filter(
            Q(worst_status="fail") | Q(pk__in=listed)
        )
    queryset = domain_selectors.domains_visible(user, search=search, status=status)
    return queryset.exclude(pk__in=listed) if status else queryset


def status_counts_with_listings(user: User) -> dict[str, int]:
    """`domain_selectors.worst_status_counts` with each listed domain counted as `fail`."""
    counts = dict(domain_selectors.worst_status_counts(user))
    listed = bl_selectors.listed_domain_ids(user)
    moved = Domain.objects.filter(pk__in=listed).exclude(worst_status="fail")
    for stored in moved.values_list("worst_status", flat=True):
        bucket = stored or "unchecked"
        counts[bucket] = counts.get(bucket, 0) - 1
        if counts[bucket] <= 0:
            del counts[bucket]
        counts["fail"] = counts.get("fail", 0) + 1
    return counts


def mark_listed_domains(domains: Iterable[Domain]) -> None:
    """Make a domain row's worst status `fail` when the domain or one of its MX addresses is
    listed (a listing is a definite fault, so it outranks warnings and errors; a failing check
    keeps its own summary). Called by the domain list on the rows of one page.

    Done here, in the dashboard, because `dns_records` (whose selectors build the list) may not
    import `blocklists` above it; `domains_with_listings` and `status_counts_with_listings` make
    the list's filter and counts agree. The stored `worst_status` (and the API's `?status=`) stay
    the checks' own.
    """
    rows = list(domains)
    found = bl_selectors.listed_by_domain(rows)
    for domain in rows:
        listed = found.get(domain.pk)
        if listed is None or domain.worst_status == "fail":
            continue
        domain.worst_status = "fail"
        domain.worst_check = "blocklists"  # type: ignore[attr-defined]
        domain.worst_summary = listed.summary  # type: ignore[attr-defined]
