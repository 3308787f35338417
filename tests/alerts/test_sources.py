"""The other sources (blocklist listings, host events), the other transports' payloads through
the real HTTPS receiver, the email URL, the digest through the SMTP server, and the beat entries."""

from __future__ import annotations

import email
import json
from datetime import timedelta
from email import policy as email_policy
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from alerts import engine, services
from alerts.digest import build, send_digest
from alerts.email_url import InvalidEmailUrl, parse_email_url
from alerts.models import AlertState, Notification, NotificationState
from alerts.tasks import deliver_notification
from blocklists.models import BlocklistTarget, Listing
from dns_records.models import CheckEvent, Domain
from hosts.models import Host, HostEvent
from mailsec.celery import app as celery_app

pytestmark = pytest.mark.django_db


def deliver_pending() -> None:
    for notification in Notification.objects.filter(state=NotificationState.PENDING):
        deliver_notification.apply(args=(notification.pk,))


def channel_with_rule(org: Any, owner: Any, kind: str, url: str, **rule: Any) -> Any:
    channel, _secret = services.channel_create(
        organisation=org, kind=kind, name=kind, target=url, actor=owner
    )
    services.rule_create(
        organisation=org, channels=[channel.pk], min_status="fail", actor=owner, **rule
    )
    return channel


def test_listing_held_two_polls_is_told_and_recovery(org, owner, webhook) -> None:
    channel_with_rule(org, owner, "webhook", webhook.url, events=["blocklist"])
    target = BlocklistTarget.objects.create(organisation=org, kind="ip", value="192.0.2.25")
    when = timezone.now() - timedelta(hours=2)
    listing = Listing.objects.create(
        target=target, zone="zen.spamhaus.org", status="clean", checked_at=when, changed_at=when
    )
    for status in ("listed", "listed", "listed", "clean"):
        when += timedelta(minutes=10)
        Listing.objects.filter(pk=listing.pk).update(status=status, checked_at=when)
        engine.evaluate(now=when)
        deliver_pending()
    bodies = [json.loads(r.body) for r in webhook.requests]
    assert [(b["changes"][0]["key"], b["changes"][0]["kind"]) for b in bodies] == [
        ("listing:192.0.2.25:zen.spamhaus.org", "problem"),
        ("listing:192.0.2.25:zen.spamhaus.org", "recovery"),
    ]


def test_host_drift_told_at_once_and_rule_filters_hosts(org, owner, webhook) -> None:
    channel_with_rule(org, owner, "webhook", webhook.url, hosts=["mx1.example.com"])
    mx1 = Host.objects.create(organisation=org, name="mx1.example.com", address="192.0.2.10")
    mx2 = Host.objects.create(organisation=org, name="mx2.example.com", address="192.0.2.11")
    HostEvent.objects.create(host=mx1, kind="drift", summary="main.cf edited by hand")
    HostEvent.objects.create(host=mx2, kind="drift", summary="main.cf edited by hand")
    engine.evaluate()
    deliver_pending()
    assert len(webhook.requests) == 1
    change = json.loads(webhook.requests[0].body)["changes"]
    assert change == [{"key": "host:mx1.example.com:drift", "kind": "problem", "status": "fail",
                       "previous": "ok", "summary": "main.cf edited by hand"}]  # fmt: skip
    # mx2's drift was seen (not told: the rule is for mx1); one-shot subjects return to ok.
    assert AlertState.objects.filter(key="host:mx2.example.com:drift", status="ok").exists()
    engine.evaluate()  # the same events again: nothing new
    deliver_pending()
    assert len(webhook.requests) == 1
    HostEvent.objects.create(host=mx1, kind="drift", summary="master.cf edited by hand")
    engine.evaluate()  # a new drift of the same host is told again
    deliver_pending()
    assert len(webhook.requests) == 2
    assert json.loads(webhook.requests[1].body)["changes"][0]["summary"] == (
        "master.cf edited by hand"
    )


@pytest.mark.parametrize("kind", ["slack", "teams", "ntfy"])
def test_chat_transports_post_their_shapes(org, owner, webhook, kind) -> None:
    channel = channel_with_rule(org, owner, kind, webhook.url)
    notification = services.channel_test(channel=channel, actor=owner)
    assert deliver_notification.apply(args=(notification.pk,)).get() == "sent"
    (received,) = webhook.requests
    if kind == "slack":
        body = json.loads(received.body)
        assert body["text"] == "[mailsec] Acme Mail: test message"
        assert body["blocks"][0]["type"] == "header"
    elif kind == "teams":
        body = json.loads(received.body)
        card = body["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["type"] == "AdaptiveCard"
    else:
        assert received.headers["Title"] == "[mailsec] Acme Mail: test message"
        assert received.headers["Priority"] == "low"
        assert received.body.decode().startswith("This is a test of the alert channel")
    assert "X-Mailsec-Signature" not in received.headers


def test_email_url_parsing() -> None:
    assert parse_email_url("smtp+tls://u%40x:p%3Aw@mail.example.com") == {
        "host": "mail.example.com", "port": 587, "username": "u@x", "password": "p:w",
        "use_tls": True, "use_ssl": False,
    }  # fmt: skip
    assert parse_email_url("smtp://127.0.0.1:2525")["port"] == 2525
    assert parse_email_url("smtp+ssl://h")["use_ssl"] is True
    for bad in ("http://h", "smtp://", "smtp://h:99999"):
        with pytest.raises(InvalidEmailUrl):
            parse_email_url(bad)


def test_digest_through_smtp(org, owner, smtp, monkeypatch) -> None:
    owner.email = "olivia@example.com"
    owner.save()
    domain = Domain.objects.create(organisation=org, name="example.com")
    CheckEvent.objects.create(domain=domain, name="dmarc", previous_status="ok", status="fail",
                              summary="p=none", created_at=timezone.now())  # fmt: skip
    AlertState.objects.create(organisation=org, key="check:example.com:dmarc", event="check",
                              status="fail", since=timezone.now())  # fmt: skip
    subject, body = build(org, timezone.now())
    assert subject == "[mailsec] Acme Mail: digest"
    assert "- example.com dmarc: ok -> fail" in body
    assert "- check:example.com:dmarc: fail since" in body
    assert "- no reports" in body
    from alerts.tasks import send_owner_mail

    monkeypatch.setattr(send_owner_mail, "delay", lambda *args: send_owner_mail.apply(args=args))
    assert send_digest(org.pk) is True
    (message,) = smtp.messages
    parsed = email.message_from_bytes(message[2], policy=email_policy.default)
    assert parsed["Subject"] == subject and message[1] == ["olivia@example.com"]


def test_beat_entries_name_registered_tasks() -> None:
    celery_app.loader.import_default_modules()
    for name in ("evaluate-alerts", "send-alert-digests"):
        assert settings.CELERY_BEAT_SCHEDULE[name]["task"] in celery_app.tasks


def test_dkim_signing_proof_failing_twice_is_told(org, owner, webhook) -> None:
    from dns_records.models import DkimKey, DkimKeyState

    channel_with_rule(org, owner, "webhook", webhook.url, events=["dkim"])
    domain = Domain.objects.create(organisation=org, name="example.com")
    key = DkimKey.objects.create(
        domain=domain, selector="s2026", algorithm="ed25519", state=DkimKeyState.ACTIVE
    )
    when = timezone.now() - timedelta(hours=1)
    for verified in (False, False, True):
        when += timedelta(minutes=10)
        DkimKey.objects.filter(pk=key.pk).update(
            signing_checked_at=when, signing_verified=verified,
            signing_error="" if verified else "body hash did not verify",
        )  # fmt: skip
        engine.evaluate(now=when)
        deliver_pending()
    changes = [json.loads(r.body)["changes"][0] for r in webhook.requests]
    assert [(c["key"], c["kind"], c["summary"]) for c in changes] == [
        ("dkim:example.com:s2026:signing", "problem", "body hash did not verify"),
        ("dkim:example.com:s2026:signing", "recovery", "mail signed with s2026 verifies"),
    ]


def test_hostile_organisation_name_cannot_break_headers(org, owner, webhook, smtp) -> None:
    org.name = "Evil\r\nBcc: victim@example.com\x07Org"
    org.save()
    email_channel = channel_with_rule(org, owner, "email", "admins@example.com")
    ntfy = channel_with_rule(org, owner, "ntfy", webhook.url)
    for channel in (email_channel, ntfy):
        notification = services.channel_test(channel=channel, actor=owner)
        assert deliver_notification.apply(args=(notification.pk,)).get() == "sent"
    (message,) = smtp.messages
    assert message[1] == ["admins@example.com"]
    parsed = email.message_from_bytes(message[2], policy=email_policy.default)
    assert parsed["Subject"] == "[mailsec] Evil Bcc: victim@example.com Org: test message"
    assert parsed["Bcc"] is None
    assert webhook.requests[0].headers["Title"] == parsed["Subject"]


def test_untrusted_certificate_is_a_permanent_failure(org, owner, webhook, settings) -> None:
    settings.MAILSEC_TLS_CA_FILE = ""  # the receiver's test CA is no longer trusted
    channel = channel_with_rule(org, owner, "webhook", webhook.url)
    notification = services.channel_test(channel=channel, actor=owner)
    assert deliver_notification.apply(args=(notification.pk,)).get() == "failed"
    notification.refresh_from_db()
    assert notification.error.startswith("certificate not valid for 127.0.0.100")
    assert webhook.requests == []
    channel.refresh_from_db()
    assert channel.consecutive_failures == 1


def test_digest_lists_certificates_expiring_soon(org) -> None:
    from hosts.models import ProbeResult

    host = Host.objects.create(organisation=org, name="mx1.example.com", address="192.0.2.10")
    now = timezone.now()
    for days, when in ((90, now - timedelta(days=2)), (12, now - timedelta(hours=1))):
        ProbeResult.objects.create(
            host=host, name="smtp_certificate", address="192.0.2.10", port=25, status="ok",
            summary="ok", details={"days_left": days, "not_after": "2026-12-15T00:00:00+00:00"},
            probed_at=when,
        )  # fmt: skip
    _subject, body = build(org, now)
    assert "- mx1.example.com port 25: 12 days left (2026-12-15T00:00:00+00:00)" in body
    assert "90 days" not in body
