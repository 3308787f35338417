"""Deployments against real servers: an sshd on 127.0.0.70 standing for the managed host, whose
Postfix (127.0.0.71) and Dovecot (127.0.0.72) keep their config in the test's directories.

The SSH user is root here (the non-root deploy user with the README's sudoers lines is not
exercised by these tests).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from hosts import ssh
from hosts.deploy import deployment_run, lease_take
from hosts.models import DeployedFile, Deployment, DeploymentState, Host, Policy
from mailsec import secrets
from tests.hosts.deploy_servers import DovecotInstance, PostfixInstance, Sshd, binary, run

pytestmark = pytest.mark.django_db(transaction=True)

SIZE = 2 * 1024 * 1024


@dataclass
class Rig:
    sshd: Sshd
    postfix: PostfixInstance
    dovecot: DovecotInstance
    host: Host
    base: Path

    def deploy(self, **kwargs) -> Deployment:
        deployment = Deployment.objects.create(host=self.host)
        deployment_run(deployment.pk, **kwargs)
        deployment.refresh_from_db()
        return deployment

    def postconf_n(self) -> str:
        return run(binary("postconf"), "-c", str(self.postfix.config_dir), "-n")

    def snapshot(self) -> dict[str, bytes]:
        out = {}
        for directory in (self.postfix.config_dir, self.dovecot.config_dir):
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    out[str(path)] = path.read_bytes()
        return out


@pytest.fixture
def rig(tmp_path: Path, org, settings) -> Iterator[Rig]:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    # Postfix's own processes must reach their directories (not under pytest's 0700 tmp dir),
    # and OpenDKIM refuses keys below a world-writable directory such as /tmp.
    base = Path(tempfile.mkdtemp(prefix="mailsec-deploy-", dir="/run"))
    base.chmod(0o755)
    sshd = Sshd(base / "sshd")  # the deploy user's sshd reads authorized_keys as that user
    postfix = PostfixInstance(base / "pf")
    dovecot = DovecotInstance(base / "dc")
    postfix.prepare()
    dovecot.prepare()
    sshd.start()
    started: list[Any] = [sshd]
    try:
        postfix.start()
        started.append(postfix)
        dovecot.start()
        started.append(dovecot)
        private, public = ssh.generate_client_key()
        sshd.authorize(public)
        policy = Policy.objects.create(
            organisation=org,
            name="strict",
            values={"message_size_limit": SIZE, "dkim_signing": False},
        )
        host = Host(
            organisation=org,
            name="mx1.example.org",
            address=sshd.address,
            ssh_port=sshd.port,
            ssh_user="root",
            postfix_config_dir=str(postfix.config_dir),
            dovecot_config_dir=str(dovecot.config_dir),
            opendkim_config_dir=str(base / "opendkim"),
            policy=policy,
            host_key=sshd.host_key_line,
            host_key_fingerprint=ssh.fingerprint_of_line(sshd.host_key_line),
            host_key_confirmed=True,
            ssh_public_key=public,
            facts={
                "addresses": ["192.0.2.25"],
                "upload_dir": str(base / "upload"),
                "postfix_queue_directory": str(postfix.base / "spool"),
                "submission_service": f"{postfix.address}:{postfix.submission_port}",
                "tls_cert_file": str(dovecot.cert),
                "tls_key_file": str(dovecot.key),
                "dovecot_reload": ["/usr/bin/doveadm", "-c", str(dovecot.conf), "reload"],
                "smtp_check": f"{postfix.address}:{postfix.port}",
                "imap_check": f"{dovecot.address}:{dovecot.imap_port}",
            },
        )
        host.ssh_private_key = secrets.encrypt(private.encode(), context=host.secret_context)
        host.save()
        yield Rig(sshd, postfix, dovecot, host, base)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_deployment_changes_postconf_as_the_policy_says_and_a_second_changes_nothing(rig):
    assert f"message_size_limit = {SIZE}" not in rig.postconf_n()
    reloads_before = rig.postfix.reloads()
    first = rig.deploy()
    assert first.state == DeploymentState.SUCCEEDED, first.log
    conf = rig.postconf_n()
    assert f"message_size_limit = {SIZE}" in conf
    assert "smtpd_tls_auth_only = yes" in conf
    assert "check_client_access cidr:" in conf
    assert (rig.dovecot.config_dir / "conf.d" / "99-mailsec.conf").exists()
    assert rig.postfix.reloads() == reloads_before + 1
    assert "$ /usr/sbin/postfix -c" in first.log and "reload" in first.log
    changed = {f["path"] for f in first.files if f["changed"]}
    assert str(rig.postfix.config_dir / "main.cf") in changed
    assert f"+message_size_limit = {SIZE}" in first.diff
    recorded = {row.path: row for row in DeployedFile.objects.filter(host=rig.host)}
    assert set(recorded) == {f["path"] for f in first.files}
    main = recorded[str(rig.postfix.config_dir / "main.cf")]
    assert bytes(main.content) == (rig.postfix.config_dir / "main.cf").read_bytes()
    # No staging or temporary files left behind.
    assert not Path(str(rig.postfix.config_dir) + ".mailsec-staging").exists()
    assert not list(rig.postfix.config_dir.glob(".*.mailsec-new"))
    assert Path(str(rig.postfix.config_dir) + ".mailsec-backup").is_dir()

    pid = rig.postfix.master_pid()
    snapshot = rig.snapshot()
    dovecot_log = rig.dovecot.log()
    second = rig.deploy()
    assert second.state == DeploymentState.UNCHANGED, second.log
    assert not [line for line in second.log.splitlines() if "$ " in line and "reload" in line]
    assert rig.postfix.reloads() == reloads_before + 1
    assert rig.postfix.master_pid() == pid
    assert rig.snapshot() == snapshot
    assert "reload" not in rig.dovecot.log()[len(dovecot_log) :].lower()
    assert not any(f["changed"] for f in second.files)


def test_the_service_enforces_the_deployed_size_limit(rig):
    assert rig.deploy().state == DeploymentState.SUCCEEDED
    with rig.postfix.smtp() as client:
        client.ehlo("client.example.net")
        assert client.esmtp_features["size"] == str(SIZE)
        code, _ = client.mail("a@example.net", [f"SIZE={SIZE + 1}"])
        assert code == 552


def test_an_invalid_config_is_refused_at_validation_and_the_live_files_stay(rig):
    # A hand edit broke the host's Dovecot config after it started: doveconf refuses the
    # staging copy, so mailsec writes nothing and reloads nothing.
    (rig.dovecot.config_dir / "conf.d" / "50-admin.conf").write_text("no_such_setting = 1\n")
    before = rig.snapshot()
    reloads = rig.postfix.reloads()
    deployment = rig.deploy()
    assert deployment.state == DeploymentState.FAILED, deployment.log
    assert "refused at validation" in deployment.log
    assert "doveconf -n failed" in deployment.log and "no_such_setting" in deployment.log
    assert rig.snapshot() == before
    assert rig.postfix.reloads() == reloads
    assert not Path(str(rig.dovecot.config_dir) + ".mailsec-staging").exists()
    assert not DeployedFile.objects.filter(host=rig.host).exists()
    assert rig.host.events.filter(kind="deploy_failed").exists()


def test_a_postfix_warning_fails_validation(rig):
    # The admin's own main.cf has a line Postfix warns about: mailsec refuses to deploy on it.
    main = rig.postfix.config_dir / "main.cf"
    main.write_bytes(main.read_bytes() + b"mailsec_test_unknown_parameter = 1\n")
    before = rig.snapshot()
    deployment = rig.deploy()
    assert deployment.state == DeploymentState.FAILED, deployment.log
    assert "unused parameter" in deployment.log
    assert rig.snapshot() == before


def test_a_reload_failure_rolls_back_and_the_service_still_answers(rig):
    marker = rig.base / "failed-once"
    script = rig.base / "reload-once.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e {marker} ]; then touch {marker}; echo "reload refused" >&2; exit 1; fi\n'
        f"exec /usr/sbin/postfix -c {rig.postfix.config_dir} reload\n"
    )
    script.chmod(0o755)
    rig.host.facts = {**rig.host.facts, "postfix_reload": [str(script)]}
    rig.host.save()
    before = rig.snapshot()
    deployment = rig.deploy()
    assert deployment.state == DeploymentState.ROLLED_BACK, deployment.log
    assert "reload refused" in deployment.log
    assert "rolled back" in deployment.log
    assert rig.snapshot() == before
    assert f"message_size_limit = {SIZE}" not in rig.postconf_n()
    assert ssh.service_banner(rig.postfix.address, rig.postfix.port).startswith("220")
    assert not DeployedFile.objects.filter(host=rig.host).exists()
    assert rig.host.events.filter(kind="rolled_back").exists()


def test_a_changed_host_key_aborts_before_anything_is_written(rig):
    rig.sshd.new_host_key()
    before = rig.snapshot()
    deployment = rig.deploy()
    assert deployment.state == DeploymentState.FAILED
    assert "host key mismatch" in deployment.log
    assert rig.host.host_key_fingerprint in deployment.log
    assert ssh.fingerprint_of_line(rig.sshd.host_key_line) in deployment.log
    assert rig.snapshot() == before
    log = (rig.sshd.directory / "log").read_text()
    assert "Accepted publickey" not in log


def test_two_concurrent_deployments_serialise(rig):
    first = Deployment.objects.create(host=rig.host)
    second = Deployment.objects.create(host=rig.host)
    errors: list[BaseException] = []

    def work(pk: int) -> None:
        try:
            deployment_run(pk, wait=120)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(d.pk,)) for d in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors
    first.refresh_from_db()
    second.refresh_from_db()
    states = sorted([first.state, second.state])
    assert states == sorted([DeploymentState.SUCCEEDED, DeploymentState.UNCHANGED]), (
        first.log + second.log
    )
    assert first.started_at and second.started_at
    a, b = sorted([first, second], key=lambda d: d.started_at.timestamp() if d.started_at else 0.0)
    assert a.finished_at is not None and b.started_at is not None
    assert a.finished_at <= b.started_at
    rig.host.refresh_from_db()
    assert rig.host.deploying_until is None


def test_an_expired_lease_is_taken_over_and_a_held_one_fails_clearly(rig):
    from datetime import timedelta

    from django.utils import timezone

    Host.objects.filter(pk=rig.host.pk).update(
        deploying_until=timezone.now() - timedelta(seconds=1)
    )
    assert rig.deploy().state == DeploymentState.SUCCEEDED
    assert lease_take(rig.host.pk)
    held = rig.deploy(wait=0.5)
    assert held.state == DeploymentState.FAILED
    assert "another deployment holds this host" in held.log


def test_a_redelivered_finished_deployment_does_nothing(rig):
    deployment = rig.deploy()
    assert deployment.state == DeploymentState.SUCCEEDED
    log = deployment.log
    deployment_run(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.log == log


# --- end to end: DKIM signing, the local blacklist ---------------------------------------------


def _zone(directory: Path, domain: str, name: str, value: str) -> Path:
    directory.mkdir(parents=True)
    chunks = " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))
    (directory / f"{domain}.zone").write_text(
        f"$ORIGIN {domain}.\n$TTL 300\n"
        f"@ SOA ns1.{domain}. hostmaster.{domain}. 1 3600 600 86400 300\n"
        f"@ NS ns1.{domain}.\nns1 A 192.0.2.53\n"
        f"{name}. TXT {chunks}\n"
    )
    return directory


def test_mail_after_deployment_is_dkim_signed_blacklisted_clients_are_refused(rig, owner):
    import smtplib
    import subprocess
    import time

    import dkim
    import dns.message
    import dns.query
    from aiosmtpd.controller import Controller

    from blocklists.models import BlacklistEntry
    from dns_records.models import DkimKey, DkimKeyState, Domain
    from tests.conftest import generated_dkim_key
    from tests.hosts.deploy_servers import KNOT_ADDRESS, OPENDKIM_ADDRESS
    from tests.servers import KnotServer, free_port

    domain = Domain.objects.create(organisation=rig.host.organisation, name="example.org")
    key = generated_dkim_key(domain, owner, algorithm="rsa")
    DkimKey.objects.filter(pk=key.pk).update(state=DkimKeyState.ACTIVE)
    rig.host.domains.add(domain)
    BlacklistEntry.objects.create(
        organisation=rig.host.organisation, network="127.0.0.76/32", reason="Test spammer"
    )
    BlacklistEntry.objects.create(  # expired: not deployed
        organisation=rig.host.organisation,
        network="127.0.0.77/32",
        reason="Old",
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    policy = rig.host.policy
    policy.values = {**policy.values, "dkim_signing": True}
    policy.save()

    knot = KnotServer(
        rig.base / "knot",
        address=KNOT_ADDRESS,
        source=_zone(rig.base / "zones", "example.org", key.dns_name, key.dns_value),
    )
    received: list[bytes] = []

    class Capture:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    capture_port = free_port("127.0.0.75")
    controller = Controller(Capture(), hostname="127.0.0.75", port=capture_port)
    run_dir = rig.base / "opendkim-run"
    run_dir.mkdir()
    shutil.chown(run_dir, "opendkim", "opendkim")
    rsa_port, ed_port = free_port(OPENDKIM_ADDRESS), free_port(OPENDKIM_ADDRESS)
    rig.host.facts = {
        **rig.host.facts,
        "opendkim_address": OPENDKIM_ADDRESS,
        "opendkim_ports": [rsa_port, ed_port],
        "opendkim_run_dir": str(run_dir),
    }
    rig.host.save()
    opendkim_pid = run_dir / "mailsec-rsa.pid"
    knot.start()
    controller.start()
    try:
        # The admin relays everything through the capture server.
        run(binary("postconf"), "-c", str(rig.postfix.config_dir), "-e",
            f"relayhost = [127.0.0.75]:{capture_port}")  # fmt: skip
        run(binary("postfix"), "-c", str(rig.postfix.config_dir), "reload")
        deployment = rig.deploy()
        assert deployment.state == DeploymentState.SUCCEEDED, deployment.log
        assert "opendkim -n" in deployment.log
        # The upload directory does not keep the rendered files (a private key among them).
        assert not list((rig.base / "upload").rglob("*.private"))
        key_file = next((rig.base / "opendkim" / "keys").rglob("*.private"))
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.owner() == "opendkim"
        # The private key never reaches the diff or the deployed-file record.
        assert "PRIVATE KEY" not in deployment.diff
        assert DeployedFile.objects.get(path=str(key_file)).content in (b"", memoryview(b""))
        assert (
            "127.0.0.76/32 REJECT Test spammer"
            in (rig.postfix.config_dir / "mailsec" / "client_blacklist.cidr").read_text()
        )
        assert (
            "127.0.0.77"
            not in (rig.postfix.config_dir / "mailsec" / "client_blacklist.cidr").read_text()
        )

        subprocess.run(
            [binary("opendkim"), "-x", str(rig.base / "opendkim" / "mailsec-rsa.conf")],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        from tests.servers import wait_for_tcp

        assert wait_for_tcp(OPENDKIM_ADDRESS, rsa_port)

        message = (
            "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
            "Subject: signed by mailsec's key\r\nMessage-ID: <1@example.org>\r\n\r\nHello.\r\n"
        )
        with rig.postfix.smtp("127.0.0.75") as client:
            client.ehlo("client.example.org")
            client.sendmail("alice@example.org", ["bob@example.net"], message)
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.2)
        assert received, rig.postfix.log()[-3000:]
        signed = received[0]
        assert b"DKIM-Signature:" in signed
        assert f"s={key.selector}".encode() in signed and b"d=example.org" in signed

        def dnsfunc(name, timeout=5):
            query = dns.message.make_query(name.decode().rstrip("."), "TXT")
            reply = dns.query.udp(query, knot.address, port=knot.port, timeout=timeout)
            for rrset in reply.answer:
                for rdata in rrset:
                    return b"".join(rdata.strings)
            return b""

        assert dkim.verify(signed, dnsfunc=dnsfunc)

        # The blacklisted address is refused with its reason; the size limit holds.
        with rig.postfix.smtp("127.0.0.76") as client:
            client.ehlo("client.example.net")
            client.mail("spam@example.net")
            code, reply = client.rcpt("bob@example.net")
            assert code == 554 and b"Test spammer" in reply
        with rig.postfix.smtp("127.0.0.75") as client:
            client.ehlo("client.example.org")
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("alice@example.org", ["bob@example.net"], "x" * (SIZE + 10))
            assert refused.value.smtp_code == 552
    finally:
        if opendkim_pid.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(opendkim_pid.read_text().split()[0]), signal.SIGTERM)
        controller.stop()
        knot.stop()


# --- least privilege: a dedicated deploy user with exactly the README's sudoers lines ----------


def test_a_non_root_deploy_user_with_only_the_sudoers_lines_deploys(rig):
    import subprocess
    import time
    import uuid

    from hosts.deploy import HostCommands

    user = f"msdeploy{uuid.uuid4().hex[:6]}"
    sudoers = Path(f"/etc/sudoers.d/{user}")
    if shutil.which("sudo") is None or shutil.which("useradd", path="/usr/sbin:/sbin") is None:
        from tests.servers import missing

        missing("sudo or useradd is not installed (scripts/install-system-deps installs sudo)")
    upload = rig.base / "upload"  # the deploy user's home, as the README sets it up
    subprocess.run(
        ["/usr/sbin/useradd", "-M", "-d", str(upload), "-s", "/bin/sh", user], check=True
    )
    try:
        subprocess.run(["/usr/sbin/usermod", "-p", "*", user], check=True)  # not locked
        upload.mkdir()
        shutil.chown(upload, user, user)
        upload.chmod(0o700)
        rig.host.ssh_user = user
        rig.host.save()
        lines = HostCommands.for_host(rig.host).sudoers(user)
        assert not any("*" in line or "ALL=(root) NOPASSWD: ALL" in line for line in lines)
        sudoers.write_text("\n".join(lines) + "\n")
        sudoers.chmod(0o440)
        subprocess.run(["/usr/sbin/visudo", "-cf", str(sudoers)], check=True, capture_output=True)

        first = rig.deploy()
        assert first.state == DeploymentState.SUCCEEDED, first.log
        assert "$ sudo -n /usr/bin/rsync" in first.log
        assert f"message_size_limit = {SIZE}" in rig.postconf_n()
        main = rig.postfix.config_dir / "main.cf"
        assert main.owner() == "root"
        assert (rig.postfix.config_dir / "mailsec" / "client_blacklist.cidr").owner() == "root"
        second = rig.deploy()
        assert second.state == DeploymentState.UNCHANGED, second.log

        # Anything else is refused by sudo.
        with ssh.connect(
            rig.sshd.address,
            rig.sshd.port,
            user,
            secrets.decrypt(rig.host.ssh_private_key, context=rig.host.secret_context).decode(),
            rig.sshd.host_key_line,
            5,
        ) as session:
            done = session.run(["sudo", "-n", "/usr/bin/cat", "/etc/shadow"], timeout=10)
            assert done.rc != 0 and b"root:" not in done.stdout
            done = session.run(
                ["sudo", "-n", "/usr/bin/rsync", "-a", "--", "/etc/", f"{upload}/etc/"], timeout=10
            )
            assert done.rc != 0
    finally:
        sudoers.unlink(missing_ok=True)
        # sshd's session process for the user may outlive the connection for a moment.
        for _ in range(40):
            if subprocess.run(["/usr/sbin/userdel", user], capture_output=True).returncode in (
                0,
                6,  # no such user
            ):
                break
            time.sleep(0.25)
        else:
            subprocess.run(["/usr/sbin/userdel", "-f", user], check=False, capture_output=True)


def test_the_readme_lists_exactly_the_sudoers_lines_the_engine_needs():
    from hosts.deploy import HostCommands
    from tests.servers import REPO

    host = Host(name="mx1.example.org", address="192.0.2.25", ssh_user="mailsec")
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Managed hosts: the deploy user", 1)[1]
    block = section.split("sudoers lines are exactly", 1)[1].split("```text\n", 1)[1]
    assert block.split("```", 1)[0].splitlines() == HostCommands.for_host(host).sudoers("mailsec")


def test_a_requested_deployment_runs_on_a_real_worker_and_a_redelivery_does_nothing(
    rig, owner, celery_worker
):
    import time

    from hosts import tasks
    from hosts.services import deployment_request
    from mailsec.models import TaskRun, TaskState

    deployment = deployment_request(host_id=rig.host.pk, actor=owner)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.state not in (DeploymentState.PENDING, DeploymentState.RUNNING):
            break
        time.sleep(0.5)
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.log
    assert deployment.requested_by == owner
    assert f"message_size_limit = {SIZE}" in rig.postconf_n()
    run = TaskRun.objects.get(object_type="deployment", object_id=str(deployment.pk))
    for _ in range(40):
        run.refresh_from_db()
        if run.state == TaskState.SUCCEEDED:
            break
        time.sleep(0.25)
    assert run.state == TaskState.SUCCEEDED
    assert run.result == {"state": "succeeded", "deployment": deployment.pk}
    # A redelivered message (late acks after a lost worker) finds the run finished.
    log, reloads = deployment.log, rig.postfix.reloads()
    tasks.deploy_host(str(run.id), deployment.pk)
    deployment.refresh_from_db()
    assert deployment.log == log
    assert rig.postfix.reloads() == reloads


def test_facts_the_renderer_refuses_fail_the_deployment_with_every_problem(rig):
    rig.host.facts = {**rig.host.facts, "smtp_service": "smtp; rm -rf /", "opendkim_ports": [1]}
    rig.host.save()
    before = rig.snapshot()
    deployment = rig.deploy()
    assert deployment.state == DeploymentState.FAILED
    assert "smtp_service" in deployment.log and "opendkim_ports" in deployment.log
    assert rig.snapshot() == before
    assert not [line for line in deployment.log.splitlines() if "$ " in line and "rsync" in line]


def test_a_redelivered_running_deployment_takes_over_its_dead_workers_lease(rig):
    # A worker died mid-deployment: its deployment is "running" and its lease still held.
    deployment = Deployment.objects.create(
        host=rig.host, state=DeploymentState.RUNNING, log="12:00:00 connecting\n"
    )
    Host.objects.filter(pk=rig.host.pk).update(
        deploying_until=timezone.now() + timedelta(minutes=10)
    )
    deployment_run(deployment.pk, wait=1)
    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.log
    assert deployment.log.startswith("12:00:00 connecting\n")
    assert "lease taken over from this deployment's previous worker" in deployment.log
    # Another deployment does not take a lease held by a running one.
    other = Deployment.objects.create(host=rig.host, state=DeploymentState.RUNNING)
    assert lease_take(rig.host.pk)
    held = rig.deploy(wait=0.5)
    assert held.state == DeploymentState.FAILED and "another deployment holds" in held.log
    other.delete()
