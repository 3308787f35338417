"""Read queries for domains and their current check results."""

from __future__ import annotations

from django.db.models import CharField, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast

from dns_records.models import CheckName, CheckResult, Domain
from dns_records.services import CHECK_TASK_KIND
from mailsec.models import UNFINISHED_TASK_STATES, TaskRun
from mailsec.selectors import User, organisations_visible


def domains_visible(user: User, *, search: str = "") -> QuerySet[Domain]:
    """The user's domains with the newest delegation status and whether a check is running."""
    latest = CheckResult.objects.filter(domain=OuterRef("pk")).order_by("-checked_at", "-id")
    pending = TaskRun.objects.filter(
        kind=CHECK_TASK_KIND,
        object_type="domain",
        object_id=Cast(OuterRef("pk"), CharField()),
        state__in=UNFINISHED_TASK_STATES,
    )
    queryset = (
        Domain.objects.filter(organisation__in=organisations_visible(user))
        .select_related("organisation")
        .annotate(
            latest_status=Subquery(latest.values("status")[:1]),
            latest_summary=Subquery(latest.values("summary")[:1]),
            latest_checked_at=Subquery(latest.values("checked_at")[:1]),
        )
    )
    if search:
        queryset = queryset.filter(name__icontains=search.strip().lower())
    return queryset.annotate(check_pending=Exists(pending)).order_by("name", "organisation__name")


def latest_results(domain: Domain) -> list[CheckResult]:
    """The newest result of each check of the domain, one indexed query per check name."""
    results = []
    for name in CheckName.values:
        result = domain.check_results.filter(name=name).order_by("-checked_at", "-id").first()
        if result is not None:
            results.append(result)
    return results


def check_history(domain: Domain, limit: int = 50) -> QuerySet[CheckResult]:
    return domain.check_results.order_by("-checked_at", "-id")[:limit]


def check_pending(domain: Domain) -> TaskRun | None:
    return (
        TaskRun.objects.filter(
            kind=CHECK_TASK_KIND,
            object_type="domain",
            object_id=str(domain.pk),
            state__in=UNFINISHED_TASK_STATES,
        )
        .order_by("-created_at")
        .first()
    )
