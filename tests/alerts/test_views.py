"""The alerts page and its panels, per organisation and role."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from alerts import services
from alerts.models import AlertRule, AlertState, Channel
from mailsec.models import AuditLog

pytestmark = pytest.mark.django_db

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_redirected(client: Client) -> None:
    response = client.get("/alerts/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_owner_adds_webhook_sees_secret_once(org, owner) -> None:
    client = login(owner)
    response = client.post(
        f"/alerts/{org.slug}/channels/",
        {"kind": "webhook", "name": "ops", "target": "https://hooks.example.com/x"}, **HTMX,
    )  # fmt: skip
    assert response.status_code == 200
    channel = Channel.objects.get()
    page = response.content.decode()
    assert 'id="channel-secret"' in page
    assert 'id="channel-secret"' not in client.get("/alerts/").content.decode()
    assert "ops" in client.get("/alerts/").content.decode()
    response = client.post(f"/alerts/{org.slug}/rules/", {"channels": [channel.pk],
                           "min_status": "fail", "events": ["check"]}, **HTMX)  # fmt: skip
    assert response.status_code == 200
    assert AlertRule.objects.get().events == ["check"]


def test_bad_target_shows_error_and_keeps_nothing(org, owner) -> None:
    response = login(owner).post(
        f"/alerts/{org.slug}/channels/",
        {"kind": "webhook", "name": "ops", "target": "http://10.0.0.1/"}, **HTMX,
    )  # fmt: skip
    assert "An https:// URL with a host." in response.content.decode()
    assert not Channel.objects.exists()


def test_viewer_sees_no_forms_and_cannot_post(org, owner, viewer) -> None:
    channel, _ = services.channel_create(
        organisation=org, kind="email", name="admins", target="a@example.com", actor=owner
    )
    page = login(viewer).get("/alerts/").content.decode()
    assert "admins" in page and "Add channel" not in page and "Send test" not in page
    response = login(viewer).post(f"/alert-channels/{channel.pk}/remove/", **HTMX)
    assert "cannot change" in response.content.decode()
    assert Channel.objects.filter(pk=channel.pk).exists()


def test_outsider_gets_404(org, owner, outsider) -> None:
    channel, _ = services.channel_create(
        organisation=org, kind="email", name="admins", target="a@example.com", actor=owner
    )
    client = login(outsider)
    assert client.post(f"/alert-channels/{channel.pk}/test/", **HTMX).status_code == 404
    assert client.post(f"/alerts/{org.slug}/channels/", {}, **HTMX).status_code == 404
    assert client.get(f"/alerts/?org={org.slug}").status_code == 404


def test_acknowledge_and_snooze_from_the_page(org, owner) -> None:
    state = AlertState.objects.create(
        organisation=org, key="listing:192.0.2.1:zen.spamhaus.org", event="blocklist",
        status="fail", since=timezone.now(), summary="listed",
    )  # fmt: skip
    client = login(owner)
    page = client.get("/alerts/").content.decode()
    assert "listing:192.0.2.1:zen.spamhaus.org" in page
    client.post(f"/alert-states/{state.pk}/acknowledge/", **HTMX)
    state.refresh_from_db()
    assert state.acknowledged_at is not None
    response = client.post(f"/alert-states/{state.pk}/snooze/", {"minutes": "999999"}, **HTMX)
    assert "Choose how long" in response.content.decode()
    client.post(f"/alert-states/{state.pk}/snooze/", {"minutes": "60"}, **HTMX)
    state.refresh_from_db()
    assert state.snoozed_until is not None
    actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"alerts.state.acknowledge", "alerts.state.snooze"} <= actions


def test_digest_frequency(org, owner, viewer) -> None:
    from alerts.models import DigestSettings

    response = login(owner).post(f"/alerts/{org.slug}/digest/", {"frequency": "weekly"}, **HTMX)
    assert response.status_code == 200
    assert DigestSettings.objects.get(organisation=org).frequency == "weekly"
    bad = login(owner).post(f"/alerts/{org.slug}/digest/", {"frequency": "hourly"}, **HTMX)
    assert "off, daily or weekly" in bad.content.decode()
    denied = login(viewer).post(f"/alerts/{org.slug}/digest/", {"frequency": "off"}, **HTMX)
    assert "cannot change" in denied.content.decode()
    assert DigestSettings.objects.get(organisation=org).frequency == "weekly"
    assert AuditLog.objects.filter(action="alerts.digest.set").count() == 1
