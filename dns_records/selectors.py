"""Read queries for domains and their current check results."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Case, CharField, Count, Exists, OuterRef, QuerySet, Subquery, When
from django.db.models.functions import Cast
from django.utils import timezone

from dns_records.checks import check_names
from dns_records.models import (
    CheckEvent,
    CheckState,
    DkimKey,
    DkimKeyState,
    DkimSelector,
    DnsUpdateTarget,
    Domain,
)
from dns_records.status import CheckStatus
from mailsec.models import UNFINISHED_TASK_STATES, TaskKind, TaskRun
from mailsec.selectors import User, organisations_visible

# A check queued longer ago than this is no longer shown as running: no worker took it, and the
# page should stop polling and offer "Check now" again rather than spin forever.
PENDING_CUTOFF = timedelta(minutes=15)


def _pending_runs() -> QuerySet[TaskRun]:
    return TaskRun.objects.filter(
        kind=TaskKind.DOMAIN_CHECK,
        object_type="domain",
        state__in=UNFINISHED_TASK_STATES,
        created_at__gt=timezone.now() - PENDING_CUTOFF,
    )


def domains_visible(user: User, *, search: str = "", status: str = "") -> QuerySet[Domain]:
    """The user's domains with their worst current status and whether a check is running."""
    pending = _pending_runs().filter(object_id=Cast(OuterRef("pk"), CharField()))
    queryset = Domain.objects.filter(organisation__in=organisations_visible(user)).select_related(
        "organisation"
    )
    if search:
        queryset = queryset.filter(name__icontains=search.strip().lower())
    if status in set(CheckStatus):
        queryset = queryset.filter(worst_status=status)
    elif status == "unchecked":
        queryset = queryset.filter(worst_status="")
    worst = CheckState.objects.filter(domain=OuterRef("pk"), status=OuterRef("worst_status"))
    newest = CheckState.objects.filter(domain=OuterRef("pk")).order_by("-checked_at")
    return queryset.annotate(
        check_pending=Exists(pending),
        worst_check=Subquery(worst.values("name")[:1]),
        worst_summary=Subquery(worst.values("summary")[:1]),
        last_checked_at=Subquery(newest.values("checked_at")[:1]),
    ).order_by("name", "organisation__name")


def domain_visible(user: User, pk: int) -> Domain | None:
    """One of the user's domains, with the list's annotations; None for anyone else's."""
    return domains_visible(user).filter(pk=pk).first()


def current_checks(domain: Domain) -> list[CheckState]:
    """The current result of each check, in the order the checks are listed."""
    order = {name: index for index, name in enumerate(check_names())}
    states = list(CheckState.objects.filter(domain=domain))
    return sorted(states, key=lambda s: order.get(s.name, len(order)))


def status_counts(domain: Domain) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in CheckState.objects.filter(domain=domain).only("status"):
        counts[state.status] = counts.get(state.status, 0) + 1
    return counts


def check_events(domain: Domain, limit: int = 50) -> QuerySet[CheckEvent]:
    return domain.check_events.order_by("-created_at", "-id")[:limit]


def check_pending(domain: Domain) -> TaskRun | None:
    return _pending_runs().filter(object_id=str(domain.pk)).order_by("-created_at").first()


def worst_status_counts(user: User) -> dict[str, int]:
    """How many of the user's domains are at each worst status ("unchecked" when never checked)."""
    rows = (
        Domain.objects.filter(organisation__in=organisations_visible(user))
        .values("worst_status")
        .annotate(n=Count("pk"))
    )
    return {row["worst_status"] or "unchecked": row["n"] for row in rows}


def dkim_keys_of(domain: Domain) -> QuerySet[DkimKey]:
    """The domain's keys, newest first, retired ones last."""
    return domain.dkim_keys.select_related("domain").order_by(
        Case(When(state=DkimKeyState.RETIRED, then=1), default=0), "-created_at"
    )


def dkim_key_visible(user: User, pk: int) -> DkimKey | None:
    """One of the user's organisations' keys; None for anyone else's."""
    return (
        DkimKey.objects.select_related("domain", "domain__organisation")
        .filter(domain__organisation__in=organisations_visible(user), pk=pk)
        .first()
    )


def dkim_selectors_of(domain: Domain) -> QuerySet[DkimSelector]:
    return domain.dkim_selectors.order_by("selector")


def dkim_selector_visible(user: User, pk: int) -> DkimSelector | None:
    return (
        DkimSelector.objects.select_related("domain", "domain__organisation")
        .filter(domain__organisation__in=organisations_visible(user), pk=pk)
        .first()
    )


def dns_update_of(domain: Domain) -> DnsUpdateTarget | None:
    return DnsUpdateTarget.objects.filter(domain=domain).first()
