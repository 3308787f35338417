"""The hosts and policies API against the contract: shapes, per-organisation 404s, viewers'
403s, no secret in any response, registration against a real sshd on 127.0.0.80."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from dns_records.models import Domain
from hosts.models import Deployment, Host
from hosts.policy import FIELD_HELP
from mailsec.models import TaskKind, TaskRun
from tests.hosts.deploy_servers import Sshd, binary

SSH_ADDRESS = "127.0.0.80"


@pytest.fixture
def sshd(tmp_path: Path, settings: Any) -> Iterator[Sshd]:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    server = Sshd(tmp_path / "sshd", address=SSH_ADDRESS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def domain(org: Any) -> Domain:
    return Domain.objects.create(organisation=org, name="acme.test")


@pytest.fixture
def policy_id(owner_api: APIClient) -> int:
    response = owner_api.post("/api/v1/policies/", {"name": "Strict"}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


@pytest.fixture
def host_body(owner_api: APIClient, sshd: Sshd, domain: Domain, policy_id: int) -> dict[str, Any]:
    response = owner_api.post(
        "/api/v1/hosts/",
        {
            "name": "mx1.acme.test",
            "address": sshd.address,
            "ssh_port": sshd.port,
            "ssh_user": "mailsec",
            "postfix_config_dir": "/etc/postfix",
            "dovecot_config_dir": "/etc/dovecot",
            "domains": ["acme.test"],
            "policy": policy_id,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    return body


def keygen_fingerprint(sshd: Sshd) -> str:
    out = subprocess.run(
        [binary("ssh-keygen"), "-lf", str(sshd.directory / "hostkey.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()[1]


def listed(response: Any) -> list[Any]:
    body = response.json()
    return list(body["results"] if isinstance(body, dict) else body)


def assert_no_secret(response: Any) -> None:
    text = response.content.decode()
    assert "PRIVATE KEY" not in text
    for host in Host.objects.all():
        assert host.ssh_private_key not in text


# --- policies ---------------------------------------------------------------------------------


def test_policy_create_gives_every_field_with_defaults(owner_api: APIClient) -> None:
    response = owner_api.post(
        "/api/v1/policies/", {"name": "Small", "message_size_limit": 5_242_880}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(FIELD_HELP) <= set(body)
    assert body["message_size_limit"] == 5_242_880
    assert body["mynetworks"] == ["127.0.0.0/8", "::1/128"]
    assert body["dnsbl_sites"] == []
    assert body["organisation"] == "acme-mail"


def test_policy_invalid_values_are_a_400_naming_each_field(owner_api: APIClient) -> None:
    response = owner_api.post(
        "/api/v1/policies/",
        {"name": "Open", "mynetworks": ["0.0.0.0/0"], "rhsbl_sender_sites": ["a b"]},
        format="json",
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert {"mynetworks", "rhsbl_sender_sites"} <= set(details)


def test_policy_patch_changes_one_value(owner_api: APIClient, policy_id: int) -> None:
    response = owner_api.patch(
        f"/api/v1/policies/{policy_id}/",
        {"dnsbl_sites": [{"zone": "zen.spamhaus.org", "weight": 2}], "dnsbl_mode": "postscreen"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dnsbl_sites"] == [{"zone": "zen.spamhaus.org", "weight": 2}]
    assert body["name"] == "Strict"
    assert body["message_size_limit"] == 25 * 1024 * 1024


def test_policy_patch_hard_below_soft_is_a_400(owner_api: APIClient, policy_id: int) -> None:
    response = owner_api.patch(
        f"/api/v1/policies/{policy_id}/", {"smtpd_hard_error_limit": 2}, format="json"
    )
    assert response.status_code == 400
    assert "smtpd_hard_error_limit" in response.json()["error"]["details"]


def test_policy_of_another_organisation_is_a_404(outsider_api: APIClient, policy_id: int) -> None:
    assert outsider_api.get(f"/api/v1/policies/{policy_id}/").status_code == 404
    assert (
        outsider_api.patch(f"/api/v1/policies/{policy_id}/", {}, format="json").status_code == 404
    )
    assert listed(outsider_api.get("/api/v1/policies/")) == []


def test_viewer_reads_but_cannot_write_policies(viewer_api: APIClient, policy_id: int) -> None:
    assert viewer_api.get(f"/api/v1/policies/{policy_id}/").status_code == 200
    response = viewer_api.patch(
        f"/api/v1/policies/{policy_id}/", {"message_size_limit": 2_000_000}, format="json"
    )
    assert response.status_code == 403
    assert viewer_api.post("/api/v1/policies/", {"name": "V"}, format="json").status_code == 403
    assert viewer_api.delete(f"/api/v1/policies/{policy_id}/").status_code == 403


def test_policy_in_use_delete_is_a_400(
    owner_api: APIClient, host_body: dict[str, Any], policy_id: int
) -> None:
    response = owner_api.delete(f"/api/v1/policies/{policy_id}/")
    assert response.status_code == 400
    assert "mx1.acme.test" in json.dumps(response.json())


# --- hosts ------------------------------------------------------------------------------------


def test_register_returns_the_contract_with_the_real_fingerprint(
    host_body: dict[str, Any], sshd: Sshd, policy_id: int
) -> None:
    assert host_body["host_key_fingerprint"] == keygen_fingerprint(sshd)
    assert host_body["host_key_confirmed"] is False
    assert host_body["ssh_public_key"].startswith("ssh-ed25519 ")
    assert host_body["domains"] == ["acme.test"]
    assert host_body["policy"] == policy_id
    assert isinstance(host_body["id"], int)
    assert "ssh_private_key" not in host_body


def test_no_response_carries_a_secret(owner_api: APIClient, host_body: dict[str, Any]) -> None:
    pk = host_body["id"]
    for url in (
        "/api/v1/hosts/",
        f"/api/v1/hosts/{pk}/",
        f"/api/v1/hosts/{pk}/rendered/",
        f"/api/v1/hosts/{pk}/deployments/",
        f"/api/v1/hosts/{pk}/events/",
    ):
        response = owner_api.get(url)
        assert response.status_code == 200, (url, response.content)
        assert_no_secret(response)


def test_register_with_an_unreachable_port_is_a_400_and_creates_nothing(
    owner_api: APIClient, sshd: Sshd
) -> None:
    response = owner_api.post(
        "/api/v1/hosts/",
        {"name": "mx1.acme.test", "address": sshd.address, "ssh_port": 1},
        format="json",
    )
    assert response.status_code == 400
    assert "address" in response.json()["error"]["details"]
    assert not Host.objects.exists()


def test_confirm_with_a_wrong_fingerprint_is_refused(
    owner_api: APIClient, host_body: dict[str, Any]
) -> None:
    pk = host_body["id"]
    response = owner_api.post(
        f"/api/v1/hosts/{pk}/confirm-host-key/",
        {"fingerprint": "SHA256:" + "x" * 43},
        format="json",
    )
    assert response.status_code == 400
    assert "fingerprint" in response.json()["error"]["details"]
    assert owner_api.get(f"/api/v1/hosts/{pk}/").json()["host_key_confirmed"] is False


def test_deploy_is_refused_before_confirmation(
    owner_api: APIClient, host_body: dict[str, Any]
) -> None:
    response = owner_api.post(f"/api/v1/hosts/{host_body['id']}/deploy/")
    assert response.status_code == 400
    assert "host_key" in response.json()["error"]["details"]
    assert not Deployment.objects.exists()


def test_confirm_then_deploy_answers_202_with_the_task(
    owner_api: APIClient, host_body: dict[str, Any], sshd: Sshd
) -> None:
    pk = host_body["id"]
    response = owner_api.post(
        f"/api/v1/hosts/{pk}/confirm-host-key/",
        {"fingerprint": keygen_fingerprint(sshd)},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["host_key_confirmed"] is True
    first = owner_api.post(f"/api/v1/hosts/{pk}/deploy/")
    assert first.status_code == 202
    body = first.json()
    run = TaskRun.objects.get(kind=TaskKind.HOST_DEPLOY)
    assert body["task_id"] == str(run.id)
    assert body["url"] == f"/api/v1/tasks/{run.id}/"
    assert body["deployment"]["state"] == "pending"
    again = owner_api.post(f"/api/v1/hosts/{pk}/deploy/")
    assert again.json()["deployment"]["id"] == body["deployment"]["id"]
    listed = owner_api.get(f"/api/v1/hosts/{pk}/deployments/").json()
    assert [(d["id"], d["state"], d["log"]) for d in listed] == [
        (body["deployment"]["id"], "pending", "")
    ]
    assert owner_api.get(body["url"]).status_code == 200


def test_rendered_lists_files_and_hides_secrets(
    owner_api: APIClient, host_body: dict[str, Any]
) -> None:
    response = owner_api.get(f"/api/v1/hosts/{host_body['id']}/rendered/")
    assert response.status_code == 200
    files = response.json()
    paths = [f["path"] for f in files]
    assert "/etc/postfix/main.cf" in paths
    main_cf = next(f for f in files if f["path"] == "/etc/postfix/main.cf")
    assert "message_size_limit = 26214400" in main_cf["content"]
    assert main_cf["status"] == "added"
    assert main_cf["mode"] == "0644"
    for entry in files:
        if entry["secret"]:
            assert set(entry) == {"path", "mode", "sha256", "secret"}


def test_rendered_without_a_policy_is_a_400(
    owner_api: APIClient, host_body: dict[str, Any]
) -> None:
    pk = host_body["id"]
    assert (
        owner_api.patch(f"/api/v1/hosts/{pk}/", {"policy": None}, format="json").status_code == 200
    )
    response = owner_api.get(f"/api/v1/hosts/{pk}/rendered/")
    assert response.status_code == 400
    assert "policy" in response.json()["error"]["details"]


def test_another_organisations_host_is_a_404_everywhere(
    outsider_api: APIClient, host_body: dict[str, Any]
) -> None:
    pk = host_body["id"]
    for method, url in (
        ("get", f"/api/v1/hosts/{pk}/"),
        ("get", f"/api/v1/hosts/{pk}/rendered/"),
        ("get", f"/api/v1/hosts/{pk}/deployments/"),
        ("get", f"/api/v1/hosts/{pk}/events/"),
        ("post", f"/api/v1/hosts/{pk}/deploy/"),
        ("post", f"/api/v1/hosts/{pk}/confirm-host-key/"),
        ("patch", f"/api/v1/hosts/{pk}/"),
        ("delete", f"/api/v1/hosts/{pk}/"),
    ):
        response = getattr(outsider_api, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
    assert listed(outsider_api.get("/api/v1/hosts/")) == []


def test_viewer_reads_hosts_but_cannot_change_them(
    viewer_api: APIClient, host_body: dict[str, Any], sshd: Sshd
) -> None:
    pk = host_body["id"]
    assert viewer_api.get(f"/api/v1/hosts/{pk}/").status_code == 200
    fingerprint = {"fingerprint": keygen_fingerprint(sshd)}
    for method, url, data in (
        ("post", f"/api/v1/hosts/{pk}/confirm-host-key/", fingerprint),
        ("post", f"/api/v1/hosts/{pk}/deploy/", {}),
        ("patch", f"/api/v1/hosts/{pk}/", {"domains": []}),
        ("delete", f"/api/v1/hosts/{pk}/", {}),
        ("post", "/api/v1/hosts/", {"name": "mx2.acme.test", "address": sshd.address}),
    ):
        response = getattr(viewer_api, method)(url, data, format="json")
        assert response.status_code == 403, (method, url, response.content)
    assert Host.objects.get(pk=pk).host_key_confirmed is False


def test_unauthenticated_is_a_401(db: None) -> None:
    assert APIClient().get("/api/v1/hosts/").status_code == 401
    assert APIClient().get("/api/v1/policies/").status_code == 401
