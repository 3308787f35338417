"""Write use-cases for blocklists: polls and their stored states, zones, the DQS key, and the
local IP blacklist. Every change by a person is audited; polls are the system's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from blocklists import cidr_map
from blocklists.models import (
    BlacklistEntry,
    BlocklistSettings,
    BlocklistTarget,
    BlocklistZone,
    Listing,
    ListingEvent,
)
from blocklists.poll import PollResult, PollTarget, poll
from blocklists.query import InvalidTarget, normalise_dqs_key
from blocklists.selectors import poll_pending
from blocklists.targets import find_targets, merge
from blocklists.verdict import ListingStatus, printable
from blocklists.zones import (
    InvalidZone,
    ZoneInfo,
    ZoneKind,
    default_zones,
    normalise_zone,
    zone_info,
)
from dns_records.resolver import Resolver
from hosts.policy import BlacklistEntry as HostBlacklistEntry
from mailsec import secrets
from mailsec.jobs import task_run_create, task_run_enqueue
from mailsec.models import Organisation, TaskKind, TaskRun
from mailsec.selectors import can_write
from mailsec.services.audit import Actor, audit_record

logger = logging.getLogger(__name__)

MAX_ZONES = 50
POLLS_PER_MINUTE = 3


class PollRateLimited(Exception):
    """The organisation asked for more polls this minute than it may."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


MAX_ENTRIES = 10_000


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def poll_interval() -> timedelta:
    return timedelta(minutes=settings.MAILSEC_DNSBL_INTERVAL_MINUTES)


# --- settings, zones, DQS key ------------------------------------------------------------


def settings_of(organisation: Organisation) -> BlocklistSettings:
    row, _created = BlocklistSettings.objects.get_or_create(organisation=organisation)
    return row


def zones_ensure(organisation: Organisation) -> None:
    """Seed the organisation's zone list from the defaults (MAILSEC_DNSBL_*_ZONES, else the
    built-in ones) once; afterwards the list is the organisation's to edit."""
    with transaction.atomic():
        row = settings_of(organisation)
        row = BlocklistSettings.objects.select_for_update().get(pk=row.pk)
        if row.zones_seeded:
            return
        ip_zones = settings.MAILSEC_DNSBL_IP_ZONES or None
        domain_zones = settings.MAILSEC_DNSBL_DOMAIN_ZONES or None
        args: dict[str, Any] = {}
        if ip_zones is not None:
            args["ip_zones"] = ip_zones
        if domain_zones is not None:
            args["domain_zones"] = domain_zones
        for zone in default_zones(**args):
            BlocklistZone.objects.get_or_create(
                organisation=organisation, name=zone.name, kind=zone.kind.value
            )
        row.zones_seeded = True
        row.save(update_fields=["zones_seeded"])


def zone_add(*, organisation: Organisation, name: str, kind: str, actor: Actor) -> BlocklistZone:
    _require_write(actor, organisation)
    try:
        zone_name = normalise_zone(name)
        zone_kind = ZoneKind(kind)
    except (InvalidZone, ValueError) as exc:
        raise ValidationError({"name": str(exc)}) from None
    zones_ensure(organisation)
    try:
        with transaction.atomic():
            Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
            if BlocklistZone.objects.filter(organisation=organisation).count() >= MAX_ZONES:
                raise ValidationError({"name": f"At most {MAX_ZONES} blocklists per organisation."})
            zone = BlocklistZone.objects.create(
                organisation=organisation, name=zone_name, kind=zone_kind.value
            )
            audit_record(
                actor=actor, action="blocklist_zone.create", obj=zone, organisation=organisation,
                after={"name": zone_name, "kind": zone_kind.value},
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError({"name": f"{zone_name} is already polled."}) from None
    return zone


@transaction.atomic
def zone_set_enabled(*, zone: BlocklistZone, enabled: bool, actor: Actor) -> BlocklistZone:
    _require_write(actor, zone.organisation)
    if zone.enabled != enabled:
        audit_record(
            actor=actor, action="blocklist_zone.update", obj=zone,
            organisation=zone.organisation,
            before={"enabled": zone.enabled}, after={"enabled": enabled},
        )  # fmt: skip
        zone.enabled = enabled
        zone.save(update_fields=["enabled"])
    return zone


@transaction.atomic
def zone_remove(*, zone: BlocklistZone, actor: Actor) -> None:
    """Stop polling a zone; its current states go, its history stays."""
    _require_write(actor, zone.organisation)
    audit_record(
        actor=actor, action="blocklist_zone.delete", obj=zone, organisation=zone.organisation,
        before={"name": zone.name, "kind": zone.kind},
    )  # fmt: skip
    Listing.objects.filter(
        target__organisation=zone.organisation, target__kind=zone.kind, zone=zone.name
    ).delete()
    zone.delete()


@transaction.atomic
def dqs_key_set(*, organisation: Organisation, key: str, actor: Actor) -> None:
    """Store (encrypted) or, with "", remove the organisation's Spamhaus DQS key. The audit
    record says that it changed, never what it is."""
    _require_write(actor, organisation)
    row = BlocklistSettings.objects.select_for_update().get(pk=settings_of(organisation).pk)
    if key:
        try:
            plain = normalise_dqs_key(key)
        except InvalidTarget as exc:
            raise ValidationError({"dqs_key": str(exc)}) from None
        row.dqs_key = secrets.encrypt(plain.encode("ascii"), context=row.secret_context)
    else:
        row.dqs_key = ""
    had = bool(BlocklistSettings.objects.filter(pk=row.pk).exclude(dqs_key="").exists())
    row.save(update_fields=["dqs_key"])
    audit_record(
        actor=actor, action="blocklist_settings.dqs_key", obj=row, organisation=organisation,
        before={"dqs_key": "set" if had else "none"}, after={"dqs_key": "set" if key else "none"},
    )  # fmt: skip


def dqs_key_of(organisation: Organisation) -> str:
    row = BlocklistSettings.objects.filter(organisation=organisation).first()
    if row is None or not row.dqs_key:
        return ""
    return secrets.decrypt(row.dqs_key, context=row.secret_context).decode("ascii")


# --- the local IP blacklist ----------------------------------------------------------------


def blacklist_entry_add(
    *,
    organisation: Organisation,
    network: str,
    reason: str,
    expires_at: datetime | None,
    actor: Actor,
) -> BlacklistEntry:
    _require_write(actor, organisation)
    try:
        parsed = cidr_map.parse_network(network)
    except ValueError as exc:
        raise ValidationError({"network": str(exc)}) from None
    if parsed.prefixlen == 0:
        raise ValidationError({"network": f"{parsed} would refuse every client."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry is in the past."})
    text = str(parsed) if parsed.num_addresses > 1 else str(parsed.network_address)
    clean_reason = printable(reason.strip(), limit=200)
    try:
        with transaction.atomic():
            Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
            count = BlacklistEntry.objects.filter(organisation=organisation).count()
            if count >= MAX_ENTRIES:
                raise ValidationError({"network": f"At most {MAX_ENTRIES} entries."})
            user = actor if getattr(actor, "is_authenticated", False) else None
            entry = BlacklistEntry.objects.create(
                organisation=organisation, network=text, reason=clean_reason,
                expires_at=expires_at, created_by=user,  # type: ignore[misc]
            )  # fmt: skip
            audit_record(
                actor=actor, action="blacklist_entry.create", obj=entry, organisation=organisation,
                after={
                    "network": text, "reason": clean_reason,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError({"network": f"{text} is already on the blacklist."}) from None
    return entry


@transaction.atomic
def blacklist_entry_remove(*, entry: BlacklistEntry, actor: Actor) -> None:
    _require_write(actor, entry.organisation)
    audit_record(
        actor=actor, action="blacklist_entry.delete", obj=entry, organisation=entry.organisation,
        before={"network": entry.network, "reason": entry.reason},
    )  # fmt: skip
    entry.delete()


def blacklist_entries_purge_expired(*, now: datetime) -> int:
    """Delete entries past their expiry, each audited as the system's removal."""
    removed = 0
    for entry in BlacklistEntry.objects.filter(expires_at__lte=now).select_related("organisation"):
        with transaction.atomic():
            audit_record(
                actor=None, action="blacklist_entry.expire", obj=entry,
                organisation=entry.organisation,
                before={"network": entry.network, "expires_at": entry.expires_at.isoformat() if entry.expires_at else None},
            )  # fmt: skip
            entry.delete()
            removed += 1
    return removed


def blacklist_for_hosts(organisation_id: int) -> list[HostBlacklistEntry]:
    """The entries in force, as the managed hosts' renderer takes them (registered with
    `hosts.assemble.register_blacklist_provider`): networks in CIDR form, reasons in printable
    ASCII as SMTP replies carry them."""
    now = timezone.now()
    rows = BlacklistEntry.objects.filter(organisation_id=organisation_id).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    return [
        HostBlacklistEntry(
            network=str(cidr_map.parse_network(row.network)),
            reason=cidr_map.sanitise_reason(row.reason),
        )
        for row in rows.order_by("network")
    ]


def cidr_map_of(organisation: Organisation, *, now: datetime | None = None) -> str:
    """The organisation's blacklist as the Postfix `cidr:` map the hosts get."""
    moment = now or timezone.now()
    entries = [
        cidr_map.CidrEntry(e.network, e.reason, e.expires_at)
        for e in BlacklistEntry.objects.filter(organisation=organisation)
    ]
    return cidr_map.render_cidr_map(entries, now=moment)


# --- polling ----------------------------------------------------------------------------------


@transaction.atomic
def poll_request(*, organisation: Organisation, actor: Actor) -> TaskRun:
    """Queue a poll of the organisation ("poll now"), or join the one already queued."""
    _require_write(actor, organisation)
    Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
    pending = poll_pending(organisation)
    if pending is not None:
        return pending
    # Every poll asks each list about every target: asking again and again gets the
    # organisation's resolver rate-limited by the lists (Spamhaus' 127.255.255.255).
    recent = TaskRun.objects.filter(
        organisation=organisation,
        kind=TaskKind.BLOCKLIST_POLL,
        created_at__gte=timezone.now() - timedelta(minutes=1),
    ).count()
    if recent >= POLLS_PER_MINUTE:
        raise PollRateLimited(
            f"{organisation.name} was polled {recent} times in the last minute, the most it may; "
            "blocklists limit how often a resolver may ask. Try again in a minute.",
            retry_after=60,
        )
    row = settings_of(organisation)
    run = task_run_create(
        organisation=organisation, kind=TaskKind.BLOCKLIST_POLL, obj=row, actor=actor
    )
    task_run_enqueue(run, "blocklists.tasks.poll_organisation", organisation_id=organisation.pk)
    return run


def zones_polled(organisation: Organisation) -> list[ZoneInfo]:
    zones_ensure(organisation)
    rows = BlocklistZone.objects.filter(organisation=organisation, enabled=True)
    return [zone_info(row.name, ZoneKind(row.kind)) for row in rows.order_by("kind", "name")]


def targets_refresh(
    *, organisation: Organisation, resolver: Resolver, now: datetime
) -> list[BlocklistTarget]:
    """Find the organisation's targets (every provider), store them, and retire those no source
    names any more, unless a lookup failed (then the list may be short, and nothing retires)."""
    found = find_targets(organisation, resolver, settings.MAILSEC_DNSBL_CONCURRENCY)
    merged = merge(found.targets)
    rows = []
    with transaction.atomic():
        for (kind, value), (sources, domain_ids) in merged.items():
            row, _ = BlocklistTarget.objects.update_or_create(
                organisation=organisation, kind=kind.value, value=value,
                defaults={"sources": sources, "active": True, "last_seen_at": now},
            )  # fmt: skip
            row.domains.set(sorted(domain_ids))
            rows.append(row)
        if not found.errors:
            seen = [row.pk for row in rows]
            BlocklistTarget.objects.filter(organisation=organisation, active=True).exclude(
                pk__in=seen
            ).update(active=False)
    if found.errors:
        logger.info("blocklist targets of %s may be incomplete: %s", organisation, found.errors[:3])
        rows += list(
            BlocklistTarget.objects.filter(organisation=organisation, active=True).exclude(
                pk__in=[row.pk for row in rows]
            )
        )
    return rows


def organisation_poll(
    *,
    organisation_id: int,
    resolver: Resolver | None = None,
    cancelled: threading.Event | None = None,
) -> list[PollResult]:
    """Poll every target of the organisation on every enabled zone and store the states."""
    organisation = Organisation.objects.get(pk=organisation_id)
    resolver = resolver or Resolver()
    now = timezone.now()
    targets = targets_refresh(organisation=organisation, resolver=resolver, now=now)
    zones = zones_polled(organisation)
    results = poll(
        [PollTarget(ZoneKind(t.kind), t.value) for t in targets],
        zones,
        resolver=resolver,
        dqs_key=dqs_key_of(organisation),
        concurrency=settings.MAILSEC_DNSBL_CONCURRENCY,
        cancelled=cancelled,
    )
    by_value = {(t.kind, t.value): t for t in targets}
    listings_store(
        organisation=organisation,
        results=[(by_value[r.target.kind.value, r.target.value], r) for r in results],
        checked_at=timezone.now(),
    )
    BlocklistSettings.objects.filter(organisation=organisation).update(
        last_polled_at=timezone.now(), next_poll_at=timezone.now() + poll_interval()
    )
    return results


@transaction.atomic
def listings_store(
    *,
    organisation: Organisation,
    results: Sequence[tuple[BlocklistTarget, PollResult]],
    checked_at: datetime,
) -> list[ListingEvent]:
    """Store each verdict as the current state of its (target, zone).

    An error never replaces a known state: the listed or clean state stays, marked stale with
    the error. Listed <-> clean (and a first listing) is an event.
    """
    target_ids = {target.pk for target, _ in results}
    current = {
        (row.target_id, row.zone): row
        for row in Listing.objects.select_for_update().filter(target_id__in=target_ids)
    }
    events: list[ListingEvent] = []
    for target, result in results:
        verdict = result.verdict
        row = current.get((target.pk, result.zone.name))
        if row is None:
            row = Listing(
                target=target, zone=result.zone.name, status=verdict.status,
                checked_at=checked_at, changed_at=checked_at,
            )  # fmt: skip
        previous = row.status if row.pk else ""
        row.checked_at = checked_at
        if verdict.status is ListingStatus.ERROR:
            row.error = verdict.reason[:500]
            if previous in (ListingStatus.LISTED, ListingStatus.CLEAN):
                row.stale = True
            else:
                row.status = ListingStatus.ERROR
                row.stale = False
                row.code = verdict.code[:200]
            row.save()
            continue
        if previous != verdict.status:
            row.changed_at = checked_at
            was_listed = previous == ListingStatus.LISTED
            if verdict.status is ListingStatus.LISTED or was_listed:
                events.append(
                    ListingEvent(
                        organisation=organisation,
                        target=target,
                        zone=result.zone.name,
                        previous_status=previous if previous != ListingStatus.ERROR else "",
                        status=verdict.status,
                        code=verdict.code[:200],
                        reason=(verdict.reason or verdict.meaning)[:500],
                        created_at=checked_at,
                    )
                )
        row.status = verdict.status
        row.code = verdict.code[:200]
        row.meaning = verdict.meaning[:500]
        row.reason = verdict.reason[:500]
        row.stale = False
        row.error = ""
        row.known_at = checked_at
        row.save()
    ListingEvent.objects.bulk_create(events)
    return events


def polls_claim_due(*, now: datetime, limit: int = 100) -> list[int]:
    """Organisations due a poll (never polled, or their time has come), each claimed with a
    conditional update so two beats never queue one twice."""
    due = list(
        Organisation.objects.filter(domains__isnull=False)
        .filter(
            Q(blocklist_settings__isnull=True)
            | Q(blocklist_settings__next_poll_at__isnull=True)
            | Q(blocklist_settings__next_poll_at__lte=now)
        )
        .distinct()
        .values_list("pk", flat=True)[:limit]
    )
    claimed = []
    for pk in due:
        row, _ = BlocklistSettings.objects.get_or_create(organisation_id=pk)
        updated = (
            BlocklistSettings.objects.filter(pk=row.pk)
            .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
            .update(next_poll_at=now + poll_interval())
        )
        if updated:
            claimed.append(pk)
    return claimed
