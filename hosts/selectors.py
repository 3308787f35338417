"""Read queries for policies, managed hosts, their deployments and events.

Every query that takes a user returns only rows of the user's organisations; another
organisation's row is None or absent, so views and the API answer 404 for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from dns_records.models import Domain
from hosts.assemble import last_known_files, render_for_host
from hosts.models import Deployment, DeploymentState, Host, HostEvent, Policy, ProbeResult
from hosts.policy import CHOICE_FIELDS, DnsblSite, PolicyValues
from hosts.render import RenderError
from hosts.render.diff import diff_files
from mailsec.models import FINISHED_TASK_STATES, Organisation, TaskKind, TaskRun
from mailsec.selectors import User, organisations_visible

__all__ = [
    "UNFINISHED_DEPLOYMENT_STATES",
    "deployment_pending",
    "deployment_task_run",
    "deployment_visible",
    "deployments_of",
    "domain_names_of",
    "events_of",
    "host_addresses",
    "host_rendered",
    "host_visible",
    "hosts_serving",
    "hosts_visible",
    "mx_probe_last_requested",
    "mx_probe_pending",
    "mx_probe_results_current",
    "policies_visible",
    "policy_choices_of",
    "policy_values",
    "policy_values_json",
    "policy_visible",
    "probe_last_requested",
    "probe_pending",
    "probe_result_shape",
    "probe_results_current",
    "probe_results_for_domain",
    "probe_results_history",
    "values_from_json",
]

UNFINISHED_DEPLOYMENT_STATES = (DeploymentState.PENDING, DeploymentState.RUNNING)
TUPLE_FIELDS = ("mynetworks", "rhsbl_client_sites", "rhsbl_sender_sites", "rhsbl_helo_sites")


# --- policy values as stored (JSON) ------------------------------------------------------------


def values_from_json(data: Mapping[str, Any]) -> PolicyValues:
    """A policy's stored (or submitted) values as PolicyValues, defaults for what is missing.

    Nothing is checked here beyond the shape a dataclass needs: `hosts.policy.validate` says
    what is wrong with the result. Unknown keys are ignored (the services refuse them on input).
    """
    fields = set(PolicyValues.__dataclass_fields__)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            continue
        if name in TUPLE_FIELDS and isinstance(value, list):
            value = tuple(value)
        elif name == "dnsbl_sites" and isinstance(value, list):
            value = tuple(
                DnsblSite(zone=item.get("zone", ""), weight=item.get("weight", 1))
                if isinstance(item, Mapping)
                else item
                for item in value
            )
        elif name in CHOICE_FIELDS and isinstance(value, str):
            enum = CHOICE_FIELDS[name]
            value = enum(value) if value in {str(m) for m in enum} else value
        kwargs[name] = value
    return PolicyValues(**kwargs)


def policy_values_json(values: PolicyValues) -> dict[str, Any]:
    """PolicyValues as stored in Policy.values and shown by the API: plain JSON types."""
    out: dict[str, Any] = {}
    for name in PolicyValues.__dataclass_fields__:
        value = getattr(values, name)
        if name == "dnsbl_sites":
            value = [{"zone": site.zone, "weight": site.weight} for site in value]
        elif isinstance(value, tuple):
            value = list(value)
        elif name in CHOICE_FIELDS:
            value = str(value)
        out[name] = value
    return out


def policy_values(policy: Policy) -> PolicyValues:
    return values_from_json(policy.values or {})


# --- policies -------------------------------------------------------------------------------


def policies_visible(user: User) -> QuerySet[Policy]:
    return (
        Policy.objects.filter(organisation__in=organisations_visible(user))
        .select_related("organisation")
        .order_by("organisation__name", "name")
    )


def policy_visible(user: User, pk: int) -> Policy | None:
    return policies_visible(user).filter(pk=pk).first()


def policy_choices_of(organisation: Organisation) -> list[tuple[int, str]]:
    """The organisation's policies as (id, name), for a host's policy menu."""
    return list(
        Policy.objects.filter(organisation=organisation).order_by("name").values_list("pk", "name")
    )


def domain_names_of(organisation: Organisation) -> list[str]:
    """The organisation's domain names, for a host's domain choices."""
    return list(
        Domain.objects.filter(organisation=organisation)
        .order_by("name")
        .values_list("name", flat=True)
    )


# --- hosts ----------------------------------------------------------------------------------


def hosts_visible(user: User) -> QuerySet[Host]:
    return (
        Host.objects.filter(organisation__in=organisations_visible(user))
        .select_related("organisation", "policy")
        .prefetch_related("domains")
        .order_by("organisation__name", "name")
    )


def host_visible(user: User, pk: int) -> Host | None:
    return hosts_visible(user).filter(pk=pk).first()


def hosts_serving(domain: Domain) -> QuerySet[Host]:
    """The managed hosts of the domain's organisation that serve it."""
    return Host.objects.filter(domains=domain, organisation_id=domain.organisation_id).order_by(
        "name"
    )


def host_addresses(host: Host) -> list[str]:
    """The host's IP addresses: its address when that is an IP, then those it reported."""
    found: list[str] = []
    candidates: list[Any] = [host.address]
    reported = (host.facts or {}).get("addresses") if isinstance(host.facts, dict) else None
    if isinstance(reported, list):
        candidates += reported
    for candidate in candidates:
        if not isinstance(candidate, str):
            continue
        try:
            address = str(ipaddress.ip_address(candidate.strip()))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


def addresses_by_domain(domains: Sequence[Domain]) -> dict[int, list[str]]:
    """For each Domain row, the addresses of its organisation's hosts serving it (one query)."""
    ids = [d.pk for d in domains]
    org_of = {d.pk: d.organisation_id for d in domains}
    found: dict[int, list[str]] = {}
    through = Host.domains.through.objects.filter(domain_id__in=ids).select_related("host")
    for link in through.order_by("host__name"):
        host = link.host
        if host.organisation_id != org_of.get(link.domain_id):
            continue
        addresses = found.setdefault(link.domain_id, [])
        addresses += [a for a in host_addresses(host) if a not in addresses]
    return found


def organisation_host_addresses(organisation_id: int) -> list[tuple[Host, list[str]]]:
    """Each host of the organisation with its IP addresses, by name."""
    hosts = Host.objects.filter(organisation_id=organisation_id).order_by("name")
    return [(host, host_addresses(host)) for host in hosts]


# --- deployments and events ------------------------------------------------------------------


def deployments_of(host: Host) -> QuerySet[Deployment]:
    return Deployment.objects.filter(host=host).select_related("requested_by")


def deployment_visible(user: User, pk: int) -> Deployment | None:
    return (
        Deployment.objects.filter(host__organisation__in=organisations_visible(user), pk=pk)
        .select_related("host", "requested_by")
        .first()
    )


def deployment_pending(host: Host) -> Deployment | None:
    """The host's deployment still waiting or running, if any."""
    return (
        Deployment.objects.filter(host=host, state__in=UNFINISHED_DEPLOYMENT_STATES)
        .order_by("created_at", "id")
        .first()
    )


def deployment_task_run(deployment: Deployment) -> TaskRun | None:
    return (
        TaskRun.objects.filter(object_type="deployment", object_id=str(deployment.pk))
        .order_by("-created_at")
        .first()
    )


def events_of(host: Host) -> QuerySet[HostEvent]:
    return HostEvent.objects.filter(host=host)


# --- what a deployment would write ------------------------------------------------------------


def host_rendered(host: Host) -> list[dict[str, Any]]:
    """The files a deployment would write now, each against the host's copy as last known.

    A secret (a private key) is given by path, mode, hash and `secret: true` only. A host
    without a policy, or one whose values cannot be rendered, is a ValidationError saying why.
    """
    if host.policy_id is None:
        raise ValidationError({"policy": f"{host.name} has no policy: nothing would be written."})
    current = last_known_files(host)
    try:
        files = render_for_host(host, current)
    except RenderError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors:
            errors.setdefault(error.field, []).append(error.message)
        raise ValidationError(errors) from None
    diffs = {d.path: d for d in diff_files(current, files)}
    out: list[dict[str, Any]] = []
    for item in files:
        entry: dict[str, Any] = {
            "path": item.path,
            "mode": f"{item.mode:04o}",
            "sha256": item.sha256,
            "secret": item.secret,
        }
        if not item.secret:
            found = diffs[item.path]
            entry["status"] = str(found.status)
            entry["content"] = (
                None if b"\0" in item.content else item.content.decode("utf-8", "backslashreplace")
            )
            entry["diff"] = found.diff
        out.append(entry)
    return out


# --- live probes ----------------------------------------------------------------------------


def probe_pending(host: Host) -> TaskRun | None:
    """The host's probe run still queued or running, if any."""
    return (
        TaskRun.objects.filter(kind=TaskKind.HOST_PROBE, object_type="host", object_id=str(host.pk))
        .exclude(state__in=FINISHED_TASK_STATES)
        .order_by("-created_at")
        .first()
    )


def probe_last_requested(host: Host, *, same_target: bool = False) -> datetime | None:
    """When the host's last probe was queued (or, without a run, last recorded).

    `same_target`: of any host (in any organisation) at the same address, so registering the
    address twice does not probe it twice as often."""
    hosts = (
        Host.objects.filter(address=host.address)
        if same_target
        else Host.objects.filter(pk=host.pk)
    )
    ids = [str(pk) for pk in hosts.values_list("pk", flat=True)] or [str(host.pk)]
    run = (
        TaskRun.objects.filter(kind=TaskKind.HOST_PROBE, object_type="host", object_id__in=ids)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    recorded = (
        ProbeResult.objects.filter(host__in=hosts)
        .order_by("-probed_at")
        .values_list("probed_at", flat=True)
        .first()
    )
    found = [t for t in (run, recorded) if t is not None]
    return max(found) if found else None


def probe_results_current(host: Host) -> list[ProbeResult]:
    """The newest result per (name, port): the host's current probe state."""
    return list(
        ProbeResult.objects.filter(host=host)
        .order_by("name", "port", "-probed_at", "-id")
        .distinct("name", "port")
    )


def probe_results_history(host: Host, limit: int = 500) -> QuerySet[ProbeResult]:
    return ProbeResult.objects.filter(host=host).order_by("-probed_at", "name", "port")[:limit]


def probe_results_for_domain(domain: Domain) -> list[tuple[Host, list[ProbeResult]]]:
    """The current probe results of each host serving the domain (its MX view)."""
    return [(host, probe_results_current(host)) for host in domain.hosts.order_by("name")]


def probe_result_shape(row: ProbeResult) -> dict[str, Any]:
    """One result in the contract's check shape, with where it was probed."""
    return {
        "name": row.name,
        "status": row.status,
        "summary": row.summary,
        "details": {**(row.details or {}), "address": row.address, "port": row.port},
        "checked_at": row.probed_at.isoformat(),
    }


def mx_probe_pending(domain: Domain) -> TaskRun | None:
    return (
        TaskRun.objects.filter(
            kind=TaskKind.HOST_PROBE, object_type="domain", object_id=str(domain.pk)
        )
        .exclude(state__in=FINISHED_TASK_STATES)
        .order_by("-created_at")
        .first()
    )


def mx_probe_last_requested(domain: Domain) -> datetime | None:
    return (
        TaskRun.objects.filter(
            kind=TaskKind.HOST_PROBE, object_type="domain", object_id=str(domain.pk)
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def mx_probe_results_current(domain: Domain) -> list[ProbeResult]:
    """The newest result per (MX target, name, port) of the domain's last MX probe run:
    targets no longer in the MX set drop out with it."""
    last = (
        ProbeResult.objects.filter(domain=domain)
        .order_by("-probed_at")
        .values_list("probed_at", flat=True)
        .first()
    )
    if last is None:
        return []
    return list(
        ProbeResult.objects.filter(domain=domain, probed_at=last).order_by("target", "name", "port")
    )
