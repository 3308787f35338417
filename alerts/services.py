"""Changes to channels, rules and alert states: checked, audited, in one transaction each."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from alerts import policy, render
from alerts.models import (
    AlertRule,
    AlertState,
    Channel,
    ChannelKind,
    DigestSettings,
    MinStatus,
    Notification,
)
from mailsec import secrets
from mailsec.models import Organisation
from mailsec.selectors import can_write
from mailsec.services.audit import Actor, audit_record

MAX_CHANNELS = 50
MAX_RULES = 100
EVENT_KINDS = ("check", "blocklist", "dkim", "drift", "deploy", "probe")


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise PermissionDenied("Sign in to change alerts.")
    if not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def validate_target(kind: str, target: str) -> str:
    target = target.strip()
    if kind not in ChannelKind.values:
        raise ValidationError({"kind": f"One of {', '.join(ChannelKind.values)}."})
    if not target or len(target) > 500:
        raise ValidationError({"target": "Give a target of at most 500 characters."})
    if kind == ChannelKind.EMAIL:
        try:
            validate_email(target)
        except ValidationError:
            raise ValidationError({"target": "Not an email address."}) from None
        return target
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValidationError({"target": "Not a URL."}) from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValidationError({"target": "An https:// URL with a host."})
    if parts.username or parts.password:
        raise ValidationError({"target": "No credentials in the URL."})
    if not all(" " < ch < "\x7f" for ch in target):
        raise ValidationError({"target": "The URL holds spaces or non-ASCII characters."})
    return target


def channel_create(
    *, organisation: Organisation, kind: str, name: str, target: str, actor: Actor
) -> tuple[Channel, str]:
    """The channel and, for a webhook, its secret in clear (shown once, stored encrypted)."""
    _require_write(actor, organisation)
    target = validate_target(kind, target)
    name = " ".join(name.split())[:100]
    if not name:
        raise ValidationError({"name": "Give the channel a name."})
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
        if Channel.objects.filter(organisation=organisation).count() >= MAX_CHANNELS:
            raise ValidationError({"name": f"At most {MAX_CHANNELS} channels."})
        channel = Channel(organisation=organisation, kind=kind, name=name, target=target)
        secret = ""
        if kind == ChannelKind.WEBHOOK:
            secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
            channel.secret = secrets.encrypt(secret.encode(), context=channel.secret_context)
        channel.save()
        audit_record(
            actor=actor, action="alerts.channel.create", obj=channel, organisation=organisation,
            after={"kind": kind, "name": name, "target": target},
        )  # fmt: skip
    return channel, secret


def channel_delete(*, channel: Channel, actor: Actor) -> None:
    _require_write(actor, channel.organisation)
    with transaction.atomic():
        audit_record(
            actor=actor, action="alerts.channel.delete", obj=channel,
            organisation=channel.organisation,
            before={"kind": channel.kind, "name": channel.name, "target": channel.target},
        )  # fmt: skip
        channel.delete()


def channel_enable(*, channel: Channel, actor: Actor) -> Channel:
    _require_write(actor, channel.organisation)
    with transaction.atomic():
        Channel.objects.filter(pk=channel.pk).update(disabled_at=None, consecutive_failures=0)
        channel.refresh_from_db()
        audit_record(
            actor=actor, action="alerts.channel.enable", obj=channel,
            organisation=channel.organisation, after={"enabled": True},
        )  # fmt: skip
    return channel


def channel_test(*, channel: Channel, actor: Actor) -> Notification:
    """Queue a test message through the channel (delivered by the worker)."""
    from alerts.tasks import deliver_notification

    _require_write(actor, channel.organisation)
    msg = render.test_message(channel.organisation.name, channel.name)
    with transaction.atomic():
        notification = Notification.objects.create(
            channel=channel, subject=msg.subject, body=msg.body,
            payload=render.webhook_payload(msg),
        )  # fmt: skip
        audit_record(
            actor=actor, action="alerts.channel.test", obj=channel,
            organisation=channel.organisation, after={"notification": notification.pk},
        )  # fmt: skip
        transaction.on_commit(lambda: deliver_notification.delay(notification.pk))
    return notification


def rule_create(
    *,
    organisation: Organisation,
    channels: Sequence[int],
    min_status: str,
    events: Sequence[str] = (),
    domains: Sequence[str] = (),
    hosts: Sequence[str] = (),
    actor: Actor,
) -> AlertRule:
    _require_write(actor, organisation)
    if min_status not in MinStatus.values:
        raise ValidationError({"min_status": "warning or fail."})
    unknown = sorted(set(events) - set(EVENT_KINDS))
    if unknown:
        raise ValidationError(
            {"events": f"Unknown: {', '.join(unknown)}; one of {', '.join(EVENT_KINDS)}."}
        )
    ids = sorted(set(channels))
    found = list(Channel.objects.filter(organisation=organisation, pk__in=ids))
    if not ids or len(found) != len(ids):
        raise ValidationError({"channels": "Name one or more channels of this organisation."})
    clean_domains = sorted({d.strip().lower().rstrip(".") for d in domains if d.strip()})
    clean_hosts = sorted({h.strip().lower().rstrip(".") for h in hosts if h.strip()})
    if any(len(d) > 253 for d in clean_domains + clean_hosts) or len(clean_domains) > 500:
        raise ValidationError({"domains": "Names of at most 253 characters, 500 at most."})
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
        if AlertRule.objects.filter(organisation=organisation).count() >= MAX_RULES:
            raise ValidationError({"channels": f"At most {MAX_RULES} rules."})
        rule = AlertRule.objects.create(
            organisation=organisation, min_status=min_status, events=sorted(set(events)),
            domains=clean_domains, hosts=clean_hosts,
        )  # fmt: skip
        rule.channels.set(found)
        audit_record(
            actor=actor, action="alerts.rule.create", obj=rule, organisation=organisation,
            after={"channels": ids, "min_status": min_status, "events": rule.events,
                   "domains": clean_domains, "hosts": clean_hosts},
        )  # fmt: skip
    return rule


def rule_delete(*, rule: AlertRule, actor: Actor) -> None:
    _require_write(actor, rule.organisation)
    with transaction.atomic():
        audit_record(
            actor=actor, action="alerts.rule.delete", obj=rule, organisation=rule.organisation,
            before={"min_status": rule.min_status, "events": rule.events},
        )  # fmt: skip
        rule.delete()


def state_acknowledge(*, state: AlertState, actor: Actor) -> AlertState:
    _require_write(actor, state.organisation)
    if state.status == policy.OK:
        raise ValidationError({"state": "Only a problem can be acknowledged."})
    with transaction.atomic():
        row = AlertState.objects.select_for_update().get(pk=state.pk)
        row.acknowledged_at = timezone.now()
        row.save(update_fields=["acknowledged_at", "updated_at"])
        audit_record(
            actor=actor, action="alerts.state.acknowledge", obj=row,
            organisation=row.organisation, after={"key": row.key, "status": row.status},
        )  # fmt: skip
    return row


def state_snooze(*, state: AlertState, until: datetime, actor: Actor) -> AlertState:
    _require_write(actor, state.organisation)
    now = timezone.now()
    if until <= now:
        raise ValidationError({"until": "The snooze must end in the future."})
    if (until - now).days > 90:
        raise ValidationError({"until": "At most 90 days."})
    with transaction.atomic():
        row = AlertState.objects.select_for_update().get(pk=state.pk)
        row.snoozed_until = until
        row.save(update_fields=["snoozed_until", "updated_at"])
        audit_record(
            actor=actor, action="alerts.state.snooze", obj=row,
            organisation=row.organisation, after={"key": row.key, "until": until.isoformat()},
        )  # fmt: skip
    return row


def digest_set(*, organisation: Organisation, frequency: str, actor: Actor) -> DigestSettings:
    """How often the owners get the digest: off, daily or weekly."""
    _require_write(actor, organisation)
    if frequency not in {"off", "daily", "weekly"}:
        raise ValidationError({"frequency": "off, daily or weekly."})
    with transaction.atomic():
        row, _ = DigestSettings.objects.select_for_update().get_or_create(organisation=organisation)
        before = row.frequency
        row.frequency = frequency
        row.save(update_fields=["frequency"])
        audit_record(
            actor=actor, action="alerts.digest.set", obj=row, organisation=organisation,
            before={"frequency": before}, after={"frequency": frequency},
        )  # fmt: skip
    return row
