"""The hosts and policies pages: register (real sshd on 127.0.0.80), confirm the key, deploy,
the deployments fragment polling while unfinished, policies with every control; roles and
organisations respected, no secret on any page."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from dns_records.models import DkimKey, DkimKeyState, Domain
from hosts import services
from hosts.models import Deployment, DeploymentState, Host, HostEvent, Policy
from hosts.policy import FIELD_HELP
from tests.conftest import generated_dkim_key
from tests.hosts.deploy_servers import Sshd, binary

HTMX = {"HX-Request": "true"}
SSH_ADDRESS = "127.0.0.80"


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


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
def policy(org: Any, owner: Any) -> Policy:
    return services.policy_create(organisation=org, name="Strict", values={}, actor=owner)


@pytest.fixture
def host(org: Any, owner: Any, sshd: Sshd, domain: Domain, policy: Policy) -> Host:
    return services.host_register(
        organisation=org,
        data=services.HostInput(name="mx1.acme.test", address=sshd.address, ssh_port=sshd.port),
        domains=["acme.test"], policy_id=policy.pk, actor=owner,
    )  # fmt: skip


def keygen_fingerprint(sshd: Sshd) -> str:
    out = subprocess.run(
        [binary("ssh-keygen"), "-lf", str(sshd.directory / "hostkey.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()[1]


def assert_no_secret(page: str) -> None:
    assert "PRIVATE KEY" not in page
    for found in Host.objects.all():
        assert found.ssh_private_key not in page


def test_registering_from_the_form_fetches_the_key_and_opens_the_host(
    owner: Any, sshd: Sshd, domain: Domain, policy: Policy
) -> None:
    client = login(owner)
    page = client.get("/hosts/").content.decode()
    assert 'id="host-add"' in page and "Register and fetch the host key" in page
    response = client.post(
        "/hosts/add/",
        {
            "name": "mx1.acme.test", "address": sshd.address, "ssh_port": sshd.port,
            "ssh_user": "mailsec", "postfix_config_dir": "/etc/postfix",
            "dovecot_config_dir": "/etc/dovecot", "opendkim_config_dir": "/etc/opendkim",
            "domains": ["acme.test"], "policy": str(policy.pk),
        },
        headers=HTMX,
    )  # fmt: skip
    host = Host.objects.get()
    assert response.status_code == 204
    assert response["HX-Redirect"] == f"/hosts/{host.pk}/"
    page = client.get(f"/hosts/{host.pk}/").content.decode()
    assert keygen_fingerprint(sshd) in page
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in page
    assert host.ssh_public_key in page
    assert_no_secret(page)


def test_a_bad_registration_shows_the_errors_and_creates_nothing(
    owner: Any, sshd: Sshd, domain: Domain
) -> None:
    response = login(owner).post(
        "/hosts/add/",
        {
            "name": "mx1.acme.test", "address": sshd.address, "ssh_port": 1,
            "ssh_user": "mailsec", "postfix_config_dir": "/etc/postfix",
            "dovecot_config_dir": "/etc/dovecot", "opendkim_config_dir": "/etc/opendkim",
        },
        headers=HTMX,
    )  # fmt: skip
    assert response.status_code == 200
    assert "Could not fetch the SSH host key" in response.content.decode()
    assert not Host.objects.exists()


def test_the_host_page_shows_what_a_deployment_would_write(
    owner: Any, host: Host, domain: Domain
) -> None:
    key = generated_dkim_key(domain, owner, algorithm="ed25519", selector="s1")
    DkimKey.objects.filter(pk=key.pk).update(state=DkimKeyState.ACTIVE)
    page = login(owner).get(f"/hosts/{host.pk}/").content.decode()
    assert "/etc/postfix/main.cf" in page
    assert "message_size_limit = 26214400" in page  # the diff of main.cf, as new
    assert "secret, not shown" in page
    assert_no_secret(page)


def test_a_wrong_fingerprint_is_refused_on_the_page(owner: Any, host: Host) -> None:
    response = login(owner).post(
        f"/hosts/{host.pk}/confirm-key/", {"fingerprint": "SHA256:" + "A" * 43}, headers=HTMX
    )
    assert "This is not the fingerprint" in response.content.decode()
    host.refresh_from_db()
    assert host.host_key_confirmed is False


def test_confirm_then_deploy_polls_until_the_deployment_ends(
    owner: Any, host: Host, sshd: Sshd
) -> None:
    client = login(owner)
    fragment = client.post(
        f"/hosts/{host.pk}/confirm-key/", {"fingerprint": keygen_fingerprint(sshd)}, headers=HTMX
    ).content.decode()
    assert "confirmed" in fragment
    fragment = client.post(f"/hosts/{host.pk}/deploy/", headers=HTMX).content.decode()
    deployment = Deployment.objects.get()
    assert f'id="deployment-{deployment.pk}"' in fragment
    assert 'hx-trigger="every 2s"' in fragment
    Deployment.objects.filter(pk=deployment.pk).update(
        state=DeploymentState.SUCCEEDED, log="validated\nreloaded postfix"
    )
    fragment = client.get(f"/hosts/{host.pk}/deployments/", headers=HTMX).content.decode()
    assert "every 2s" not in fragment
    assert "reloaded postfix" in fragment


def test_deploy_before_confirmation_says_why(owner: Any, host: Host) -> None:
    fragment = login(owner).post(f"/hosts/{host.pk}/deploy/", headers=HTMX).content.decode()
    assert "Confirm mx1.acme.test" in fragment
    assert not Deployment.objects.exists()


def test_drift_events_show_their_diff(owner: Any, host: Host) -> None:
    HostEvent.objects.create(
        host=host, kind="drift", summary="main.cf changed by hand",
        details={"diff": "-smtpd_helo_required = yes\n+smtpd_helo_required = no\n"},
    )  # fmt: skip
    page = login(owner).get(f"/hosts/{host.pk}/").content.decode()
    assert "main.cf changed by hand" in page
    assert "+smtpd_helo_required = no" in page


def test_viewer_sees_no_write_controls_and_cannot_write(
    viewer: Any, host: Host, sshd: Sshd
) -> None:
    client = login(viewer)
    page = client.get(f"/hosts/{host.pk}/").content.decode()
    assert host.host_key_fingerprint in page
    assert "hx-post" not in page
    fragment = client.post(
        f"/hosts/{host.pk}/confirm-key/", {"fingerprint": keygen_fingerprint(sshd)}, headers=HTMX
    ).content.decode()
    assert "cannot change it" in fragment
    host.refresh_from_db()
    assert host.host_key_confirmed is False
    assert client.post(f"/hosts/{host.pk}/delete/").status_code == 403


def test_another_organisations_host_is_a_404(outsider: Any, host: Host) -> None:
    client = login(outsider)
    for url in (f"/hosts/{host.pk}/", f"/hosts/{host.pk}/deployments/"):
        assert client.get(url).status_code == 404
    for url in (f"/hosts/{host.pk}/deploy/", f"/hosts/{host.pk}/confirm-key/"):
        assert client.post(url, headers=HTMX).status_code == 404
    assert "mx1.acme.test" not in client.get("/hosts/").content.decode()


def test_the_domain_page_lists_the_hosts_serving_it(owner: Any, host: Host, domain: Domain) -> None:
    client = login(owner)
    assert f"/domains/{domain.pk}/hosts/" in client.get(f"/domains/{domain.pk}/").content.decode()
    fragment = client.get(f"/domains/{domain.pk}/hosts/", headers=HTMX).content.decode()
    assert "mx1.acme.test" in fragment


# --- policies ---------------------------------------------------------------------------------


def test_the_policy_form_has_every_control_with_its_help(owner: Any) -> None:
    page = login(owner).get("/policies/add/").content.decode()
    for number in range(1, 14):
        assert f'id="control-{number}"' in page
    for name, help_text in FIELD_HELP.items():
        assert f'name="{name}"' in page
        assert help_text.split("(")[0].strip()[:40] in page.replace("&#x27;", "'")


def test_creating_a_policy_from_the_form(owner: Any, org: Any) -> None:
    client = login(owner)
    page = client.get("/policies/add/").content.decode()
    fields = dict(re.findall(r'name="([a-z_]+)"[^>]*value="([^"]*)"', page))
    data = {k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"}
    data.update(
        name="Relaxed",
        message_size_limit="10485760",
        mynetworks="127.0.0.0/8\n10.1.0.0/16",
        dnsbl_sites="zen.spamhaus.org 2",
        dnsbl_mode="postscreen",
        reverse_dns="reverse",
        tls_min_version="TLSv1.2",
        helo_required="on",
    )
    response = client.post("/policies/add/", data)
    policy = Policy.objects.get(name="Relaxed")
    assert response.status_code == 302
    assert policy.values["message_size_limit"] == 10485760
    assert policy.values["mynetworks"] == ["127.0.0.0/8", "10.1.0.0/16"]
    assert policy.values["dnsbl_sites"] == [{"zone": "zen.spamhaus.org", "weight": 2}]
    assert policy.values["helo_required"] is True
    assert policy.values["dkim_signing"] is False  # an unticked box is off


def test_an_open_relay_policy_is_refused_with_the_reason(owner: Any, policy: Policy) -> None:
    data = {**policy.values, "name": policy.name, "mynetworks": "0.0.0.0/0"}
    data = {k: v for k, v in data.items() if not isinstance(v, (list, bool))}
    data.update(mynetworks="0.0.0.0/0", dnsbl_sites="")
    page = login(owner).post(f"/policies/{policy.pk}/", data).content.decode()
    assert "open relay" in page
    policy.refresh_from_db()
    assert policy.values["mynetworks"] == ["127.0.0.0/8", "::1/128"]


def test_viewer_sees_the_policy_read_only(viewer: Any, policy: Policy) -> None:
    client = login(viewer)
    page = client.get(f"/policies/{policy.pk}/").content.decode()
    assert "Your role lets you read this policy" in page
    assert "Save policy" not in page
    data = {"name": "Hijacked", "message_size_limit": "2000000"}
    client.post(f"/policies/{policy.pk}/", data)
    policy.refresh_from_db()
    assert policy.name == "Strict"


def test_another_organisations_policy_is_a_404(outsider: Any, policy: Policy) -> None:
    assert login(outsider).get(f"/policies/{policy.pk}/").status_code == 404


def test_a_new_port_from_the_page_refetches_the_key_to_confirm_again(
    owner: Any, host: Host, sshd: Sshd, tmp_path: Path
) -> None:
    services.host_confirm_key(host=host, fingerprint=host.host_key_fingerprint, actor=owner)
    other = Sshd(tmp_path / "other", address=SSH_ADDRESS)
    other.start()
    try:
        response = login(owner).post(
            f"/hosts/{host.pk}/connection/",
            {
                "name": host.name, "address": host.address, "ssh_port": other.port,
                "ssh_user": host.ssh_user, "postfix_config_dir": host.postfix_config_dir,
                "dovecot_config_dir": host.dovecot_config_dir,
                "opendkim_config_dir": host.opendkim_config_dir,
            },
            headers=HTMX,
        )  # fmt: skip
        assert response.status_code == 204
        host.refresh_from_db()
        assert host.ssh_port == other.port
        assert host.host_key_fingerprint == keygen_fingerprint(other)
        assert host.host_key_confirmed is False
    finally:
        other.stop()


def test_a_bad_directory_from_the_page_is_shown_and_changes_nothing(owner: Any, host: Host) -> None:
    fragment = login(owner).post(
        f"/hosts/{host.pk}/connection/",
        {
            "name": host.name, "address": host.address, "ssh_port": host.ssh_port,
            "ssh_user": host.ssh_user, "postfix_config_dir": "/etc/postfix/../../root",
            "dovecot_config_dir": host.dovecot_config_dir,
            "opendkim_config_dir": host.opendkim_config_dir,
        },
        headers=HTMX,
    ).content.decode()  # fmt: skip
    assert "not an absolute path of plain names" in fragment.replace("&#x27;", "'")
    host.refresh_from_db()
    assert host.postfix_config_dir == "/etc/postfix"
