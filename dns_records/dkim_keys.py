"""DKIM keys: generate (in the worker), publish (by hand or RFC 2136), advance through their
states by what DNS shows and by time, rotate with overlap, retire. Every change is audited,
never with key material.

States: generating -> pending (record not yet seen) -> published (record in DNS, equal to the
stored key) -> active (hosts sign with it) -> retiring (a successor is active; the record stays
for the grace period so mail in flight still verifies) -> retired (the record may go). A key is
made active only in the same step that has just seen its record published, and only after the
record has been visible for MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES (negative answers cached by
receivers expire first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from dns_records import dkim
from dns_records.dkim_verify import sign_and_verify
from dns_records.lookups import Lookup
from dns_records.models import (
    DkimKey,
    DkimKeyState,
    DkimSelector,
    DnsUpdateTarget,
    Domain,
)
from dns_records.opendkim import RenderedFile, SigningKey, render_opendkim
from dns_records.resolver import Resolver, TsigKey, send_update
from dns_records.results import visible_text
from dns_records.web import address_allowed
from dns_records.zonefile import quote_txt
from mailsec import secrets
from mailsec.env import parse_nameserver
from mailsec.jobs import task_run_create, task_run_enqueue
from mailsec.models import TaskKind, TaskRun
from mailsec.selectors import can_write
from mailsec.services.audit import Actor, audit_record

logger = logging.getLogger(__name__)


def _require_write(actor: Actor, domain: Domain) -> None:
    if actor is None:
        return  # the system: beat's rotation, the operator's command line
    if not can_write(actor, domain.organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def _audit(actor: Actor, action: str, key: DkimKey, **after: Any) -> None:
    audit_record(
        actor=actor,
        action=action,
        obj=key,
        organisation=key.domain.organisation,
        after={"domain": key.domain.name, "selector": key.selector, "state": key.state, **after},
    )


# --- creating and generating -----------------------------------------------------------------


def _selector_for(domain: Domain, algorithm: dkim.DkimAlgorithm, selector: str) -> str:
    taken = set(DkimKey.objects.filter(domain=domain).values_list("selector", flat=True))
    taken |= set(DkimSelector.objects.filter(domain=domain).values_list("selector", flat=True))
    if not selector:
        return dkim.dated_selector(timezone.now(), algorithm, taken)
    try:
        chosen = dkim.validate_selector(selector)
    except ValueError as exc:
        raise ValidationError({"selector": str(exc)}) from None
    if chosen in taken:
        raise ValidationError({"selector": f"{chosen} is already used for {domain.name}."})
    return chosen


def dkim_key_create(
    *,
    domain: Domain,
    actor: Actor,
    algorithm: str = "rsa",
    selector: str = "",
    bits: int | None = None,
    predecessor: DkimKey | None = None,
) -> tuple[DkimKey, TaskRun]:
    """Reserve the selector and queue the key's generation; answers the API's 202."""
    _require_write(actor, domain)
    try:
        chosen_algorithm = dkim.DkimAlgorithm(algorithm)
    except ValueError:
        raise ValidationError({"algorithm": "Choose rsa or ed25519."}) from None
    if chosen_algorithm is dkim.DkimAlgorithm.RSA:
        bits = bits or 2048
        if bits not in dkim.RSA_SIZES:
            raise ValidationError(
                {"bits": f"RSA keys are {', '.join(map(str, dkim.RSA_SIZES))} bits."}
            )
    elif bits is not None:
        raise ValidationError({"bits": "Ed25519 keys have no size to choose."})
    try:
        with transaction.atomic():
            Domain.objects.select_for_update().filter(pk=domain.pk).first()
            key = DkimKey.objects.create(
                domain=domain,
                selector=_selector_for(domain, chosen_algorithm, selector),
                algorithm=chosen_algorithm,
                bits=bits,
                predecessor=predecessor,
            )
            _audit(actor, "dkim_key.create", key, algorithm=str(chosen_algorithm), bits=bits)
            run = task_run_create(
                organisation=domain.organisation, kind=TaskKind.DKIM_GENERATE, obj=key, actor=actor
            )
            task_run_enqueue(run, "dns_records.tasks.generate_dkim_key", key_id=key.pk)
    except IntegrityError:
        raise ValidationError(
            {"selector": "That selector was taken meanwhile; try again."}
        ) from None
    return key, run


def dkim_key_generate(*, key_id: int) -> dict[str, Any]:
    """The worker's half of creation: make the key pair, store the private half encrypted."""
    key = DkimKey.objects.select_related("domain").filter(pk=key_id).first()
    if key is None:
        return {"key": None, "skipped": "the key was deleted before it was generated"}
    if key.state != DkimKeyState.GENERATING:
        return {"key": key.pk, "skipped": f"already {key.state}"}
    generated = dkim.generate_key(dkim.DkimAlgorithm(key.algorithm), key.bits)
    token = secrets.encrypt(generated.private_pem, context=key.secret_context)
    with transaction.atomic():
        updated = DkimKey.objects.filter(pk=key.pk, state=DkimKeyState.GENERATING).update(
            public_key=generated.public_b64, private_key=token, state=DkimKeyState.PENDING
        )
        if updated:
            key.refresh_from_db()
            _audit(None, "dkim_key.generate", key)
    if updated:
        dkim_key_publish(key=key)
    key.refresh_from_db()
    return {"key": key.pk, "dns_name": key.dns_name, "dns_value": key.dns_value}


# --- publishing by RFC 2136 ------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateOutcome:
    sent: bool
    error: str = ""


def _send(target: DnsUpdateTarget, **changes: Any) -> UpdateOutcome:
    try:
        server = parse_nameserver(target.server)
    except ValueError as exc:
        return UpdateOutcome(False, str(exc))
    if not address_allowed(server.address):
        return UpdateOutcome(
            False,
            f"{server.address} is outside the networks mailsec may reach "
            "(MAILSEC_PROBE_ALLOW_NETWORKS)",
        )
    key = TsigKey(
        target.tsig_name,
        target.tsig_algorithm,
        secrets.decrypt(target.tsig_secret, context=target.secret_context),
    )
    error = send_update(server, target.zone, key, **changes)
    DnsUpdateTarget.objects.filter(pk=target.pk).update(
        last_update_at=timezone.now(), last_error=error[:500]
    )
    return UpdateOutcome(not error, error)


def dkim_key_publish(*, key: DkimKey) -> UpdateOutcome:
    """Add the key's record through the domain's RFC 2136 server, when it has one."""
    target = DnsUpdateTarget.objects.filter(domain_id=key.domain_id).first()
    if target is None or not key.public_key:
        return UpdateOutcome(False)
    outcome = _send(target, replace={key.dns_name: [quote_txt(key.dns_value)]})
    if outcome.error:
        logger.warning("publishing %s failed: %s", key.dns_name, outcome.error)
    return outcome


def _unpublish(key: DkimKey) -> UpdateOutcome:
    target = DnsUpdateTarget.objects.filter(domain_id=key.domain_id).first()
    if target is None:
        return UpdateOutcome(False)
    return _send(target, delete=[key.dns_name])


@transaction.atomic
def dns_update_set(
    *,
    domain: Domain,
    server: str,
    zone: str,
    tsig_name: str,
    tsig_algorithm: str,
    tsig_secret: bytes,
    actor: Actor,
) -> DnsUpdateTarget:
    """Let mailsec publish the domain's DKIM records itself; the TSIG secret is kept encrypted."""
    _require_write(actor, domain)
    try:
        parse_nameserver(server)
    except ValueError as exc:
        raise ValidationError({"server": str(exc)}) from None
    target = DnsUpdateTarget.objects.filter(domain=domain).first() or DnsUpdateTarget(domain=domain)
    target.server, target.zone = server.strip(), zone.strip().rstrip(".").lower()
    target.tsig_name, target.tsig_algorithm = tsig_name.strip().rstrip("."), tsig_algorithm
    target.tsig_secret = secrets.encrypt(tsig_secret, context=target.secret_context)
    target.full_clean(exclude=["domain"])
    target.save()
    audit_record(
        actor=actor, action="dns_update.set", obj=target, organisation=domain.organisation,
        after={"server": target.server, "zone": target.zone, "tsig_name": target.tsig_name,
               "tsig_algorithm": target.tsig_algorithm},
    )  # fmt: skip
    return target


@transaction.atomic
def dns_update_remove(*, domain: Domain, actor: Actor) -> None:
    _require_write(actor, domain)
    target = DnsUpdateTarget.objects.filter(domain=domain).first()
    if target is not None:
        audit_record(
            actor=actor, action="dns_update.remove", obj=target,
            organisation=domain.organisation, before={"server": target.server, "zone": target.zone},
        )  # fmt: skip
        target.delete()


# --- rotation and retirement -----------------------------------------------------------------


def dkim_key_rotate(*, key: DkimKey, actor: Actor) -> tuple[DkimKey, TaskRun]:
    """Create the successor (same algorithm and size); the state machine does the rest."""
    _require_write(actor, key.domain)
    if key.state not in {DkimKeyState.ACTIVE, DkimKeyState.PUBLISHED}:
        raise ValidationError(
            f"Only an active or published key can be rotated, not a {key.state} one."
        )
    successor = DkimKey.objects.filter(predecessor=key).first()
    if successor is not None:
        raise ValidationError(f"{key.selector} is already being replaced by {successor.selector}.")
    return dkim_key_create(
        domain=key.domain, algorithm=key.algorithm, bits=key.bits, actor=actor, predecessor=key
    )


@transaction.atomic
def dkim_key_retire(*, key: DkimKey, actor: Actor) -> DkimKey:
    """Stop using a key: an active one keeps its record for the grace period first."""
    _require_write(actor, key.domain)
    now = timezone.now()
    if key.state == DkimKeyState.ACTIVE:
        new_state, stamp = DkimKeyState.RETIRING, {"retiring_at": now}
    elif key.state in {DkimKeyState.RETIRING, DkimKeyState.RETIRED}:
        raise ValidationError(f"{key.selector} is already {key.state}.")
    else:  # never signed anything: its record can go at once
        new_state, stamp = DkimKeyState.RETIRED, {"retired_at": now}
    if not DkimKey.objects.filter(pk=key.pk, state=key.state).update(state=new_state, **stamp):
        raise ValidationError(f"{key.selector} changed meanwhile; reload and try again.")
    key.refresh_from_db()
    _audit(actor, "dkim_key.retire", key)
    return key


@transaction.atomic
def dkim_selector_add(*, domain: Domain, selector: str, note: str, actor: Actor) -> DkimSelector:
    """Watch a selector another sender uses for the domain."""
    _require_write(actor, domain)
    try:
        chosen = dkim.validate_selector(selector)
    except ValueError as exc:
        raise ValidationError({"selector": str(exc)}) from None
    if DkimKey.objects.filter(domain=domain, selector=chosen).exists():
        raise ValidationError({"selector": f"{chosen} is one of mailsec's own keys."})
    watched, created = DkimSelector.objects.get_or_create(
        domain=domain, selector=chosen, defaults={"note": note[:100]}
    )
    if not created:
        raise ValidationError({"selector": f"{chosen} is already watched."})
    audit_record(
        actor=actor, action="dkim_selector.add", obj=watched, organisation=domain.organisation,
        after={"domain": domain.name, "selector": chosen, "note": watched.note},
    )  # fmt: skip
    return watched


@transaction.atomic
def dkim_selector_remove(*, watched: DkimSelector, actor: Actor) -> None:
    _require_write(actor, watched.domain)
    audit_record(
        actor=actor, action="dkim_selector.remove", obj=watched,
        organisation=watched.domain.organisation,
        before={"domain": watched.domain.name, "selector": watched.selector},
    )  # fmt: skip
    watched.delete()


# --- the state machine -------------------------------------------------------------------------


def _published(key: DkimKey, resolver: Resolver) -> Lookup | None:
    """The key's record lookup when it shows exactly the stored key, else None."""
    lookup = resolver.lookup(key.dns_name, "TXT")
    if not lookup.ok:
        return None
    for text in lookup.records:
        try:
            record = dkim.parse_dkim_record(text)
        except dkim.DkimRecordError:
            continue
        if not record.revoked and dkim.public_keys_equal(record.public_b64, key.public_key):
            return lookup
    return None


def _move(key: DkimKey, old: str, new: str, actor: Actor = None, **stamps: datetime) -> bool:
    """Change the state only if nobody else did first (two beats, a person and beat)."""
    if not DkimKey.objects.filter(pk=key.pk, state=old).update(state=new, **stamps):
        return False
    key.state = new
    for field, value in stamps.items():
        setattr(key, field, value)
    _audit(actor, f"dkim_key.{new}", key)
    return True


def activate_after() -> timedelta:
    return timedelta(minutes=settings.MAILSEC_DKIM_ACTIVATE_AFTER_MINUTES)


def grace_period() -> timedelta:
    return timedelta(days=settings.MAILSEC_DKIM_GRACE_DAYS)


def dkim_keys_advance(*, now: datetime, resolver: Resolver | None = None) -> dict[str, int]:
    """One step of every key's life, by what DNS shows now and by the clock.

    Beat runs it every few minutes; tests run it with the clock moved on. Returns how many keys
    took each transition.
    """
    resolver = resolver or Resolver()
    moved = {"published": 0, "active": 0, "retiring": 0, "retired": 0, "rotated": 0}
    keys = DkimKey.objects.select_related("domain", "domain__organisation")
    for key in keys.filter(state=DkimKeyState.PENDING).exclude(public_key=""):
        if not _published(key, resolver):
            dkim_key_publish(key=key)  # again, if the domain has an RFC 2136 server
        elif _move(key, DkimKeyState.PENDING, DkimKeyState.PUBLISHED, published_at=now):
            moved["published"] += 1
    for key in keys.filter(state=DkimKeyState.PUBLISHED, published_at__lte=now - activate_after()):
        moved["active"] += _activate(key, now, resolver, moved)
    for key in keys.filter(state=DkimKeyState.RETIRING, retiring_at__lte=now - grace_period()):
        if _move(key, DkimKeyState.RETIRING, DkimKeyState.RETIRED, retired_at=now):
            moved["retired"] += 1
    # Retired records go from DNS by themselves where mailsec may update the zone.
    for key in keys.filter(
        state=DkimKeyState.RETIRED, record_removed_at__isnull=True, domain__dns_update__isnull=False
    ):
        if _unpublish(key).sent:
            DkimKey.objects.filter(pk=key.pk).update(record_removed_at=now)
    for key in keys.filter(
        state=DkimKeyState.ACTIVE, domain__dkim_rotation_days__isnull=False, successor__isnull=True
    ):
        days = key.domain.dkim_rotation_days or 0
        if key.activated_at and key.activated_at <= now - timedelta(days=days):
            try:
                dkim_key_rotate(key=key, actor=None)
            except ValidationError:
                continue
            moved["rotated"] += 1
    return moved


def _activate(key: DkimKey, now: datetime, resolver: Resolver, moved: dict[str, int]) -> int:
    """Make a published key active, and its predecessor retiring, if its record is still there.

    A key with no predecessor becomes active only when its domain has no active key of its
    algorithm (the first key, or a second algorithm for dual signing); otherwise it waits to be
    someone's successor.
    """
    predecessor = key.predecessor
    if predecessor is None or predecessor.state != DkimKeyState.ACTIVE:
        active = DkimKey.objects.filter(
            domain_id=key.domain_id, algorithm=key.algorithm, state=DkimKeyState.ACTIVE
        )
        if predecessor is None and active.exists():
            return 0
        predecessor = None
    if not _published(key, resolver):
        return 0  # the record went away since it was seen: never activate without it
    with transaction.atomic():
        if not _move(key, DkimKeyState.PUBLISHED, DkimKeyState.ACTIVE, activated_at=now):
            return 0
        if predecessor is not None and _move(
            predecessor, DkimKeyState.ACTIVE, DkimKeyState.RETIRING, retiring_at=now
        ):
            moved["retiring"] += 1
    transaction.on_commit(lambda: dkim_key_verify_signing(key_id=key.pk, resolver=resolver))
    return 1


def dkim_key_verify_signing(*, key_id: int, resolver: Resolver | None = None) -> bool | None:
    """Sign a test message with the key and verify it against DNS; stored on the key.

    True or False when verification ran; None when a lookup failed (mailsec could not tell).
    """
    key = DkimKey.objects.select_related("domain").filter(pk=key_id).first()
    if key is None or not key.private_key:
        return None
    pem = secrets.decrypt(key.private_key, context=key.secret_context)
    proof = sign_and_verify(
        key.domain.name, key.selector, pem, key.algorithm, resolver=resolver or Resolver()
    )
    verified = None if proof.unknown else proof.ok
    DkimKey.objects.filter(pk=key.pk).update(
        signing_checked_at=timezone.now(),
        signing_verified=verified,
        # The error may quote DNS text a stranger wrote: stored with its controls made visible.
        signing_error=visible_text(proof.error)[:500],
    )
    return verified


def dkim_signing_due(*, now: datetime) -> list[int]:
    """Active keys whose signing proof is older than the check interval (or never made)."""
    stale = now - timedelta(minutes=settings.MAILSEC_CHECK_INTERVAL_MINUTES)
    return list(
        DkimKey.objects.filter(state=DkimKeyState.ACTIVE)
        .filter(Q(signing_checked_at__isnull=True) | Q(signing_checked_at__lt=stale))
        .values_list("pk", flat=True)
    )


# --- output for hosts ------------------------------------------------------------------------


def opendkim_files(
    *, domain_ids: list[int], key_dir: str = "/etc/opendkim/keys"
) -> list[RenderedFile]:
    """OpenDKIM's KeyTable, SigningTable and key files for the active keys of these domains:
    what a deployment writes to a host that signs for them (the managed-hosts app pushes it)."""
    keys = DkimKey.objects.filter(domain_id__in=domain_ids, state=DkimKeyState.ACTIVE)
    signing = [
        SigningKey(
            domain=key.domain.name,
            selector=key.selector,
            algorithm=key.algorithm,
            private_pem=secrets.decrypt(key.private_key, context=key.secret_context),
        )
        for key in keys.select_related("domain").order_by("domain__name", "selector")
    ]
    return render_opendkim(signing, key_dir=key_dir)
