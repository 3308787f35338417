"""Write use-cases for domains and their checks."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from dns_records.checks import check_delegation
from dns_records.models import CheckResult, Domain
from dns_records.names import InvalidDomainName, normalise_domain
from dns_records.resolver import Resolver
from dns_records.results import CheckOutcome
from mailsec.models import Organisation, TaskRun
from mailsec.selectors import can_write
from mailsec.services import Actor, audit_record, task_run_create

CHECK_TASK_KIND = "domain.check"


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def domain_create(*, organisation: Organisation, name: str, actor: Actor) -> Domain:
    """Add a domain and queue its first check once the row is committed."""
    _require_write(actor, organisation)
    try:
        ascii_name = normalise_domain(name)
    except InvalidDomainName as exc:
        raise ValidationError({"name": str(exc)}) from None
    try:
        with transaction.atomic():
            domain = Domain.objects.create(organisation=organisation, name=ascii_name)
            audit_record(
                actor=actor,
                action="domain.create",
                obj=domain,
                organisation=organisation,
                after={"name": ascii_name},
            )
            domain_check_request(domain=domain, actor=actor)
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
    """Record a pending check run and queue it after commit; answers the API's 202."""
    from dns_records.tasks import check_domain

    _require_write(actor, domain.organisation)
    run = task_run_create(
        organisation=domain.organisation, kind=CHECK_TASK_KIND, obj=domain, actor=actor
    )
    kwargs = {"task_run_id": str(run.id), "domain_id": domain.pk}
    transaction.on_commit(lambda: check_domain.apply_async(kwargs=kwargs, task_id=str(run.id)))
    return run


def domain_checks_run(*, domain_id: int, resolver: Resolver | None = None) -> dict[str, Any]:
    """Run the checks of one domain and store their results; the worker's use-case."""
    domain = Domain.objects.filter(pk=domain_id).first()
    if domain is None:
        return {"domain": None, "skipped": "the domain was deleted before its check ran"}
    resolver = resolver or Resolver()
    outcomes = [check_delegation(domain.name, resolver)]
    checked_at = timezone.now()
    check_results_store(domain=domain, outcomes=outcomes, checked_at=checked_at)
    return {"domain": domain.name, "checks": [o.as_dict(checked_at) for o in outcomes]}


def check_results_store(
    *, domain: Domain, outcomes: list[CheckOutcome], checked_at: Any
) -> list[CheckResult]:
    return CheckResult.objects.bulk_create(
        CheckResult(
            domain=domain,
            name=outcome.name,
            status=outcome.status,
            summary=outcome.summary[:500],
            details=outcome.details,
            checked_at=checked_at,
        )
        for outcome in outcomes
    )
