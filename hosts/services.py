"""Write use-cases for policies, managed hosts and deployments.

Who may write: owners and admins of the organisation (viewers read only); every change leaves
an audit record, never holding a secret (mailsec's SSH private key is stored encrypted and
appears nowhere else). Nothing is ever written to a host whose SSH host key the admin has not
confirmed: `deployment_request` refuses such a host, and a changed address or port unpins the
key until it is fetched and confirmed again.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from dns_records.lookups import LookupStatus
from dns_records.models import Domain
from dns_records.names import InvalidDomainName, normalise_domain
from dns_records.resolver import Resolver
from hosts import probe, selectors, ssh
from hosts import probe_verdicts as verdicts
from hosts.models import Deployment, DeploymentState, Host, HostEvent, Policy, ProbeResult
from hosts.policy import PolicyValues, domain_error, validate
from hosts.render.facts import HostFacts, validate_host
from mailsec import secrets
from mailsec.jobs import task_run_create, task_run_enqueue
from mailsec.models import FINISHED_TASK_STATES, Organisation, TaskKind, TaskRun
from mailsec.netguard import refuse_reason
from mailsec.selectors import can_write
from mailsec.services.audit import Actor, audit_record

POLICY_FIELDS = tuple(PolicyValues.__dataclass_fields__)
HOST_KEY_TIMEOUT = 10.0
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_FINGERPRINT_TOKEN = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?")


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


# --- policies -------------------------------------------------------------------------------


def _policy_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({"name": "Give the policy a name."})
    name = name.strip()
    if len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValidationError({"name": "At most 100 printable characters on one line."})
    return name


def _checked_values(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` applied over `base`, validated; the JSON to store, or every error at once."""
    unknown = sorted(set(changes) - set(POLICY_FIELDS))
    if unknown:
        raise ValidationError({name: "Not a policy field." for name in unknown})
    merged = {**base, **changes}
    try:
        values = selectors.values_from_json(merged)
    except (TypeError, AttributeError, ValueError):
        raise ValidationError(
            {"dnsbl_sites": 'Each site is {"zone": ..., "weight": ...}.'}
        ) from None
    errors: dict[str, list[str]] = {}
    for error in validate(values):
        errors.setdefault(error.field, []).append(error.message)
    if errors:
        raise ValidationError(errors)
    return selectors.policy_values_json(values)


def policy_create(
    *, organisation: Organisation, name: str, values: Mapping[str, Any], actor: Actor
) -> Policy:
    """A policy with the secure defaults, overridden by `values` (every field optional)."""
    _require_write(actor, organisation)
    name = _policy_name(name)
    stored = _checked_values(selectors.policy_values_json(PolicyValues()), values)
    try:
        with transaction.atomic():
            policy = Policy.objects.create(organisation=organisation, name=name, values=stored)
            audit_record(
                actor=actor, action="policy.create", obj=policy, organisation=organisation,
                after={"name": name, "values": stored},
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError(
            {"name": f"{organisation.name} already has a policy {name}."}
        ) from None
    return policy


def policy_update(
    *,
    policy: Policy,
    actor: Actor,
    name: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> Policy:
    """Rename the policy and/or change some of its values (the others stay as they are)."""
    _require_write(actor, policy.organisation)
    before = {"name": policy.name, "values": dict(policy.values or {})}
    new_name = policy.name if name is None else _policy_name(name)
    stored = _checked_values(
        selectors.policy_values_json(selectors.policy_values(policy)), values or {}
    )
    try:
        with transaction.atomic():
            Policy.objects.select_for_update().filter(pk=policy.pk).first()
            policy.name, policy.values = new_name, stored
            policy.save(update_fields=["name", "values", "updated_at"])
            audit_record(
                actor=actor, action="policy.update", obj=policy, organisation=policy.organisation,
                before=before, after={"name": new_name, "values": stored},
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError(
            {"name": f"{policy.organisation.name} already has a policy {name}."}
        ) from None
    return policy


@transaction.atomic
def policy_delete(*, policy: Policy, actor: Actor) -> None:
    """Delete a policy no host uses; one in use is refused with the hosts' names."""
    _require_write(actor, policy.organisation)
    Policy.objects.select_for_update().filter(pk=policy.pk).first()
    users = list(Host.objects.filter(policy=policy).values_list("name", flat=True)[:10])
    if users:
        raise ValidationError(
            {
                "policy": f"{policy.name} is the policy of {', '.join(users)}: give them another first."
            }
        )
    audit_record(
        actor=actor, action="policy.delete", obj=policy, organisation=policy.organisation,
        before={"name": policy.name, "values": policy.values},
    )  # fmt: skip
    policy.delete()


# --- hosts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostInput:
    """What an admin gives for a host; validated by `_host_input_errors`."""

    name: str
    address: str
    ssh_port: int = 22
    ssh_user: str = "mailsec"
    postfix_config_dir: str = "/etc/postfix"
    dovecot_config_dir: str = "/etc/dovecot"
    opendkim_config_dir: str = "/etc/opendkim"


def _address_error(address: object) -> str | None:
    if not isinstance(address, str) or not address.strip():
        return "Enter the host's IP address or name."
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if domain_error(address.lower()) is not None:
            return f"{address[:80]!r} is neither an IP address nor a host name."
        return None
    reason = refuse_reason(str(ip), settings.MAILSEC_PROBE_ALLOW_NETWORKS)
    if reason:
        return f"mailsec may not connect to {ip}: {reason}"
    return None


def _host_input(data: HostInput) -> HostInput:
    """The input cleaned (names lower-cased), or ValidationError naming every bad field."""
    errors: dict[str, str] = {}
    name = data.name.strip().lower().rstrip(".") if isinstance(data.name, str) else ""
    address = data.address.strip() if isinstance(data.address, str) else ""
    message = _address_error(address)
    if message:
        errors["address"] = message
    else:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            address = address.lower().rstrip(".")
    port = data.ssh_port
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errors["ssh_port"] = "A port is a whole number 1 to 65535."
    if not isinstance(data.ssh_user, str) or not _USER.match(data.ssh_user):
        errors["ssh_user"] = (
            "A user name: lower-case letters, digits, '_' and '-', starting with a letter or "
            "'_', at most 32 characters."
        )
    facts = HostFacts(
        name=name,
        hostname=name,
        postfix_config_dir=data.postfix_config_dir,
        dovecot_config_dir=data.dovecot_config_dir,
        opendkim_config_dir=data.opendkim_config_dir,
    )
    for error in validate_host(facts):
        field = "name" if error.field == "hostname" else error.field
        if field in {"name", "postfix_config_dir", "dovecot_config_dir", "opendkim_config_dir"}:
            errors.setdefault(field, error.message)
    if errors:
        raise ValidationError(errors)
    return HostInput(
        name, address, port, data.ssh_user,
        data.postfix_config_dir, data.dovecot_config_dir, data.opendkim_config_dir,
    )  # fmt: skip


def _domains_of(organisation: Organisation, names: Sequence[str]) -> list[Domain]:
    wanted: list[str] = []
    for raw in names:
        try:
            wanted.append(normalise_domain(raw))
        except (InvalidDomainName, TypeError):
            raise ValidationError({"domains": f"{str(raw)[:80]!r} is not a domain name."}) from None
    found = {d.name: d for d in Domain.objects.filter(organisation=organisation, name__in=wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValidationError(
            {"domains": f"Not a domain of {organisation.name}: {', '.join(missing[:5])}."}
        )
    return [found[n] for n in dict.fromkeys(wanted)]


def _policy_of(organisation: Organisation, policy_id: int | None) -> Policy | None:
    if policy_id is None:
        return None
    policy = Policy.objects.filter(organisation=organisation, pk=policy_id).first()
    if policy is None:
        raise ValidationError({"policy": f"No such policy in {organisation.name}."})
    return policy


def _fetch_host_key(address: str, port: int) -> ssh.HostKey:
    """The host's SSH key, or ValidationError saying why it could not be had."""
    try:
        return ssh.fetch_host_key(address, port, timeout=HOST_KEY_TIMEOUT)
    except (ssh.SshError, OSError) as exc:
        raise ValidationError(
            {"address": f"Could not fetch the SSH host key from {address} port {port}: {exc}"}
        ) from None


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("ascii")


def _host_audit(host: Host) -> dict[str, Any]:
    """A host as the audit log keeps it: no key material beyond public fingerprints."""
    return {
        "name": host.name,
        "address": host.address,
        "ssh_port": host.ssh_port,
        "ssh_user": host.ssh_user,
        "postfix_config_dir": host.postfix_config_dir,
        "dovecot_config_dir": host.dovecot_config_dir,
        "opendkim_config_dir": host.opendkim_config_dir,
        "domains": sorted(d.name for d in host.domains.all()),
        "policy": host.policy_id,
        "host_key_fingerprint": host.host_key_fingerprint,
        "host_key_confirmed": host.host_key_confirmed,
    }


def host_register(
    *,
    organisation: Organisation,
    data: HostInput,
    domains: Sequence[str] = (),
    policy_id: int | None = None,
    actor: Actor,
) -> Host:
    """Register a host: its SSH host key fetched once (to be confirmed), mailsec's client key
    generated for it and kept encrypted. A failure anywhere creates nothing."""
    _require_write(actor, organisation)
    clean = _host_input(data)
    served = _domains_of(organisation, domains)
    policy = _policy_of(organisation, policy_id)
    if Host.objects.filter(organisation=organisation, name=clean.name).exists():
        raise ValidationError({"name": f"{organisation.name} already has a host {clean.name}."})
    host_key = _fetch_host_key(clean.address, clean.ssh_port)
    private_pem, public_line = ssh.generate_client_key()
    host = Host(
        organisation=organisation,
        name=clean.name,
        address=clean.address,
        ssh_port=clean.ssh_port,
        ssh_user=clean.ssh_user,
        postfix_config_dir=clean.postfix_config_dir,
        dovecot_config_dir=clean.dovecot_config_dir,
        opendkim_config_dir=clean.opendkim_config_dir,
        policy=policy,
        host_key=host_key.key_line,
        host_key_fingerprint=host_key.fingerprint,
        host_key_confirmed=False,
        ssh_public_key=public_line,
    )
    host.ssh_private_key = secrets.encrypt(_as_bytes(private_pem), context=host.secret_context)
    try:
        with transaction.atomic():
            host.save()
            host.domains.set(served)
            audit_record(
                actor=actor, action="host.register", obj=host, organisation=organisation,
                after=_host_audit(host),
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError(
            {"name": f"{organisation.name} already has a host {clean.name}."}
        ) from None
    return host


def _fingerprint_given(text: object) -> str:
    """The fingerprint typed or pasted: the SHA256: token of `ssh-keygen -lf` output, or the
    text itself (stripped) when it holds none."""
    if not isinstance(text, str):
        return ""
    found = _FINGERPRINT_TOKEN.findall(text)
    return found[0] if len(found) == 1 else text.strip()


@transaction.atomic
def host_confirm_key(*, host: Host, fingerprint: str, actor: Actor) -> Host:
    """Pin the host key fetched at registration once the admin has compared its fingerprint."""
    _require_write(actor, host.organisation)
    locked = Host.objects.select_for_update().get(pk=host.pk)
    given = _fingerprint_given(fingerprint)
    if not locked.host_key_fingerprint:
        raise ValidationError({"fingerprint": "No host key was fetched for this host."})
    if not hmac.compare_digest(given.encode(), locked.host_key_fingerprint.encode()):
        raise ValidationError(
            {
                "fingerprint": (
                    "This is not the fingerprint of the key mailsec fetched. Do not confirm: "
                    "compare again with the output of ssh-keygen -lf on the host; if they differ, "
                    "something between mailsec and the host answered in its place."
                )
            }
        )
    if locked.host_key_confirmed:
        return locked
    locked.host_key_confirmed = True
    locked.host_key_confirmed_at = timezone.now()
    locked.host_key_confirmed_by = actor if getattr(actor, "pk", None) else None  # type: ignore[assignment]
    locked.save(
        update_fields=["host_key_confirmed", "host_key_confirmed_at", "host_key_confirmed_by"]
    )
    audit_record(
        actor=actor, action="host.confirm_key", obj=locked, organisation=locked.organisation,
        after={"host_key_fingerprint": locked.host_key_fingerprint},
    )  # fmt: skip
    return locked


def host_update(
    *,
    host: Host,
    actor: Actor,
    data: HostInput | None = None,
    domains: Sequence[str] | None = None,
    policy_id: int | None = None,
    set_policy: bool = False,
) -> Host:
    """Change a host. A new address or port fetches the host key again and unpins it until
    the admin confirms it; mailsec's client key stays (it is already installed)."""
    organisation = host.organisation
    _require_write(actor, organisation)
    before = _host_audit(host)
    clean = _host_input(data) if data is not None else None
    served = _domains_of(organisation, domains) if domains is not None else None
    policy = _policy_of(organisation, policy_id) if set_policy else host.policy
    new_key = None
    if clean is not None and (clean.address, clean.ssh_port) != (host.address, host.ssh_port):
        new_key = _fetch_host_key(clean.address, clean.ssh_port)
    try:
        with transaction.atomic():
            locked = Host.objects.select_for_update().get(pk=host.pk)
            if clean is not None:
                locked.name, locked.address = clean.name, clean.address
                locked.ssh_port, locked.ssh_user = clean.ssh_port, clean.ssh_user
                locked.postfix_config_dir = clean.postfix_config_dir
                locked.dovecot_config_dir = clean.dovecot_config_dir
                locked.opendkim_config_dir = clean.opendkim_config_dir
            if new_key is not None:
                locked.host_key = new_key.key_line
                locked.host_key_fingerprint = new_key.fingerprint
                locked.host_key_confirmed = False
                locked.host_key_confirmed_at = None
                locked.host_key_confirmed_by = None
            locked.policy = policy
            locked.save()
            if served is not None:
                locked.domains.set(served)
            audit_record(
                actor=actor, action="host.update", obj=locked, organisation=organisation,
                before=before, after=_host_audit(locked),
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError(
            {"name": f"{organisation.name} already has a host of that name."}
        ) from None
    return locked


@transaction.atomic
def host_delete(*, host: Host, actor: Actor) -> None:
    _require_write(actor, host.organisation)
    audit_record(
        actor=actor, action="host.delete", obj=host, organisation=host.organisation,
        before=_host_audit(host),
    )  # fmt: skip
    host.delete()


# --- deployments ----------------------------------------------------------------------------


@transaction.atomic
def deployment_request(*, host_id: int, actor: Actor, system: bool = False) -> Deployment:
    """Queue a deployment of the host's rendered config (202 in the API); join one that is
    still pending or running instead of queueing a second.

    `system=True` is the command line (`manage.py deploy`), acting without a member's role.
    Refused before the host key is confirmed, and without a policy to render.
    """
    host = Host.objects.select_for_update().select_related("organisation").get(pk=host_id)
    if not system:
        _require_write(actor, host.organisation)
    pending = selectors.deployment_pending(host)
    if pending is not None:
        run = selectors.deployment_task_run(pending)
        if run is None or run.state not in FINISHED_TASK_STATES:
            return pending
        # Its task ended (reaped after a crash) without finishing it: nothing will, so it is
        # closed as failed and a new deployment queued rather than joined forever.
        Deployment.objects.filter(
            pk=pending.pk, state__in=selectors.UNFINISHED_DEPLOYMENT_STATES
        ).update(
            state=DeploymentState.FAILED,
            finished_at=timezone.now(),
            log=(pending.log + "\nabandoned: its task ended without finishing it").lstrip(),
        )
    if not host.host_key_confirmed:
        raise ValidationError(
            {
                "host_key": (
                    f"Confirm {host.name}'s SSH host key fingerprint first: mailsec writes "
                    "nothing to a host whose key the admin has not confirmed."
                )
            }
        )
    if host.policy_id is None:
        raise ValidationError({"policy": f"Give {host.name} a policy first."})
    user = actor if getattr(actor, "pk", None) else None
    deployment = Deployment.objects.create(
        host=host,
        requested_by=user,  # type: ignore[misc]
        state=DeploymentState.PENDING,
    )
    run = task_run_create(
        organisation=host.organisation, kind=TaskKind.HOST_DEPLOY, obj=deployment, actor=actor
    )
    task_run_enqueue(run, "hosts.tasks.deploy_host", deployment_id=deployment.pk)
    audit_record(
        actor=actor, action="host.deploy", obj=host, organisation=host.organisation,
        after={"deployment": str(deployment.uid)},
    )  # fmt: skip
    return deployment


# --- live probes ----------------------------------------------------------------------------


class ProbeRateLimited(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


PROBE_MIN_INTERVAL = timedelta(minutes=1)
PROBE_TOTAL_SECONDS = 90.0  # a whole host's probes; each connect gets 5 s at most


@dataclass(frozen=True)
class ProbePorts:
    smtp: int = 25
    submission: int = 587
    smtps: int = 465
    imap: int = 143
    imaps: int = 993
    pop3: int = 110
    pop3s: int = 995


@transaction.atomic
def host_probe_request(*, host: Host, actor: Actor, system: bool = False) -> TaskRun:
    """Queue a probe of the host ("probe now", 202 in the API); join one still queued or
    running. A target is probed at most once a minute on request (ProbeRateLimited)."""
    if not system:
        _require_write(actor, host.organisation)
    Host.objects.select_for_update().filter(pk=host.pk).first()
    pending = selectors.probe_pending(host)
    if pending is not None:
        return pending
    last = selectors.probe_last_requested(host, same_target=True)
    if last is not None and timezone.now() - last < PROBE_MIN_INTERVAL:
        wait = int((PROBE_MIN_INTERVAL - (timezone.now() - last)).total_seconds()) + 1
        raise ProbeRateLimited(
            f"{host.address} was probed less than a minute ago; try again in {wait} s.", wait
        )
    return _probe_queue(host=host, actor=actor)


def _probe_queue(*, host: Host, actor: Actor) -> TaskRun:
    run = task_run_create(
        organisation=host.organisation, kind=TaskKind.HOST_PROBE, obj=host, actor=actor
    )
    task_run_enqueue(run, "hosts.tasks.probe_host", host_id=host.pk)
    if actor is not None:  # a member's "probe now"; beat's scheduled probes are not audited
        audit_record(
            actor=actor, action="host.probe", obj=host, organisation=host.organisation,
            after={"task_run": str(run.id)},
        )  # fmt: skip
    return run


PROBE_HISTORY_KEPT = timedelta(days=90)


def hosts_probe_queue_due(*, now: datetime | None = None) -> int:
    """Beat: queue a probe of every host not probed within MAILSEC_PROBE_INTERVAL_MINUTES, and
    delete results older than 90 days (the newest of each probe is kept whatever its age)."""
    now = now or timezone.now()
    newer = ProbeResult.objects.filter(
        host=OuterRef("host"), name=OuterRef("name"), port=OuterRef("port"),
        probed_at__gt=OuterRef("probed_at"),
    )  # fmt: skip
    ProbeResult.objects.filter(probed_at__lt=now - PROBE_HISTORY_KEPT, host__isnull=False).filter(
        Exists(newer)
    ).delete()
    # A domain's MX probes: everything before its last run is history.
    newer_run = ProbeResult.objects.filter(
        domain=OuterRef("domain"), probed_at__gt=OuterRef("probed_at")
    )
    ProbeResult.objects.filter(probed_at__lt=now - PROBE_HISTORY_KEPT, domain__isnull=False).filter(
        Exists(newer_run)
    ).delete()
    interval = timedelta(minutes=settings.MAILSEC_PROBE_INTERVAL_MINUTES)
    queued = 0
    for host in Host.objects.select_related("organisation"):
        if selectors.probe_pending(host) is not None:
            continue
        last = selectors.probe_last_requested(host)
        if last is not None and now - last < interval:
            continue
        with transaction.atomic():
            _probe_queue(host=host, actor=None)
        queued += 1
    return queued + _domains_mx_probe_queue_due(now=now, interval=interval)


MX_DOMAINS_PER_TICK = 50


def _domains_mx_probe_queue_due(*, now: datetime, interval: timedelta) -> int:
    """Queue MX probes of domains without one within the interval, at most 50 a tick."""
    recent = TaskRun.objects.filter(
        kind=TaskKind.HOST_PROBE, object_type="domain", created_at__gte=now - interval
    ).values_list("object_id", flat=True)
    due = (
        Domain.objects.exclude(pk__in=[int(pk) for pk in recent if pk.isdigit()])
        .select_related("organisation")
        .order_by("pk")[:MX_DOMAINS_PER_TICK]
    )
    queued = 0
    for domain in due:
        with transaction.atomic():
            run = task_run_create(
                organisation=domain.organisation, kind=TaskKind.HOST_PROBE, obj=domain, actor=None
            )
            task_run_enqueue(run, "hosts.tasks.probe_domain_mx", domain_id=domain.pk)
        queued += 1
    return queued


def probe_target(host: Host, resolver: Resolver) -> probe.Target:
    """The one address the probe connects to: the host's address, or its name resolved once.

    Raises probe.ProbeRefused for an address the network guard refuses (no socket opened)."""
    return _resolve_target(host.address.strip(), host.name, resolver)


def _resolve_target(address: str, name: str, resolver: Resolver) -> probe.Target:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        a_lookup, aaaa_lookup = resolver.addresses(address)
        found = list(a_lookup.records) + list(aaaa_lookup.records)
        failed = [x for x in (a_lookup, aaaa_lookup) if x.status == LookupStatus.ERROR]
        if not found and failed:
            reason = failed[0].reason or "lookup failed"
            raise probe.ProbeRefused(f"{address} could not be resolved: {reason}") from None
        if not found:
            raise probe.ProbeRefused(f"{address} has no address") from None
        address = found[0]
    reason = probe.refuse_reason(address)
    if reason:
        raise probe.ProbeRefused(reason)
    return probe.Target(address=address, name=name.lower().rstrip("."))


def _ptr(resolver: Resolver, address: str) -> tuple[list[str] | None, str]:
    answer = resolver.reverse(address)
    if answer.status == LookupStatus.OK:
        return list(answer.records), ""
    if answer.status in (LookupStatus.NXDOMAIN, LookupStatus.NODATA):
        return [], ""
    return None, answer.reason or "lookup failed"


def _tlsa(resolver: Resolver, name: str) -> tuple[list[str] | None, str]:
    answer = resolver.lookup(name, "TLSA")
    if answer.status == LookupStatus.OK:
        return list(answer.records), ""
    if answer.status in (LookupStatus.NXDOMAIN, LookupStatus.NODATA):
        return [], ""
    return None, answer.reason or "lookup failed"


def _probe_smtp_25(
    target: probe.Target, *, resolver: Resolver, ports: ProbePorts, now: datetime,
    budget: probe.Budget, expected_size: int | None, with_size: bool,
) -> list[verdicts.Result]:  # fmt: skip
    """Port 25: STARTTLS, certificate, AUTH, banner vs PTR, SIZE, open relay, DANE."""
    results: list[verdicts.Result] = []
    smtp = probe.probe_smtp(target, ports.smtp, budget, implicit=False)
    results += verdicts.smtp_results(smtp, expected_name=target.name, now=now)
    ptr_names, ptr_error = _ptr(resolver, target.address)
    banner = verdicts.banner_ptr_result(smtp, target.address, ptr_names, ptr_error)
    size = verdicts.size_result(smtp, expected_size) if with_size else None
    results += [r for r in (banner, size) if r is not None]
    if not smtp.error:
        relay = probe.probe_relay(target, ports.smtp, budget, use_tls=smtp.starttls_offered)
        results.append(verdicts.relay_result(relay))
    tlsa_name = f"_{ports.smtp}._tcp.{target.name}"
    records, tlsa_error = _tlsa(resolver, tlsa_name)
    dane = verdicts.dane_result(
        ports.smtp, tlsa_name, records, tlsa_error, smtp.tls, expected_name=target.name
    )
    if dane is not None:
        results.append(dane)
    return results


def probe_observe(
    host: Host, *, resolver: Resolver, ports: ProbePorts, now: datetime,
    total_seconds: float = PROBE_TOTAL_SECONDS,
) -> tuple[str, list[verdicts.Result]]:  # fmt: skip
    """Probe every service of the host; (address probed, results). No database writes."""
    try:
        target = probe_target(host, resolver)
    except probe.ProbeRefused as exc:
        return "", [verdicts.Result("probe_target", 0, verdicts.ERROR,
                                    f"Not probed: {exc}", {"refused": str(exc)})]  # fmt: skip
    budget = probe.Budget.seconds(total_seconds)
    expected_size = None
    if host.policy_id is not None:
        expected_size = selectors.policy_values(host.policy).message_size_limit  # type: ignore[arg-type]
    results = _probe_smtp_25(target, resolver=resolver, ports=ports, now=now, budget=budget,
                             expected_size=expected_size, with_size=True)  # fmt: skip
    submission = probe.probe_smtp(target, ports.submission, budget, implicit=False)
    if "Connection refused" not in submission.error:
        results += verdicts.smtp_results(submission, expected_name=target.name, now=now)
    if probe.listening(target.address, ports.smtps, budget):
        smtps = probe.probe_smtp(target, ports.smtps, budget, implicit=True)
        results += verdicts.smtp_results(smtps, expected_name=target.name, now=now)
    for proto, port, implicit in (
        ("imap", ports.imap, False), ("imap", ports.imaps, True),
        ("pop3", ports.pop3, False), ("pop3", ports.pop3s, True),
    ):  # fmt: skip
        seen = probe.probe_mailbox(proto, target, port, budget, implicit=implicit)
        if seen is not None:
            results += verdicts.mailbox_results(seen, expected_name=target.name, now=now)
    return target.address, results


def host_probe_run(
    host_id: int, *, resolver: Resolver | None = None, ports: ProbePorts | None = None,
    total_seconds: float = PROBE_TOTAL_SECONDS,
) -> dict[str, Any]:  # fmt: skip
    """Probe the host now and record the results (history), with a HostEvent(kind="probe")
    for each (name, port) whose status changed. Returns the results in the check shape."""
    host = Host.objects.select_related("policy", "organisation").get(pk=host_id)
    now = timezone.now()
    address, results = probe_observe(
        host, resolver=resolver or Resolver(), ports=ports or ProbePorts(), now=now,
        total_seconds=total_seconds,
    )  # fmt: skip
    previous = {(r.name, r.port): r.status for r in selectors.probe_results_current(host)}
    rows = [
        ProbeResult(
            host=host,
            name=r.name,
            address=address,
            port=r.port,
            status=r.status,
            summary=r.summary[:500],
            details=r.details,
            probed_at=now,
        )
        for r in results
    ]
    with transaction.atomic():
        ProbeResult.objects.bulk_create(rows)
        for row in rows:
            before = previous.get((row.name, row.port))
            # A change of status; a probe's first result only when it is not ok.
            if before != row.status and (before is not None or row.status != "ok"):
                HostEvent.objects.create(
                    host=host, kind="probe",
                    summary=f"{row.name} port {row.port}: {before or 'new'} -> {row.status}: "
                    f"{row.summary}"[:500],
                    details={"name": row.name, "port": row.port, "from": before,
                             "to": row.status, "address": address},
                )  # fmt: skip
    return {
        "host": host.name,
        "address": address,
        "results": [selectors.probe_result_shape(row) for row in rows],
    }


# --- a domain's MX targets that are no managed host -----------------------------------------

MX_TARGETS_MAX = 5
MX_PROBE_SECONDS = 60.0


def domain_mx_targets(domain: Domain, resolver: Resolver) -> tuple[list[str], str]:
    """The domain's MX names (by preference; at most 5) that are no managed host of its
    organisation (those are probed as hosts), and an error when the MX lookup failed."""
    answer = resolver.lookup(domain.name, "MX")
    if answer.status in (LookupStatus.NXDOMAIN, LookupStatus.NODATA):
        return [], ""
    if answer.status != LookupStatus.OK:
        return [], answer.reason or "lookup failed"
    managed = {
        name.lower().rstrip(".")
        for name in Host.objects.filter(organisation_id=domain.organisation_id).values_list(
            "name", flat=True
        )
    }
    ordered = []
    for record in answer.records:
        preference, _, exchange = record.partition(" ")
        if preference.isdigit() and exchange and exchange != ".":
            ordered.append((int(preference), exchange.lower().rstrip(".")))
    names: list[str] = []
    for _preference, exchange in sorted(ordered):
        if exchange not in managed and exchange not in names:
            names.append(exchange)
    return names[:MX_TARGETS_MAX], ""


@transaction.atomic
def domain_mx_probe_request(*, domain: Domain, actor: Actor) -> TaskRun:
    """Queue a probe of the domain's MX targets (202); join one queued; once a minute."""
    _require_write(actor, domain.organisation)
    Domain.objects.select_for_update().filter(pk=domain.pk).first()
    pending = selectors.mx_probe_pending(domain)
    if pending is not None:
        return pending
    last = selectors.mx_probe_last_requested(domain)
    if last is not None and timezone.now() - last < PROBE_MIN_INTERVAL:
        wait = int((PROBE_MIN_INTERVAL - (timezone.now() - last)).total_seconds()) + 1
        raise ProbeRateLimited(
            f"{domain.name}'s MX targets were probed less than a minute ago; try again in "
            f"{wait} s.",
            wait,
        )
    run = task_run_create(
        organisation=domain.organisation, kind=TaskKind.HOST_PROBE, obj=domain, actor=actor
    )
    task_run_enqueue(run, "hosts.tasks.probe_domain_mx", domain_id=domain.pk)
    audit_record(
        actor=actor, action="domain.mx_probe", obj=domain, organisation=domain.organisation,
        after={"task_run": str(run.id)},
    )  # fmt: skip
    return run


def domain_mx_probe_run(
    domain_id: int, *, resolver: Resolver | None = None, ports: ProbePorts | None = None,
    total_seconds: float = MX_PROBE_SECONDS,
) -> dict[str, Any]:  # fmt: skip
    """Probe port 25 of each MX target of the domain that is no managed host (STARTTLS,
    certificate for the MX name, AUTH, banner vs PTR, open relay, DANE) and record the results."""
    domain = Domain.objects.select_related("organisation").get(pk=domain_id)
    resolver = resolver or Resolver()
    ports = ports or ProbePorts()
    now = timezone.now()
    names, error = domain_mx_targets(domain, resolver)
    rows: list[ProbeResult] = []
    if error:
        rows.append(ProbeResult(
            domain=domain, target=domain.name, name="mx_targets", address="", port=0,
            status=verdicts.ERROR, summary=f"The MX lookup failed: {error}"[:500],
            details={"error": error}, probed_at=now,
        ))  # fmt: skip
    budget = probe.Budget.seconds(total_seconds)
    for name in names:
        try:
            target = _resolve_target(name, name, resolver)
        except probe.ProbeRefused as exc:
            rows.append(ProbeResult(
                domain=domain, target=name, name="probe_target", address="", port=0,
                status=verdicts.ERROR, summary=f"Not probed: {exc}"[:500],
                details={"refused": str(exc)}, probed_at=now,
            ))  # fmt: skip
            continue
        found = _probe_smtp_25(target, resolver=resolver, ports=ports, now=now, budget=budget,
                               expected_size=None, with_size=False)  # fmt: skip
        rows += [
            ProbeResult(
                domain=domain,
                target=name,
                name=r.name,
                address=target.address,
                port=r.port,
                status=r.status,
                summary=r.summary[:500],
                details=r.details,
                probed_at=now,
            )
            for r in found
        ]
    if not rows:
        # Recorded, so the last run's results (none) replace an earlier run's.
        rows.append(ProbeResult(
            domain=domain, target=domain.name, name="mx_targets", address="", port=0,
            status=verdicts.OK, summary="No MX target besides the managed hosts to probe",
            details={}, probed_at=now,
        ))  # fmt: skip
    ProbeResult.objects.bulk_create(rows)
    return {
        "domain": domain.name,
        "targets": names,
        "results": [{**selectors.probe_result_shape(row), "target": row.target} for row in rows],
    }
