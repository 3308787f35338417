"""Write use-cases for domains and their checks."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from dns_records.context import check_contexts
from dns_records.models import CheckEvent, CheckResult, CheckState, Domain
from dns_records.names import InvalidDomainName, normalise_domain
from dns_records.resolver import Resolver
from dns_records.results import CheckOutcome, storable, worst
from dns_records.runner import iter_many
from dns_records.selectors import check_pending
from dns_records.status import CheckStatus
from mailsec.jobs import task_run_create, task_run_enqueue
from mailsec.models import Organisation, TaskKind, TaskRun
from mailsec.selectors import can_write
from mailsec.services.audit import Actor, audit_record

logger = logging.getLogger(__name__)


class CheckRateLimited(Exception):
    """The organisation asked for more "check now" runs this minute than it may."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def check_interval() -> timedelta:
    return timedelta(minutes=settings.MAILSEC_CHECK_INTERVAL_MINUTES)


def domain_create(*, organisation: Organisation, name: str, actor: Actor) -> Domain:
    """Add a domain and queue its first check once the row is committed."""
    _require_write(actor, organisation)
    try:
        ascii_name = normalise_domain(name)
    except InvalidDomainName as exc:
        raise ValidationError({"name": str(exc)}) from None
    try:
        with transaction.atomic():
            # The organisation's row lock makes two creations at once count each other.
            Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
            limit = settings.MAILSEC_DOMAINS_PER_ORGANISATION
            if Domain.objects.filter(organisation=organisation).count() >= limit:
                raise ValidationError(
                    {
                        "name": f"{organisation.name} already has {limit} domains, the most one "
                        "organisation may have; remove one before adding another."
                    }
                )
            domain = Domain.objects.create(
                organisation=organisation,
                name=ascii_name,
                next_check_at=timezone.now() + check_interval(),
            )
            audit_record(
                actor=actor,
                action="domain.create",
                obj=domain,
                organisation=organisation,
                after={"name": ascii_name},
            )
            _check_queue(domain=domain, actor=actor)
    except IntegrityError:
        raise ValidationError(
            {"name": f"{ascii_name} is already in {organisation.name}."}
        ) from None
    return domain


@transaction.atomic
def domain_delete(*, domain: Domain, actor: Actor) -> None:
    _require_write(actor, domain.organisation)
    audit_record(
        actor=actor,
        action="domain.delete",
        obj=domain,
        organisation=domain.organisation,
        before={"name": domain.name},
    )
    domain.delete()


@transaction.atomic
def domain_check_request(*, domain: Domain, actor: Actor) -> TaskRun:
    """Record a pending check run and queue it after commit ("check now"); answers the API's 202.

    Raises CheckRateLimited when the organisation has queued MAILSEC_CHECK_NOW_PER_MINUTE check
    runs in the last minute: each run sends hundreds of queries to other people's servers.
    """
    _require_write(actor, domain.organisation)
    # Asking again while a check is queued or running joins it instead of queuing another; the
    # row lock makes two requests at once see each other. Joining is free.
    Domain.objects.select_for_update().filter(pk=domain.pk).first()
    pending = check_pending(domain)
    if pending is not None:
        return pending
    # The organisation's row lock makes two requests at once count each other.
    Organisation.objects.select_for_update().filter(pk=domain.organisation_id).first()
    limit = settings.MAILSEC_CHECK_NOW_PER_MINUTE
    # Every check run queued counts, a new domain's first check included: each costs the same.
    recent = TaskRun.objects.filter(
        organisation_id=domain.organisation_id,
        kind=TaskKind.DOMAIN_CHECK,
        created_at__gte=timezone.now() - timedelta(minutes=1),
    ).count()
    if recent >= limit:
        raise CheckRateLimited(
            f"{domain.organisation.name} has asked for {limit} checks in the last minute, the "
            "most it may; try again in a minute.",
            retry_after=60,
        )
    return _check_queue(domain=domain, actor=actor)


def _check_queue(*, domain: Domain, actor: Actor) -> TaskRun:
    run = task_run_create(
        organisation=domain.organisation, kind=TaskKind.DOMAIN_CHECK, obj=domain, actor=actor
    )
    task_run_enqueue(run, "dns_records.tasks.check_domain", domain_id=domain.pk)
    return run


def domains_check(
    *, domain_ids: Iterable[int], resolver: Resolver | None = None
) -> dict[int, list[CheckOutcome]]:
    """Run every check of these domains concurrently and store the results; the worker's job.

    Each Domain row is checked in its own context (a name in two organisations may have
    different hosts and keys); the lookups are shared across the batch.
    """
    domains = {d.pk: d for d in Domain.objects.filter(pk__in=list(domain_ids))}
    if not domains:
        return {}
    contexts = check_contexts(list(domains.values()))
    outcomes: dict[int, list[CheckOutcome]] = {}
    # Each domain is stored as soon as it is done, so a batch cut short keeps what it finished,
    # and on its own: one domain's records (written by strangers) must never cost another
    # domain, perhaps another organisation's, its result.
    for pk, results in iter_many(
        contexts.items(),
        resolver or Resolver(),
        max_workers=settings.MAILSEC_CHECK_CONCURRENCY,
    ):
        # What the task run's result holds is escaped and bounded as what is stored.
        kept = [storable(o) for o in results]
        try:
            stored = check_outcomes_store(
                domain=domains[pk], outcomes=results, checked_at=timezone.now()
            )
        except Exception:
            logger.exception("storing the checks of domain %s (%s) failed", pk, domains[pk].name)
            kept = _store_failure(domains[pk], [o.name for o in results])
            stored = bool(kept)
        if stored:
            outcomes[pk] = kept
    return outcomes


def _store_failure(domain: Domain, names: list[str]) -> list[CheckOutcome]:
    """Record `error` for each check whose result could not be stored; [] if even that fails."""
    failed = [
        CheckOutcome(
            name, CheckStatus.ERROR, "mailsec could not store this check's result (logged)."
        )
        for name in names
    ]
    try:
        if check_outcomes_store(domain=domain, outcomes=failed, checked_at=timezone.now()):
            return failed
    except Exception:
        logger.exception("storing the failure of domain %s failed too", domain.pk)
    return []


def domain_checks_run(*, domain_id: int, resolver: Resolver | None = None) -> dict[str, Any]:
    """Check one domain now (the "Check now" task) and describe the outcome for its task run."""
    outcomes = domains_check(domain_ids=[domain_id], resolver=resolver)
    if domain_id not in outcomes:
        return {"domain": None, "skipped": "the domain was deleted before its check ran"}
    name = Domain.objects.filter(pk=domain_id).values_list("name", flat=True).first()
    checked_at = timezone.now()
    return {"domain": name, "checks": [o.as_dict(checked_at) for o in outcomes[domain_id]]}


STATE_FIELDS = ["status", "summary", "details", "checked_at", "changed_at"]


@transaction.atomic
def check_outcomes_store(
    *, domain: Domain, outcomes: list[CheckOutcome], checked_at: datetime
) -> bool:
    """Keep the run as history, update the current state, and record each status change.

    One read of the current states, one bulk insert each for history and events, one bulk
    upsert of the states. False when the domain was deleted while it was being checked.
    Every string is stored with its control characters escaped and the details bounded
    (`storable`): PostgreSQL refuses NUL, which DNS allows in any record.
    """
    outcomes = [storable(o) for o in outcomes]
    domain_id = domain.pk
    # Locking the domain row orders this against a concurrent delete of the domain.
    if not Domain.objects.select_for_update().filter(pk=domain_id).exists():
        return False
    current = {s.name: s for s in CheckState.objects.filter(domain_id=domain_id)}
    CheckResult.objects.bulk_create(
        CheckResult(
            domain_id=domain_id,
            name=o.name,
            status=o.status,
            summary=o.summary[:500],
            details=o.details,
            checked_at=checked_at,
        )
        for o in outcomes
    )
    events, states = [], []
    for outcome in outcomes:
        state = current.get(outcome.name)
        if state is not None and state.checked_at > checked_at:
            continue  # a newer result is already current; this run stays in the history only
        changed = state is None or state.status != outcome.status
        if changed:
            events.append(
                CheckEvent(
                    domain_id=domain_id,
                    name=outcome.name,
                    previous_status=state.status if state else "",
                    status=outcome.status,
                    summary=outcome.summary[:500],
                    created_at=checked_at,
                )
            )
        states.append(
            CheckState(
                domain_id=domain_id,
                name=outcome.name,
                status=outcome.status,
                summary=outcome.summary[:500],
                details=outcome.details,
                checked_at=checked_at,
                changed_at=checked_at if changed or state is None else state.changed_at,
            )
        )
    CheckState.objects.bulk_create(
        states,
        update_conflicts=True,
        unique_fields=["domain", "name"],
        update_fields=STATE_FIELDS,
    )
    CheckEvent.objects.bulk_create(events)
    statuses = {name: CheckStatus(state.status) for name, state in current.items()}
    statuses.update({state.name: CheckStatus(state.status) for state in states})
    Domain.objects.filter(pk=domain_id).update(
        worst_status=worst(list(statuses.values())), next_check_at=checked_at + check_interval()
    )
    return True


def domains_claim_due(*, now: datetime, limit: int) -> list[int]:
    """Take up to `limit` domains whose check is due and move their next check on.

    Rows are locked with SKIP LOCKED where the database has it, so two schedulers never
    queue the same domain; a domain never scheduled gets a random slot in the interval,
    spreading a large import over the interval instead of checking everything at once.
    """
    interval = check_interval()
    with transaction.atomic():
        unscheduled = list(
            Domain.objects.select_for_update(skip_locked=True)
            .filter(next_check_at__isnull=True)
            .values_list("pk", flat=True)[:limit]
        )
        for pk in unscheduled:
            offset = timedelta(seconds=random.uniform(0, interval.total_seconds()))  # noqa: S311
            Domain.objects.filter(pk=pk).update(next_check_at=now + offset)
        due = list(
            Domain.objects.select_for_update(skip_locked=True)
            .filter(Q(next_check_at__lte=now))
            .order_by("next_check_at")
            .values_list("pk", flat=True)[:limit]
        )
        Domain.objects.filter(pk__in=due).update(next_check_at=now + interval)
    return due


def check_history_prune(*, now: datetime) -> int:
    cutoff = now - timedelta(days=settings.MAILSEC_CHECK_HISTORY_DAYS)
    deleted, _ = CheckResult.objects.filter(checked_at__lt=cutoff).delete()
    return deleted


@transaction.atomic
def domain_dkim_rotation_set(*, domain: Domain, days: int | None, actor: Actor) -> None:
    """Rotate the domain's active DKIM keys every `days` days (None: only by hand)."""
    _require_write(actor, domain.organisation)
    before = domain.dkim_rotation_days
    Domain.objects.filter(pk=domain.pk).update(dkim_rotation_days=days)
    audit_record(
        actor=actor, action="domain.dkim_rotation", obj=domain, organisation=domain.organisation,
        before={"dkim_rotation_days": before}, after={"dkim_rotation_days": days},
    )  # fmt: skip
