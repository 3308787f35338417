"""Names for sending addresses: reverse DNS through the resolver, AS and country from geo.

Each source address seen in the rollups gets a SourceInfo row: its PTR name (forward-confirmed,
or marked unverified, since anyone controlling a reverse zone can claim any name), the status
of that lookup, and the AS and country the installed offline databases give. A lookup that
fails (timeout, SERVFAIL) is stored as "error" with no name, and retried sooner than a name is
refreshed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from dns_records.lookups import LookupStatus, Resolving
from dns_records.resolver import DeadlineResolver, Resolver
from reports import geo
from reports.models import DailyRollup, SourceInfo


class PtrStatus:
    OK = "ok"  # a name that resolves back to the address
    UNVERIFIED = "unverified"  # a name that does not (or could not be checked to) point back
    NONE = "none"  # no PTR record
    ERROR = "error"  # the lookup failed: mailsec could not tell


# A name is looked up again after this long; a failed lookup sooner.
REFRESH_AFTER = dt.timedelta(days=7)
RETRY_ERROR_AFTER = dt.timedelta(hours=1)
# Sources seen in rollups this recently are worth naming.
SEEN_WITHIN_DAYS = 90
BATCH_SIZE = 100
CONCURRENCY = 16
MAX_PTR_NAMES = 5
# One address's lookups (PTR, then each name's A and AAAA) get this long in all, so a batch
# ends well inside the task's time limit even against reverse zones that never answer.
SOURCE_BUDGET_SECONDS = 15.0


@dataclass(frozen=True)
class SourceName:
    ip: str
    ptr: str
    ptr_status: str
    reason: str = ""


def reverse_name(address: str, resolver: Resolving) -> SourceName:
    """The address's PTR name, confirmed by a forward lookup; never a guessed name."""
    ptr = resolver.reverse(address)
    if ptr.status in {LookupStatus.NXDOMAIN, LookupStatus.NODATA}:
        return SourceName(address, "", PtrStatus.NONE)
    if not ptr.ok:
        return SourceName(address, "", PtrStatus.ERROR, ptr.reason)
    names = [n for n in ptr.records if n and len(n) <= 253][:MAX_PTR_NAMES]
    if not names:
        return SourceName(address, "", PtrStatus.NONE)
    for name in names:
        if any(address in lookup.records for lookup in resolver.addresses(name) if lookup.ok):
            return SourceName(address, name, PtrStatus.OK)
    return SourceName(address, names[0], PtrStatus.UNVERIFIED)


def sources_due(*, now: dt.datetime, limit: int = BATCH_SIZE) -> list[str]:
    """Addresses to name: seen in recent rollups and never resolved, then the stalest."""
    seen_since = now.date() - dt.timedelta(days=SEEN_WITHIN_DAYS)
    known = SourceInfo.objects.filter(ip=OuterRef("source_ip"))
    new = list(
        DailyRollup.objects.filter(day__gte=seen_since)
        .exclude(Exists(known))
        .values_list("source_ip", flat=True)
        .distinct()[:limit]
    )
    if len(new) >= limit:
        return new
    stale = (
        SourceInfo.objects.filter(
            Q(resolved_at__isnull=True)
            | Q(resolved_at__lt=now - REFRESH_AFTER)
            | Q(ptr_status=PtrStatus.ERROR, resolved_at__lt=now - RETRY_ERROR_AFTER)
        )
        .order_by(F("resolved_at").asc(nulls_first=True), "ip")
        .values_list("ip", flat=True)[: limit - len(new)]
    )
    return new + list(stale)


def source_store(name: SourceName, *, now: dt.datetime) -> SourceInfo:
    facts = geo.lookup(name.ip)
    info, _created = SourceInfo.objects.update_or_create(
        ip=name.ip,
        defaults={
            "ptr": name.ptr[:253],
            "ptr_status": name.ptr_status,
            "asn": facts.asn,
            "as_org": facts.as_org,
            "country": facts.country,
            "resolved_at": now,
        },
    )
    return info


def sources_resolve(
    addresses: Sequence[str] | None = None,
    *,
    resolver: Resolver | None = None,
    limit: int = BATCH_SIZE,
    concurrency: int = CONCURRENCY,
    now: Callable[[], dt.datetime] = timezone.now,
) -> dict[str, int]:
    """Name a bounded batch of addresses (the due ones by default); counts by PTR status."""
    shared = resolver or Resolver()
    todo = list(addresses) if addresses is not None else sources_due(now=now(), limit=limit)
    todo = todo[:limit]

    def one(address: str) -> SourceName:
        return reverse_name(address, DeadlineResolver.starting_now(shared, SOURCE_BUDGET_SECONDS))

    if len(todo) > 1 and concurrency > 1:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(todo))) as pool:
            names = list(pool.map(one, todo))
    else:
        names = [one(address) for address in todo]
    counts: dict[str, int] = {}
    for name in names:
        source_store(name, now=now())
        counts[name.ptr_status] = counts.get(name.ptr_status, 0) + 1
    return counts


def sources_refresh_geo(*, batch: int = 2000) -> int:
    """Give every known source the AS and country of the databases installed now (a local
    lookup each, no network); returns how many rows changed."""
    changed = 0
    last = 0
    while True:
        infos = list(SourceInfo.objects.filter(pk__gt=last).order_by("pk")[:batch])
        if not infos:
            return changed
        last = infos[-1].pk
        updated = []
        for info in infos:
            facts = geo.lookup(info.ip)
            if (info.asn, info.as_org, info.country) != (facts.asn, facts.as_org, facts.country):
                info.asn, info.as_org, info.country = facts.asn, facts.as_org, facts.country
                updated.append(info)
        SourceInfo.objects.bulk_update(updated, ["asn", "as_org", "country"])
        changed += len(updated)
