"""Policy and host services: validation, roles, audit, registration against a real sshd on
127.0.0.80, host-key confirmation and the deployment request's refusals."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from dns_records.models import Domain
from hosts import selectors, services
from hosts.models import Deployment, DeploymentState, Host, Policy
from mailsec import secrets
from mailsec.models import AuditLog, TaskKind, TaskRun
from tests.hosts.deploy_servers import Sshd, binary

SSH_ADDRESS = "127.0.0.80"


@pytest.fixture
def loopback_allowed(settings: Any) -> None:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def sshd(tmp_path: Path, loopback_allowed: None) -> Iterator[Sshd]:
    server = Sshd(tmp_path / "sshd", address=SSH_ADDRESS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def keygen_fingerprint(sshd: Sshd) -> str:
    """The fingerprint as the admin sees it on the host: `ssh-keygen -lf` of the key file."""
    out = subprocess.run(
        [binary("ssh-keygen"), "-lf", str(sshd.directory / "hostkey.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()[1]


def host_input(sshd: Sshd, **changes: Any) -> services.HostInput:
    values: dict[str, Any] = {
        "name": "mx1.acme.test",
        "address": sshd.address,
        "ssh_port": sshd.port,
        **changes,
    }
    return services.HostInput(**values)


@pytest.fixture
def domain(org: Any) -> Domain:
    return Domain.objects.create(organisation=org, name="acme.test")


@pytest.fixture
def policy(org: Any, owner: Any) -> Policy:
    return services.policy_create(organisation=org, name="Strict", values={}, actor=owner)


@pytest.fixture
def host(org: Any, owner: Any, sshd: Sshd, domain: Domain, policy: Policy) -> Host:
    return services.host_register(
        organisation=org, data=host_input(sshd), domains=["acme.test"], policy_id=policy.pk,
        actor=owner,
    )  # fmt: skip


# --- policies ---------------------------------------------------------------------------------


def test_policy_create_stores_the_secure_defaults_and_audits(org: Any, owner: Any) -> None:
    policy = services.policy_create(
        organisation=org, name="Default", values={"message_size_limit": 10_485_760}, actor=owner
    )
    values = selectors.policy_values(policy)
    assert values.message_size_limit == 10_485_760
    assert values.helo_required is True
    assert policy.values["mynetworks"] == ["127.0.0.0/8", "::1/128"]
    assert AuditLog.objects.filter(action="policy.create", object_id=str(policy.pk)).exists()


def test_policy_create_reports_every_invalid_field(org: Any, owner: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.policy_create(
            organisation=org,
            name="Open",
            values={
                "mynetworks": ["0.0.0.0/0"],
                "message_size_limit": 1,
                "rhsbl_client_sites": ["bad zone\nsmtpd_x = y"],
            },
            actor=owner,
        )
    errors = caught.value.message_dict
    assert set(errors) == {"mynetworks", "message_size_limit", "rhsbl_client_sites"}
    assert "open relay" in " ".join(errors["mynetworks"])
    assert not Policy.objects.exists()


def test_policy_create_refuses_an_unknown_field(org: Any, owner: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.policy_create(organisation=org, name="X", values={"relay": True}, actor=owner)
    assert "relay" in caught.value.message_dict


def test_policy_update_changes_only_what_is_given(policy: Policy, owner: Any) -> None:
    services.policy_update(policy=policy, values={"smtpd_soft_error_limit": 5}, actor=owner)
    policy.refresh_from_db()
    assert policy.values["smtpd_soft_error_limit"] == 5
    assert policy.values["smtpd_hard_error_limit"] == 20
    log = AuditLog.objects.get(action="policy.update")
    assert log.before is not None
    assert log.before["values"]["smtpd_soft_error_limit"] == 10


def test_policy_update_hard_limit_below_soft_is_refused(policy: Policy, owner: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.policy_update(policy=policy, values={"smtpd_hard_error_limit": 5}, actor=owner)
    assert "smtpd_hard_error_limit" in caught.value.message_dict
    policy.refresh_from_db()
    assert policy.values["smtpd_hard_error_limit"] == 20


def test_viewer_cannot_write_policies(org: Any, viewer: Any, policy: Policy) -> None:
    with pytest.raises(PermissionDenied):
        services.policy_create(organisation=org, name="V", values={}, actor=viewer)
    with pytest.raises(PermissionDenied):
        services.policy_update(policy=policy, values={}, actor=viewer)
    with pytest.raises(PermissionDenied):
        services.policy_delete(policy=policy, actor=viewer)


def test_policy_in_use_cannot_be_deleted(host: Host, policy: Policy, owner: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.policy_delete(policy=policy, actor=owner)
    assert "mx1.acme.test" in " ".join(caught.value.messages)
    assert Policy.objects.filter(pk=policy.pk).exists()


def test_duplicate_policy_name_is_a_clear_error(policy: Policy, org: Any, owner: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.policy_create(organisation=org, name="Strict", values={}, actor=owner)
    assert "already has a policy" in " ".join(caught.value.messages)


# --- hosts ------------------------------------------------------------------------------------


def test_register_fetches_the_real_host_key_once(host: Host, sshd: Sshd) -> None:
    assert host.host_key == sshd.host_key_line
    assert host.host_key_fingerprint == keygen_fingerprint(sshd)
    assert host.host_key_confirmed is False
    assert [d.name for d in host.domains.all()] == ["acme.test"]


def test_register_stores_the_client_key_encrypted(host: Host) -> None:
    stored = Host.objects.get(pk=host.pk).ssh_private_key
    assert "PRIVATE KEY" not in stored
    assert b"OPENSSH PRIVATE KEY" in secrets.decrypt(stored, context=host.secret_context)
    assert host.ssh_public_key.startswith("ssh-ed25519 ")


def test_register_audits_without_secrets(host: Host) -> None:
    log = AuditLog.objects.get(action="host.register")
    text = str(log.after)
    assert "PRIVATE" not in text
    assert host.ssh_private_key not in text
    assert log.after is not None
    assert log.after["host_key_fingerprint"] == host.host_key_fingerprint


def test_register_with_nothing_listening_creates_nothing(
    org: Any, owner: Any, loopback_allowed: None
) -> None:
    data = services.HostInput(name="mx1.acme.test", address=SSH_ADDRESS, ssh_port=1)
    with pytest.raises(ValidationError) as caught:
        services.host_register(organisation=org, data=data, actor=owner)
    assert "Could not fetch the SSH host key" in " ".join(caught.value.messages)
    assert not Host.objects.exists()
    assert not AuditLog.objects.filter(action="host.register").exists()


def test_register_refuses_an_address_mailsec_may_not_reach(org: Any, owner: Any) -> None:
    data = services.HostInput(name="mx1.acme.test", address="10.1.2.3")
    with pytest.raises(ValidationError) as caught:
        services.host_register(organisation=org, data=data, actor=owner)
    assert "address" in caught.value.message_dict
    assert not Host.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "not a name"),
        ("ssh_port", 70000),
        ("ssh_user", "root; rm -rf /"),
        ("postfix_config_dir", "/etc/../postfix"),
        ("dovecot_config_dir", "relative/dir"),
    ],
)
def test_register_validates_each_field(
    org: Any, owner: Any, loopback_allowed: None, field: str, value: Any
) -> None:
    data = services.HostInput(
        **{"name": "mx1.acme.test", "address": SSH_ADDRESS, "ssh_port": 2222, field: value}
    )
    with pytest.raises(ValidationError) as caught:
        services.host_register(organisation=org, data=data, actor=owner)
    assert field in caught.value.message_dict


def test_register_refuses_another_organisations_domain_and_policy(
    org: Any, other_org: Any, owner: Any, loopback_allowed: None
) -> None:
    Domain.objects.create(organisation=other_org, name="other.test")
    theirs = Policy.objects.create(organisation=other_org, name="Theirs")
    data = services.HostInput(name="mx1.acme.test", address=SSH_ADDRESS, ssh_port=2222)
    with pytest.raises(ValidationError) as caught:
        services.host_register(organisation=org, data=data, domains=["other.test"], actor=owner)
    assert "domains" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        services.host_register(organisation=org, data=data, policy_id=theirs.pk, actor=owner)
    assert "policy" in caught.value.message_dict


def test_viewer_cannot_register(org: Any, viewer: Any, sshd: Sshd) -> None:
    with pytest.raises(PermissionDenied):
        services.host_register(organisation=org, data=host_input(sshd), actor=viewer)


def test_confirm_with_a_wrong_fingerprint_is_refused(host: Host, owner: Any) -> None:
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(ValidationError) as caught:
        services.host_confirm_key(host=host, fingerprint=wrong, actor=owner)
    assert "fingerprint" in caught.value.message_dict
    host.refresh_from_db()
    assert host.host_key_confirmed is False


def test_confirm_with_ssh_keygen_output_pins_the_key(host: Host, owner: Any, sshd: Sshd) -> None:
    line = subprocess.run(
        [binary("ssh-keygen"), "-lf", str(sshd.directory / "hostkey.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    confirmed = services.host_confirm_key(host=host, fingerprint=line, actor=owner)
    assert confirmed.host_key_confirmed is True
    assert confirmed.host_key_confirmed_by == owner
    assert AuditLog.objects.filter(action="host.confirm_key").exists()


def test_viewer_cannot_confirm(host: Host, viewer: Any) -> None:
    with pytest.raises(PermissionDenied):
        services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=viewer)


def test_changing_the_address_refetches_and_unpins_the_key(
    host: Host, owner: Any, sshd: Sshd, tmp_path: Path
) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    other = Sshd(tmp_path / "other", address=SSH_ADDRESS)
    other.start()
    try:
        updated = services.host_update(
            host=host, actor=owner, data=host_input(sshd, ssh_port=other.port)
        )
        assert updated.host_key_fingerprint == keygen_fingerprint(other)
        assert updated.host_key_fingerprint != keygen_fingerprint(sshd)
        assert updated.host_key_confirmed is False
        assert updated.host_key_confirmed_by is None
    finally:
        other.stop()


def test_changing_domains_keeps_the_pinned_key(host: Host, owner: Any, org: Any) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    Domain.objects.create(organisation=org, name="second.test")
    updated = services.host_update(host=host, actor=owner, domains=["second.test", "acme.test"])
    assert sorted(d.name for d in updated.domains.all()) == ["acme.test", "second.test"]
    assert updated.host_key_confirmed is True


def test_host_delete_audits(host: Host, owner: Any) -> None:
    services.host_delete(host=host, actor=owner)
    assert not Host.objects.exists()
    assert AuditLog.objects.filter(action="host.delete").exists()


# --- deployment requests ----------------------------------------------------------------------


def test_deploy_is_refused_before_the_key_is_confirmed(host: Host, owner: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_request(host_id=host.pk, actor=owner)
    assert "host_key" in caught.value.message_dict
    assert not Deployment.objects.exists()
    assert not TaskRun.objects.filter(kind=TaskKind.HOST_DEPLOY).exists()


def test_deploy_queues_one_deployment_and_joins_it(
    host: Host, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = services.deployment_request(host_id=host.pk, actor=owner)
        second = services.deployment_request(host_id=host.pk, actor=owner)
    assert first.pk == second.pk
    assert first.state == DeploymentState.PENDING
    assert first.requested_by == owner
    runs = TaskRun.objects.filter(kind=TaskKind.HOST_DEPLOY)
    assert runs.count() == 1
    assert selectors.deployment_task_run(first) == runs.get()
    assert len(callbacks) == 1


def test_deploy_without_a_policy_is_refused(host: Host, owner: Any) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    services.host_update(host=host, actor=owner, policy_id=None, set_policy=True)
    with pytest.raises(ValidationError) as caught:
        services.deployment_request(host_id=host.pk, actor=owner)
    assert "policy" in caught.value.message_dict


def test_viewer_cannot_deploy(host: Host, owner: Any, viewer: Any) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    with pytest.raises(PermissionDenied):
        services.deployment_request(host_id=host.pk, actor=viewer)


def test_a_deployment_whose_task_ended_unfinished_is_closed_and_a_new_one_queued(
    host: Host, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    with django_capture_on_commit_callbacks(execute=False):
        stuck = services.deployment_request(host_id=host.pk, actor=owner)
        # The reaper failed its task run (the worker died); the deployment row never moved on.
        TaskRun.objects.filter(kind=TaskKind.HOST_DEPLOY).update(state="failed")
        fresh = services.deployment_request(host_id=host.pk, actor=owner)
    assert fresh.pk != stuck.pk
    stuck.refresh_from_db()
    assert stuck.state == DeploymentState.FAILED
    assert "abandoned" in stuck.log
    assert TaskRun.objects.filter(kind=TaskKind.HOST_DEPLOY, state="pending").count() == 1
