"""The DKIM API: keys with their record, generation in a real worker, rotation, retirement,
other senders' selectors, the RFC 2136 server; per-organisation access and read-only roles."""

from __future__ import annotations

import base64
import time

import pytest

from dns_records.models import DkimKey, DkimKeyState, Domain
from mailsec.models import AuditLog, TaskRun
from tests.conftest import generated_dkim_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name="dkim.test")


def test_creating_a_key_answers_202_with_the_reserved_key_and_its_task(owner_api, domain):
    response = owner_api.post(
        "/api/v1/domains/dkim.test/dkim-keys/", {"algorithm": "ed25519"}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["key"]["algorithm"] == "ed25519" and body["key"]["state"] == "generating"
    assert body["url"] == f"/api/v1/tasks/{body['task_id']}/"
    assert TaskRun.objects.get(pk=body["task_id"]).kind == "dkim.generate"


def test_a_key_carries_its_dns_name_and_value_and_never_its_private_half(owner_api, owner, domain):
    key = generated_dkim_key(domain, owner, selector="s2026")
    body = owner_api.get(f"/api/v1/dkim-keys/{key.pk}/").json()
    assert body["dns_name"] == "s2026._domainkey.dkim.test"
    assert body["dns_value"].startswith("v=DKIM1; k=rsa; p=MII")
    assert body["selector"] == "s2026" and body["state"] == "pending"
    text = str(owner_api.get("/api/v1/domains/dkim.test/dkim-keys/").json())
    assert "PRIVATE" not in text and key.private_key not in text


def test_bad_input_gets_the_error_shape(owner_api, domain):
    response = owner_api.post(
        "/api/v1/domains/dkim.test/dkim-keys/", {"algorithm": "rsa", "bits": 1024}, format="json"
    )
    assert response.status_code == 400
    assert "2048" in str(response.json()["error"]["details"])
    response = owner_api.post(
        "/api/v1/domains/dkim.test/dkim-keys/", {"algorithm": "dsa"}, format="json"
    )
    assert response.status_code == 400


def test_rotate_and_retire(owner_api, owner, domain):
    key = generated_dkim_key(domain, owner)
    DkimKey.objects.filter(pk=key.pk).update(state=DkimKeyState.ACTIVE)
    response = owner_api.post(f"/api/v1/dkim-keys/{key.pk}/rotate/")
    assert response.status_code == 202
    successor = response.json()["key"]
    assert successor["predecessor"] == key.pk and successor["algorithm"] == "rsa"
    again = owner_api.post(f"/api/v1/dkim-keys/{key.pk}/rotate/")
    assert again.status_code == 400 and "already being replaced" in str(again.json()["error"])
    retired = owner_api.post(f"/api/v1/dkim-keys/{key.pk}/retire/").json()
    assert retired["state"] == "retiring"


def test_viewers_read_and_change_nothing(viewer_api, owner, domain):
    key = generated_dkim_key(domain, owner)
    assert viewer_api.get("/api/v1/domains/dkim.test/dkim-keys/").status_code == 200
    assert (
        viewer_api.post(
            "/api/v1/domains/dkim.test/dkim-keys/", {"algorithm": "rsa"}, format="json"
        ).status_code
        == 403
    )
    assert viewer_api.post(f"/api/v1/dkim-keys/{key.pk}/retire/").status_code == 403
    assert (
        viewer_api.post(
            "/api/v1/domains/dkim.test/dkim-selectors/", {"selector": "google"}, format="json"
        ).status_code
        == 403
    )


def test_another_organisations_keys_are_not_found(outsider_api, owner, domain):
    key = generated_dkim_key(domain, owner)
    assert outsider_api.get(f"/api/v1/dkim-keys/{key.pk}/").status_code == 404
    assert outsider_api.post(f"/api/v1/dkim-keys/{key.pk}/rotate/").status_code == 404
    assert outsider_api.get("/api/v1/domains/dkim.test/dkim-keys/").status_code == 404


def test_watching_other_senders_selectors(owner_api, domain):
    response = owner_api.post(
        "/api/v1/domains/dkim.test/dkim-selectors/",
        {"selector": "Google", "note": "Workspace"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["selector"] == "google"
    duplicate = owner_api.post(
        "/api/v1/domains/dkim.test/dkim-selectors/", {"selector": "google"}, format="json"
    )
    assert duplicate.status_code == 400
    listed = owner_api.get("/api/v1/domains/dkim.test/dkim-selectors/").json()
    assert [s["selector"] for s in listed] == ["google"]
    assert owner_api.delete(f"/api/v1/dkim-selectors/{listed[0]['id']}/").status_code == 204


def test_the_tsig_secret_is_write_only_encrypted_and_never_audited(owner_api, domain):
    secret = base64.b64encode(b"k" * 32).decode()
    response = owner_api.put(
        "/api/v1/domains/dkim.test/dns-update/",
        {"server": "127.0.0.19:53", "zone": "dkim.test", "tsig_name": "mailsec-update",
         "tsig_algorithm": "hmac-sha256", "tsig_secret": secret},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    assert "tsig_secret" not in response.json()
    assert owner_api.get("/api/v1/domains/dkim.test/dns-update/").json()["zone"] == "dkim.test"
    stored = domain.dns_update
    assert secret not in stored.tsig_secret and "kkkk" not in stored.tsig_secret
    assert secret not in str(list(AuditLog.objects.values("before", "after")))
    assert owner_api.delete("/api/v1/domains/dkim.test/dns-update/").status_code == 204
    assert owner_api.get("/api/v1/domains/dkim.test/dns-update/").status_code == 404


def test_every_change_is_audited_without_key_material(owner_api, owner, domain):
    key = generated_dkim_key(domain, owner)
    owner_api.post(f"/api/v1/dkim-keys/{key.pk}/retire/")
    entries = AuditLog.objects.filter(object_type="dkimkey")
    assert {"dkim_key.create", "dkim_key.generate", "dkim_key.retire"} <= set(
        entries.values_list("action", flat=True)
    )
    dumped = str(list(entries.values("before", "after", "object_repr")))
    assert key.public_key not in dumped and "PRIVATE" not in dumped


@pytest.mark.worker
@pytest.mark.knot
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_generates_the_key(celery_worker, owner_api, org):
    Domain.objects.create(organisation=org, name="dkim.test")
    body = owner_api.post(
        "/api/v1/domains/dkim.test/dkim-keys/", {"algorithm": "rsa"}, format="json"
    ).json()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = TaskRun.objects.get(pk=body["task_id"])
        if run.finished:
            break
        time.sleep(0.2)
    assert run.state == "succeeded", run.error
    key = owner_api.get(f"/api/v1/dkim-keys/{body['key']['id']}/").json()
    assert key["state"] == "pending" and key["dns_value"].startswith("v=DKIM1; k=rsa; p=")
    assert run.result["dns_name"] == key["dns_name"]
