"""The alerts API: per organisation, admins write, viewers read, every change audited."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.models import AlertState, Channel, Notification
from mailsec import secrets
from mailsec.models import AuditLog

pytestmark = pytest.mark.django_db


def create_hook(api: Any, url: str = "https://hooks.example.com/x") -> Any:
    return api.post(
        "/api/v1/channels/", {"kind": "webhook", "name": "ops", "target": url}, format="json"
    )


def test_create_webhook_shows_secret_once(owner_api: Any) -> None:
    response = create_hook(owner_api)
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    channel = Channel.objects.get(pk=response.json()["id"])
    assert secrets.decrypt(channel.secret, context=channel.secret_context).decode() == secret
    listed = owner_api.get("/api/v1/channels/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows[0]["name"] == "ops" and "secret" not in rows[0]
    assert rows[0]["target"] == "https://hooks.example.com/…"  # the path may be the credential
    assert secret not in str(owner_api.get(f"/api/v1/channels/{channel.pk}/").content)
    assert AuditLog.objects.filter(action="alerts.channel.create").count() == 1
    assert secret not in str(list(AuditLog.objects.values()))


@pytest.mark.parametrize(("kind", "target", "field"), [
    ("webhook", "http://hooks.example.com/x", "target"),
    ("webhook", "https://user:pw@hooks.example.com/x", "target"),
    ("webhook", "https://hooks.example.com/a b", "target"),
    ("email", "not-an-address", "target"),
    ("pigeon", "https://x.example/", "kind"),
])  # fmt: skip
def test_hostile_targets_refused(owner_api: Any, kind: str, target: str, field: str) -> None:
    response = owner_api.post(
        "/api/v1/channels/", {"kind": kind, "name": "x", "target": target}, format="json"
    )
    assert response.status_code == 400
    assert field in str(response.json())
    assert not Channel.objects.exists()


def test_viewer_reads_but_cannot_write(owner_api: Any, viewer_api: Any) -> None:
    channel_id = create_hook(owner_api).json()["id"]
    assert create_hook(viewer_api).status_code == 403
    listed = viewer_api.get("/api/v1/channels/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["id"] for r in rows] == [channel_id]
    assert viewer_api.post(f"/api/v1/channels/{channel_id}/test/").status_code == 403
    assert viewer_api.delete(f"/api/v1/channels/{channel_id}/").status_code == 403
    rule = {"channels": [channel_id], "min_status": "fail"}
    assert viewer_api.post("/api/v1/alert-rules/", rule, format="json").status_code == 403
    assert Channel.objects.count() == 1


def test_outsider_sees_nothing(owner_api: Any, outsider_api: Any) -> None:
    channel_id = create_hook(owner_api).json()["id"]
    listed = outsider_api.get("/api/v1/channels/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows == []
    assert outsider_api.get(f"/api/v1/channels/{channel_id}/").status_code == 404
    assert outsider_api.post(f"/api/v1/channels/{channel_id}/test/").status_code == 404
    rule = {"channels": [channel_id], "min_status": "fail"}
    response = outsider_api.post("/api/v1/alert-rules/", rule, format="json")
    assert response.status_code == 400  # not a channel of the caller's organisation


def test_rules_contract(owner_api: Any) -> None:
    channel_id = create_hook(owner_api).json()["id"]
    body = {"channels": [channel_id], "min_status": "warning", "events": ["check", "blocklist"],
            "domains": ["Example.COM."]}  # fmt: skip
    response = owner_api.post("/api/v1/alert-rules/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["channels"] == [channel_id] and data["domains"] == ["example.com"]
    assert data["events"] == ["blocklist", "check"]
    bad = owner_api.post("/api/v1/alert-rules/", {**body, "events": ["nonsense"]}, format="json")
    assert bad.status_code == 400
    assert owner_api.delete(f"/api/v1/alert-rules/{data['id']}/").status_code == 204
    actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"alerts.rule.create", "alerts.rule.delete"} <= actions


def test_channel_test_queues_a_notification(owner_api: Any, org: Any) -> None:
    channel_id = create_hook(owner_api).json()["id"]
    response = owner_api.post(f"/api/v1/channels/{channel_id}/test/")
    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["notification"])
    assert notification.subject == "[mailsec] Acme Mail: test message"


def test_acknowledge_and_snooze(owner_api: Any, viewer_api: Any, org: Any) -> None:
    from django.utils import timezone

    state = AlertState.objects.create(
        organisation=org, key="check:example.com:spf", event="check", status="fail",
        since=timezone.now(),
    )  # fmt: skip
    assert viewer_api.post(f"/api/v1/alerts/{state.pk}/acknowledge/").status_code == 403
    response = owner_api.post(f"/api/v1/alerts/{state.pk}/acknowledge/")
    assert response.status_code == 200 and response.json()["acknowledged_at"]
    response = owner_api.post(f"/api/v1/alerts/{state.pk}/snooze/", {"minutes": 60}, format="json")
    assert response.status_code == 200 and response.json()["snoozed_until"]
    bad = owner_api.post(f"/api/v1/alerts/{state.pk}/snooze/", {}, format="json")
    assert bad.status_code == 400
    listed = viewer_api.get("/api/v1/alerts/?status=fail").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["key"] for r in rows] == ["check:example.com:spf"]


def test_anonymous_refused(client: Any) -> None:
    assert client.get("/api/v1/channels/").status_code in (401, 403)
    assert client.get("/api/v1/alerts/").status_code in (401, 403)
