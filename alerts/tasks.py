"""Celery tasks of alerts: the minute's evaluation, delivery with retries, digests."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from alerts import engine, render
from alerts.models import Channel, Notification, NotificationState
from alerts.policy import Change
from alerts.transports import PermanentError, TransientError, send_mail, transport_for

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
DISABLE_AFTER = 3  # permanent failures in a row
BACKOFF = (30, 120, 600, 1800)
LEASE = timedelta(minutes=2)  # longer than one attempt's time limit


@shared_task(soft_time_limit=50, time_limit=60)
def evaluate_alerts() -> int:
    return engine.evaluate()


@shared_task(bind=True, max_retries=MAX_ATTEMPTS - 1, soft_time_limit=60, time_limit=90)
def deliver_notification(self: Task, notification_id: int) -> str:  # type: ignore[type-arg]
    notification = (
        Notification.objects.select_related("channel", "channel__organisation")
        .filter(pk=notification_id)
        .first()
    )
    if notification is None or notification.state != NotificationState.PENDING:
        return "skipped"
    channel = notification.channel
    if channel.disabled_at is not None:
        Notification.objects.filter(pk=notification.pk).update(
            state=NotificationState.FAILED, error="channel disabled"
        )
        return "disabled"
    msg = render.Message(
        notification.subject, notification.body,
        tuple(Change(**c) for c in notification.payload.get("changes", [])),
        channel.organisation.name, notification.payload.get("link", ""),
    )  # fmt: skip
    # A lease: a redelivered or duplicated task does not send the same message twice at once.
    now = timezone.now()
    claimed = (
        Notification.objects.filter(pk=notification.pk, state=NotificationState.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - LEASE))
        .update(claimed_at=now, attempts=F("attempts") + 1)
    )
    if not claimed:
        return "busy"
    try:
        transport_for(channel).send(msg)
    except TransientError as exc:
        record_failure(channel, str(exc), permanent=False)
        retries = self.request.retries
        if retries + 1 >= MAX_ATTEMPTS:
            _fail(notification, str(exc))
            return "failed"
        Notification.objects.filter(pk=notification.pk).update(
            error=str(exc)[:500], claimed_at=None
        )
        raise self.retry(countdown=BACKOFF[min(retries, len(BACKOFF) - 1)]) from None
    except PermanentError as exc:
        _fail(notification, str(exc))
        record_failure(channel, str(exc), permanent=True)
        return "failed"
    now = timezone.now()
    Notification.objects.filter(pk=notification.pk).update(
        state=NotificationState.SENT, sent_at=now, error=""
    )
    Channel.objects.filter(pk=channel.pk).update(last_delivery_at=now, consecutive_failures=0)
    return "sent"


def _fail(notification: Notification, error: str) -> None:
    Notification.objects.filter(pk=notification.pk).update(
        state=NotificationState.FAILED, error=error[:500]
    )


def record_failure(channel: Channel, error: str, *, permanent: bool) -> None:
    """Keep the last error; after DISABLE_AFTER permanent failures in a row, disable the
    channel and tell the owners (by email; the page shows it as disabled in any case)."""
    with transaction.atomic():
        row = Channel.objects.select_for_update().get(pk=channel.pk)
        row.last_error = error[:500]
        row.last_error_at = timezone.now()
        if permanent:
            row.consecutive_failures += 1
        disable = (
            permanent and row.disabled_at is None and row.consecutive_failures >= DISABLE_AFTER
        )
        if disable:
            row.disabled_at = timezone.now()
        row.save()
        if disable:
            from mailsec.services.audit import audit_record

            audit_record(
                actor=None, action="alerts.channel.disabled", obj=row,
                organisation=row.organisation,
                after={"consecutive_failures": row.consecutive_failures, "error": row.last_error},
            )  # fmt: skip
            recipients = engine.owner_emails(row.organisation)
            if recipients:
                subject = render.one_line(
                    f"[mailsec] {row.organisation.name}: alert channel {row.name!r} disabled"
                )
                body = (
                    f"The alert channel {row.name!r} ({row.get_kind_display()}, {row.target}) "
                    f"failed {row.consecutive_failures} times in a row and has been disabled.\n\n"
                    f"Last error: {row.last_error}\n\nRe-enable it on the Alerts page once "
                    "it is fixed.\n"
                )
                transaction.on_commit(lambda: send_owner_mail.delay(recipients, subject, body))


@shared_task(bind=True, max_retries=3, soft_time_limit=60, time_limit=90)
def send_owner_mail(self: Task, recipients: list[str], subject: str, body: str) -> str:  # type: ignore[type-arg]
    try:
        send_mail(recipients, subject, body)
    except TransientError as exc:
        raise self.retry(countdown=60) from exc
    except PermanentError as exc:
        logger.warning("owner mail not sent: %s", exc)
        return "failed"
    return "sent"


@shared_task(soft_time_limit=240, time_limit=300)
def send_digests() -> int:
    from alerts.digest import due_organisations, send_digest

    count = 0
    for organisation_id in due_organisations(timezone.now()):
        send_digest(organisation_id)
        count += 1
    return count
