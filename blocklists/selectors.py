"""Read queries for blocklist states, history, zones and the local blacklist."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from blocklists.models import (
    BlacklistEntry,
    BlocklistSettings,
    BlocklistTarget,
    BlocklistZone,
    Listing,
    ListingEvent,
)
from blocklists.verdict import ListingStatus
from blocklists.zones import ZoneInfo, ZoneKind, zone_info
from dns_records.models import Domain
from mailsec.models import UNFINISHED_TASK_STATES, Organisation, TaskKind, TaskRun
from mailsec.selectors import User, organisations_visible


def _enabled_zones(organisation_ids: Iterable[int]) -> Q:
    """Listings on zones the organisation still polls (a disabled zone's state is not shown)."""
    pairs = BlocklistZone.objects.filter(organisation_id__in=list(organisation_ids), enabled=True)
    condition = Q(pk__in=[])
    for org_id, name, kind in pairs.values_list("organisation_id", "name", "kind"):
        condition |= Q(target__organisation_id=org_id, zone=name, target__kind=kind)
    return condition


def listings_visible(user: User, *, organisation: Organisation | None = None) -> QuerySet[Listing]:
    """Current states of the user's organisations' active targets on their enabled zones."""
    orgs = organisations_visible(user)
    if organisation is not None:
        orgs = orgs.filter(pk=organisation.pk)
    ids = list(orgs.values_list("pk", flat=True))
    return (
        Listing.objects.filter(target__organisation_id__in=ids, target__active=True)
        .filter(_enabled_zones(ids))
        .select_related("target", "target__organisation")
        .order_by("target__organisation__name", "target__kind", "target__value", "zone")
    )


def events_visible(
    user: User, *, organisation: Organisation | None = None
) -> QuerySet[ListingEvent]:
    queryset = ListingEvent.objects.filter(organisation__in=organisations_visible(user))
    if organisation is not None:
        queryset = queryset.filter(organisation=organisation)
    return queryset.select_related("target").order_by("-created_at", "-id")


def zones_of(organisation: Organisation) -> QuerySet[BlocklistZone]:
    return BlocklistZone.objects.filter(organisation=organisation).order_by("kind", "name")


def zone_visible(user: User, pk: int) -> BlocklistZone | None:
    return (
        BlocklistZone.objects.select_related("organisation")
        .filter(organisation__in=organisations_visible(user), pk=pk)
        .first()
    )


def entries_of(organisation: Organisation) -> QuerySet[BlacklistEntry]:
    """The entries in force: an expired entry drops out at once, before beat removes it."""
    now = timezone.now()
    return BlacklistEntry.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now), organisation=organisation
    ).order_by("network")


def entries_visible(user: User) -> QuerySet[BlacklistEntry]:
    now = timezone.now()
    return (
        BlacklistEntry.objects.filter(organisation__in=organisations_visible(user))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("organisation", "created_by")
        .order_by("organisation__name", "network")
    )


def dqs_key_configured(organisation: Organisation) -> bool:
    return BlocklistSettings.objects.filter(organisation=organisation).exclude(dqs_key="").exists()


def settings_row(organisation: Organisation) -> BlocklistSettings | None:
    return BlocklistSettings.objects.filter(organisation=organisation).first()


@dataclass(frozen=True)
class Cell:
    """One target on one zone: its current state, or None (not polled yet, or not asked: an
    IPv4-only list and an IPv6 address)."""

    zone: ZoneInfo
    listing: Listing | None
    column_error: bool = False  # the whole column failed alike: the reason is in its header

    @property
    def delist_url(self) -> str:
        if self.listing is None or self.listing.status != ListingStatus.LISTED:
            return ""
        return self.zone.delisting(self.listing.target.value)


@dataclass
class MatrixRow:
    target: BlocklistTarget
    cells: list[Cell]


@dataclass
class Matrix:
    """Targets by zones for one kind."""

    kind: ZoneKind
    zones: list[ZoneInfo]
    rows: list[MatrixRow] = field(default_factory=list)
    # Per zone: the error every target met on it (a list refusing the resolver, a dead list),
    # shown once in the column's header rather than in every cell.
    column_errors: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[tuple[ZoneInfo, str]]:
        return list(zip(self.zones, self.column_errors, strict=True))


def matrices(organisation: Organisation) -> list[Matrix]:
    """The page's two matrices (addresses on IP lists, domains on domain lists)."""
    zones = list(zones_of(organisation).filter(enabled=True))
    targets = list(
        BlocklistTarget.objects.filter(organisation=organisation, active=True).order_by("value")
    )
    listings: dict[tuple[int, str], Listing] = {
        (row.target_id, row.zone): row
        for row in Listing.objects.filter(target__in=[t.pk for t in targets])
    }
    result = []
    for kind in (ZoneKind.IP, ZoneKind.DOMAIN):
        kind_zones = [zone_info(z.name, kind) for z in zones if z.kind == kind]
        matrix = Matrix(kind, kind_zones)
        kind_targets = [t for t in targets if t.kind == kind]
        for zone in kind_zones:
            found = [listings.get((t.pk, zone.name)) for t in kind_targets]
            known = [row for row in found if row is not None]
            failed = {row.error for row in known if row.status == ListingStatus.ERROR or row.stale}
            alike = (
                len(known) > 1
                and len(failed) == 1
                and all(row.status == ListingStatus.ERROR or row.stale for row in known)
            )
            matrix.column_errors.append(next(iter(failed)) if alike else "")
        for target in kind_targets:
            matrix.rows.append(
                MatrixRow(
                    target,
                    [
                        Cell(zone, listings.get((target.pk, zone.name)), bool(error))
                        for zone, error in matrix.columns
                    ],
                )
            )
        result.append(matrix)
    return result


@dataclass(frozen=True)
class DomainListings:
    """A domain's own listings: the domain itself and its MX addresses."""

    listed: list[Listing]
    stale: int
    errors: int
    total: int

    @property
    def summary(self) -> str:
        first = self.listed[0]
        text = f"{first.target.value} is listed on {first.zone}"
        if len(self.listed) > 1:
            text += f" (and {len(self.listed) - 1} more)"
        return text


def listings_of_domain(domain: Domain) -> list[Listing]:
    ids = [domain.organisation_id]
    return list(
        Listing.objects.filter(target__domains=domain, target__active=True)
        .filter(_enabled_zones(ids))
        .select_related("target")
        .order_by("target__kind", "target__value", "zone")
    )


def listed_by_domain(domains: Iterable[Domain]) -> dict[int, DomainListings]:
    """For each domain with at least one listing (itself or an MX address), its listings."""
    rows = list(domains)
    org_ids = {d.organisation_id for d in rows}
    found: dict[int, list[Listing]] = {}
    listings = (
        Listing.objects.filter(
            status=ListingStatus.LISTED,
            target__active=True,
            target__domains__in=[d.pk for d in rows],
        )
        .filter(_enabled_zones(org_ids))
        .select_related("target")
        .prefetch_related("target__domains")
        .order_by("target__value", "zone")
        .distinct()
    )
    wanted = {d.pk for d in rows}
    for listing in listings:
        for domain in listing.target.domains.all():
            if domain.pk in wanted:
                found.setdefault(domain.pk, []).append(listing)
    return {pk: DomainListings(items, 0, 0, len(items)) for pk, items in found.items()}


# A poll queued longer ago than this is no longer shown as running: no worker took it.
PENDING_CUTOFF = timedelta(minutes=15)


def poll_pending(organisation: Organisation) -> TaskRun | None:
    """The organisation's poll queued or running, if any ("poll now" joins it)."""
    return (
        TaskRun.objects.filter(
            organisation=organisation,
            kind=TaskKind.BLOCKLIST_POLL,
            state__in=UNFINISHED_TASK_STATES,
            created_at__gt=timezone.now() - PENDING_CUTOFF,
        )
        .order_by("-created_at")
        .first()
    )


def listed_domain_ids(user: User) -> set[int]:
    """The user's domains listed themselves, or through an MX address (the domain list's
    `fail`)."""
    ids = list(organisations_visible(user).values_list("pk", flat=True))
    rows = (
        Listing.objects.filter(
            status=ListingStatus.LISTED, target__active=True, target__organisation_id__in=ids
        )
        .filter(_enabled_zones(ids))
        .values_list("target__domains", flat=True)
        .distinct()
    )
    return {pk for pk in rows if pk is not None}
