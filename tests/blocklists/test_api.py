"""The blocklists API: per-organisation access, read and write scopes, 202 polls, the local
blacklist and the zones, each change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from blocklists import services
from blocklists.models import BlacklistEntry, BlocklistZone
from mailsec.models import AuditLog, TaskRun, TokenScope
from tests.conftest import token_client

pytestmark = [pytest.mark.knot, pytest.mark.django_db]


@pytest.fixture
def polled(bl_dns, org, acme):
    services.organisation_poll(organisation_id=org.pk)
    return org


def test_status_per_target_and_zone(owner_api, polled):
    response = owner_api.get("/api/v1/blacklists/?status=listed&limit=500")
    assert response.status_code == 200
    rows = {(r["target"], r["zone"]): r for r in response.json()["results"]}
    xbl = rows["192.0.2.25", "zen.spamhaus.org"]
    assert xbl["status"] == "listed"
    assert xbl["code"] == "127.0.0.4"
    assert xbl["kind"] == "ip"
    assert xbl["sources"] == ["MX mx1.acme.test of acme.test"]
    assert xbl["delist_url"].startswith("https://check.spamhaus.org/")
    assert ("192.0.2.10", "zen.spamhaus.org") not in rows


def test_another_organisation_sees_nothing(outsider_api, polled):
    assert outsider_api.get("/api/v1/blacklists/").json()["results"] == []
    assert outsider_api.get("/api/v1/blacklists/events/").json() == []


def test_events_list_listings(owner_api, polled):
    events = owner_api.get("/api/v1/blacklists/events/").json()
    assert {"target": "192.0.2.25", "zone": "zen.spamhaus.org"}.items() <= next(
        e for e in events if e["target"] == "192.0.2.25" and e["zone"] == "zen.spamhaus.org"
    ).items()


def test_poll_answers_202_with_a_task(owner_api, org, acme):
    response = owner_api.post("/api/v1/blacklists/poll/")
    assert response.status_code == 202
    run = TaskRun.objects.get(pk=response.json()["task_id"])
    assert run.kind == "blocklist.poll" and run.organisation == org
    # Asking again while it is queued joins it.
    again = owner_api.post("/api/v1/blacklists/poll/")
    assert again.json()["task_id"] == response.json()["task_id"]


def test_viewers_and_read_tokens_cannot_poll(viewer_api, owner, org):
    assert viewer_api.post("/api/v1/blacklists/poll/").status_code == 403
    read = token_client(owner, TokenScope.READ)
    assert read.post("/api/v1/blacklists/poll/").status_code == 403


def test_unauthenticated_gets_401():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/blacklists/").status_code == 401


def test_blacklist_entries_crud_and_audit(owner_api, org):
    created = owner_api.post(
        "/api/v1/blacklist-entries/",
        {"network": "2001:db8::/32", "reason": "spam\nrun"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    entry = created.json()
    assert entry["network"] == "2001:db8::/32"
    assert entry["reason"] == "spam\\x0arun"
    single = owner_api.post(
        "/api/v1/blacklist-entries/", {"network": "192.0.2.7", "reason": "one"}, format="json"
    )
    assert single.json()["network"] == "192.0.2.7"
    listing = owner_api.get("/api/v1/blacklist-entries/").json()["results"]
    assert [e["network"] for e in listing] == ["192.0.2.7", "2001:db8::/32"]
    cidr = owner_api.get("/api/v1/blacklists/cidr-map/").json()["map"]
    assert "192.0.2.7/32\tREJECT one" in cidr and "[2001:db8::]/32\tREJECT spam" in cidr
    assert owner_api.delete(f"/api/v1/blacklist-entries/{entry['id']}/").status_code == 204
    actions = list(AuditLog.objects.filter(organisation=org).values_list("action", flat=True))
    assert actions.count("blacklist_entry.create") == 2
    assert "blacklist_entry.delete" in actions


@pytest.mark.parametrize(
    "network", ["192.0.2.7/24", "not-an-address", "", "10.0.0.0/33", "2001:db8::/129"]
)
def test_bad_networks_are_a_400(owner_api, org, network):
    response = owner_api.post("/api/v1/blacklist-entries/", {"network": network}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]


def test_duplicate_and_past_expiry_are_refused(owner_api, org):
    owner_api.post("/api/v1/blacklist-entries/", {"network": "192.0.2.7"}, format="json")
    assert (
        owner_api.post(
            "/api/v1/blacklist-entries/", {"network": "192.0.2.7"}, format="json"
        ).status_code
        == 400
    )
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    assert (
        owner_api.post(
            "/api/v1/blacklist-entries/",
            {"network": "192.0.2.8", "expires_at": past},
            format="json",
        ).status_code
        == 400
    )


def test_expired_entries_drop_out_of_list_and_map(owner_api, org, owner):
    entry = services.blacklist_entry_add(
        organisation=org, network="192.0.2.9", reason="soon", actor=owner,
        expires_at=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    BlacklistEntry.objects.filter(pk=entry.pk).update(expires_at=timezone.now())
    assert owner_api.get("/api/v1/blacklist-entries/").json()["results"] == []
    assert "192.0.2.9" not in owner_api.get("/api/v1/blacklists/cidr-map/").json()["map"]
    assert services.blacklist_entries_purge_expired(now=timezone.now()) == 1
    assert AuditLog.objects.filter(action="blacklist_entry.expire").count() == 1


def test_entries_are_per_organisation(owner_api, outsider_api, org, other_org):
    created = owner_api.post("/api/v1/blacklist-entries/", {"network": "192.0.2.7"}, format="json")
    pk = created.json()["id"]
    assert outsider_api.get("/api/v1/blacklist-entries/").json()["results"] == []
    assert outsider_api.get(f"/api/v1/blacklist-entries/{pk}/").status_code == 404
    assert outsider_api.delete(f"/api/v1/blacklist-entries/{pk}/").status_code == 404
    assert BlacklistEntry.objects.filter(pk=pk).exists()


def test_viewer_cannot_add_entries(viewer_api, org):
    response = viewer_api.post(
        "/api/v1/blacklist-entries/", {"network": "192.0.2.7"}, format="json"
    )
    assert response.status_code == 403


def test_zones_list_add_disable_remove(owner_api, org, settings):
    settings.MAILSEC_DNSBL_IP_ZONES = ["zen.spamhaus.org"]
    settings.MAILSEC_DNSBL_DOMAIN_ZONES = ["dbl.spamhaus.org"]
    zones = owner_api.get("/api/v1/blocklist-zones/").json()["results"]
    assert [(z["name"], z["kind"]) for z in zones] == [
        ("dbl.spamhaus.org", "domain"), ("zen.spamhaus.org", "ip"),
    ]  # fmt: skip
    added = owner_api.post(
        "/api/v1/blocklist-zones/", {"name": "Bl.Example.", "kind": "ip"}, format="json"
    )
    assert added.status_code == 201 and added.json()["name"] == "bl.example"
    bad = owner_api.post("/api/v1/blocklist-zones/", {"name": "x y", "kind": "ip"}, format="json")
    assert bad.status_code == 400
    zen = next(z for z in zones if z["name"] == "zen.spamhaus.org")
    patched = owner_api.patch(
        f"/api/v1/blocklist-zones/{zen['id']}/", {"enabled": False}, format="json"
    )
    assert patched.json()["enabled"] is False
    assert owner_api.delete(f"/api/v1/blocklist-zones/{added.json()['id']}/").status_code == 204
    assert not BlocklistZone.objects.filter(name="bl.example").exists()
    assert AuditLog.objects.filter(action__startswith="blocklist_zone.").count() == 3


def test_outsider_cannot_touch_zones(owner_api, outsider_api, org):
    zone = owner_api.get("/api/v1/blocklist-zones/").json()["results"][0]
    assert (
        outsider_api.patch(
            f"/api/v1/blocklist-zones/{zone['id']}/", {"enabled": False}, format="json"
        ).status_code
        == 404
    )
    assert outsider_api.delete(f"/api/v1/blocklist-zones/{zone['id']}/").status_code == 404


def test_a_network_refusing_everyone_is_refused(owner_api, org):
    for network in ("0.0.0.0/0", "::/0"):
        response = owner_api.post("/api/v1/blacklist-entries/", {"network": network}, format="json")
        assert response.status_code == 400
        assert "every client" in str(response.json()["error"]["details"])


def test_the_managed_hosts_get_the_entries_in_force(org, owner):
    from hosts.assemble import blacklist_of

    services.blacklist_entry_add(
        organisation=org, network="2001:db8::/32", reason="Spät\nspam", expires_at=None, actor=owner
    )
    gone = services.blacklist_entry_add(
        organisation=org, network="192.0.2.9", reason="soon", actor=owner,
        expires_at=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    BlacklistEntry.objects.filter(pk=gone.pk).update(expires_at=timezone.now())
    services.blacklist_entry_add(
        organisation=org, network="198.51.100.7", reason="", expires_at=None, actor=owner
    )
    entries = blacklist_of(org.pk)
    assert [(e.network, e.reason) for e in entries] == [
        ("198.51.100.7/32", "Blocked by local policy"),
        ("2001:db8::/32", "Sp?t\\x0aspam"),  # stored with the newline made visible
    ]


def test_polls_are_limited_per_minute(owner_api, org, acme):
    for _ in range(services.POLLS_PER_MINUTE):
        assert owner_api.post("/api/v1/blacklists/poll/").status_code == 202
        TaskRun.objects.filter(kind="blocklist.poll").update(state="succeeded")
    refused = owner_api.post("/api/v1/blacklists/poll/")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert "polled" in refused.json()["error"]["message"]
