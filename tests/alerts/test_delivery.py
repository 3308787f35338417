"""End to end through real receivers: check states observed run by run, notifications grouped
and delivered by the delivery task (run in this process), the webhook signed, email through a
real SMTP server, internal addresses refused without a connection, a failing channel disabled."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
from datetime import timedelta
from email import policy as email_policy
from typing import Any

import pytest
from django.utils import timezone

from alerts import engine, services
from alerts.models import AlertState, Channel, Notification, NotificationState
from alerts.tasks import DISABLE_AFTER, deliver_notification
from dns_records.models import CheckState, Domain
from mailsec.models import AuditLog, Organisation

pytestmark = pytest.mark.django_db


class Runs:
    """The checks of one domain, run after run: each call is one run of the SPF check."""

    def __init__(self, org: Organisation, name: str = "example.com") -> None:
        self.domain = Domain.objects.create(organisation=org, name=name)
        self.now = timezone.now() - timedelta(hours=5)

    def run(self, status: str, check: str = "spf") -> None:
        self.now += timedelta(minutes=5)
        CheckState.objects.update_or_create(
            domain=self.domain, name=check,
            defaults={"status": status, "summary": f"{check} is {status}",
                      "checked_at": self.now, "changed_at": self.now},
        )  # fmt: skip
        engine.evaluate(now=self.now)
        for notification in Notification.objects.filter(state=NotificationState.PENDING):
            deliver_notification.apply(args=(notification.pk,))


def hook_channel(org: Organisation, owner: Any, url: str) -> tuple[Channel, str]:
    channel, secret = services.channel_create(
        organisation=org, kind="webhook", name="ops hook", target=url, actor=owner
    )
    services.rule_create(organisation=org, channels=[channel.pk], min_status="fail", actor=owner)
    return channel, secret


def verify(received: Any, secret: str) -> dict[str, Any]:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["X-Mailsec-Signature"] == expected
    assert received.headers["X-Mailsec-Timestamp"].isdigit()
    assert received.headers["Content-Type"] == "application/json"
    decoded: dict[str, Any] = json.loads(received.body)
    return decoded


def test_webhook_one_signed_post_per_change_and_one_recovery(org, owner, webhook) -> None:
    channel, secret = hook_channel(org, owner, webhook.url)
    assert secret and channel.secret.startswith("v1:") and secret not in channel.secret
    runs = Runs(org)
    runs.run("ok")
    runs.run("fail")
    assert webhook.requests == []  # one failing run is not enough
    runs.run("fail")
    assert len(webhook.requests) == 1
    body = verify(webhook.requests[0], secret)
    assert body["changes"] == [{
        "key": "check:example.com:spf", "kind": "problem", "status": "fail", "previous": "ok",
        "summary": "spf is fail",
    }]  # fmt: skip
    assert body["organisation"] == "Acme Mail"
    runs.run("fail")
    runs.run("fail")
    assert len(webhook.requests) == 1  # not on every run
    runs.run("ok")
    assert len(webhook.requests) == 2
    body = verify(webhook.requests[1], secret)
    assert body["changes"][0]["kind"] == "recovery"
    channel.refresh_from_db()
    assert channel.last_delivery_at is not None and channel.last_error == ""


def test_tampered_body_does_not_verify(org, owner, webhook) -> None:
    _channel, secret = hook_channel(org, owner, webhook.url)
    runs = Runs(org)
    runs.run("fail")
    runs.run("fail")
    received = webhook.requests[0]
    forged = received.body.replace(b"fail", b"ok")
    digest = hmac.new(secret.encode(), forged, hashlib.sha256).hexdigest()
    assert received.headers["X-Mailsec-Signature"] != "sha256=" + digest


def test_acknowledged_silent_until_recovery(org, owner, webhook) -> None:
    _channel, secret = hook_channel(org, owner, webhook.url)
    runs = Runs(org)
    runs.run("warning")
    runs.run("warning")
    assert webhook.requests == []  # the rule wants fail
    runs.run("fail")
    runs.run("fail")
    assert len(webhook.requests) == 1
    state = AlertState.objects.get(key="check:example.com:spf")
    services.state_acknowledge(state=state, actor=owner)
    runs.run("warning")
    runs.run("fail")
    runs.run("fail")
    assert len(webhook.requests) == 1
    runs.run("ok")
    assert len(webhook.requests) == 2
    assert verify(webhook.requests[1], secret)["changes"][0]["kind"] == "recovery"


def test_snoozed_subject_is_silent(org, owner, webhook) -> None:
    hook_channel(org, owner, webhook.url)
    runs = Runs(org)
    runs.run("ok")
    state = AlertState.objects.get(key="check:example.com:spf")
    services.state_snooze(state=state, until=timezone.now() + timedelta(days=1), actor=owner)
    for status in ("fail", "fail", "fail", "ok", "fail", "fail"):
        runs.run(status)
    assert webhook.requests == []


def test_one_message_groups_one_runs_changes(org, owner, webhook) -> None:
    _channel, secret = hook_channel(org, owner, webhook.url)
    a, b = Runs(org, "a.example"), Runs(org, "b.example")
    for status in ("fail", "fail"):
        a.now = b.now = max(a.now, b.now) + timedelta(minutes=5)
        for runs in (a, b):
            CheckState.objects.update_or_create(
                domain=runs.domain, name="dmarc",
                defaults={"status": status, "summary": "x", "checked_at": a.now,
                          "changed_at": a.now},
            )  # fmt: skip
        engine.evaluate(now=a.now)
    for notification in Notification.objects.filter(state=NotificationState.PENDING):
        deliver_notification.apply(args=(notification.pk,))
    assert len(webhook.requests) == 1
    keys = [c["key"] for c in verify(webhook.requests[0], secret)["changes"]]
    assert keys == ["check:a.example:dmarc", "check:b.example:dmarc"]


def test_private_address_refused_without_connection(org, owner, silent_listener, settings) -> None:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    url = f"https://{silent_listener.address}:{silent_listener.port}/hook"
    channel, _secret = hook_channel(org, owner, url)
    runs = Runs(org)
    runs.run("fail")
    runs.run("fail")
    notification = Notification.objects.get(channel=channel)
    assert notification.state == NotificationState.FAILED
    assert "outside the networks mailsec may reach" in notification.error
    assert silent_listener.seen() == []
    channel.refresh_from_db()
    assert (
        channel.consecutive_failures == 1 and "MAILSEC_PROBE_ALLOW_NETWORKS" in channel.last_error
    )


def test_permanently_failing_channel_disabled_and_owners_told(org, owner, webhook, smtp) -> None:
    owner.email = "olivia@example.com"
    owner.save()
    webhook.status = 410
    channel, _secret = hook_channel(org, owner, webhook.url)
    for _ in range(DISABLE_AFTER):
        notification = services.channel_test(channel=channel, actor=owner)
        deliver_notification.apply(args=(notification.pk,))
    channel.refresh_from_db()
    assert channel.disabled_at is not None
    assert channel.last_error.startswith("HTTP 410")
    assert len(webhook.requests) == DISABLE_AFTER
    assert AuditLog.objects.filter(action="alerts.channel.disabled").count() == 1
    # The owners' mail is queued on commit; deliver it here through the real SMTP server.
    from alerts.tasks import send_owner_mail

    subject = f"[mailsec] Acme Mail: alert channel {channel.name!r} disabled"
    send_owner_mail.apply(args=(["olivia@example.com"], subject, "disabled"))
    assert [m[1] for m in smtp.messages] == [["olivia@example.com"]]
    # A disabled channel gets nothing more; re-enabling it resets the count.
    notification = services.channel_test(channel=channel, actor=owner)
    assert deliver_notification.apply(args=(notification.pk,)).get() == "disabled"
    assert len(webhook.requests) == DISABLE_AFTER
    services.channel_enable(channel=channel, actor=owner)
    channel.refresh_from_db()
    assert channel.enabled and channel.consecutive_failures == 0


def test_server_error_retried_then_counted(org, owner, webhook) -> None:
    webhook.status = 503
    channel, _secret = hook_channel(org, owner, webhook.url)
    notification = services.channel_test(channel=channel, actor=owner)
    deliver_notification.apply(args=(notification.pk,))
    notification.refresh_from_db()
    assert notification.state == NotificationState.FAILED and notification.attempts == 5
    assert len(webhook.requests) == 5
    channel.refresh_from_db()
    assert channel.disabled_at is None  # transient failures never disable


def test_email_channel_through_smtp(org, owner, smtp) -> None:
    channel, secret = services.channel_create(
        organisation=org, kind="email", name="admins", target="admins@example.com", actor=owner
    )
    assert secret == "" and channel.secret == ""
    services.rule_create(organisation=org, channels=[channel.pk], min_status="fail", actor=owner)
    runs = Runs(org)
    runs.run("fail")
    runs.run("fail")
    assert len(smtp.messages) == 1
    _sender, recipients, content = smtp.messages[0]
    assert recipients == ["admins@example.com"]
    parsed = email.message_from_bytes(content, policy=email_policy.default)
    assert parsed["Subject"] == "[mailsec] Acme Mail: check:example.com:spf now FAIL"
    body = parsed.get_content()
    assert "- check:example.com:spf: now FAIL (was ok) - spf is fail" in body


def test_default_rule_mails_owners_fail_only(
    org, owner, smtp, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    owner.email = "olivia@example.com"
    owner.save()
    runs = Runs(org)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        runs.run("warning")
        runs.run("fail")
        runs.run("fail")
    assert len(callbacks) == 1  # warning is not sent by the default rule; fail once
    from alerts.tasks import send_owner_mail

    monkeypatch.setattr(send_owner_mail, "delay", lambda *args: send_owner_mail.apply(args=args))
    callbacks[0]()
    assert len(smtp.messages) == 1
    assert smtp.messages[0][1] == ["olivia@example.com"]
    parsed = email.message_from_bytes(smtp.messages[0][2], policy=email_policy.default)
    assert "now FAIL" in parsed["Subject"]


def test_named_webhook_resolved_through_mailsecs_resolver(org, owner, webhook, alerts_dns) -> None:
    url = f"https://hook.alerts.test:{webhook.port}/hook"
    _channel, secret = hook_channel(org, owner, url)
    runs = Runs(org)
    runs.run("fail")
    runs.run("fail")
    (received,) = webhook.requests
    assert received.headers["Host"] == f"hook.alerts.test:{webhook.port}"
    verify(received, secret)


def test_name_resolving_to_internal_address_refused_without_connection(
    org, owner, silent_listener, alerts_dns, settings
) -> None:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    url = f"https://internal.alerts.test:{silent_listener.port}/hook"
    channel, _secret = hook_channel(org, owner, url)
    notification = services.channel_test(channel=channel, actor=owner)
    deliver_notification.apply(args=(notification.pk,))
    notification.refresh_from_db()
    assert notification.state == NotificationState.FAILED
    assert notification.error.startswith("not sent: internal.alerts.test resolves to 127.0.0.102")
    assert silent_listener.seen() == []


def test_a_claimed_notification_is_not_sent_twice(org, owner, webhook) -> None:
    channel, _secret = hook_channel(org, owner, webhook.url)
    notification = services.channel_test(channel=channel, actor=owner)
    Notification.objects.filter(pk=notification.pk).update(claimed_at=timezone.now())
    assert deliver_notification.apply(args=(notification.pk,)).get() == "busy"
    assert webhook.requests == []
    # A lease left by a worker that died expires.
    stale = timezone.now() - timedelta(minutes=5)
    Notification.objects.filter(pk=notification.pk).update(claimed_at=stale)
    assert deliver_notification.apply(args=(notification.pk,)).get() == "sent"
    assert len(webhook.requests) == 1
