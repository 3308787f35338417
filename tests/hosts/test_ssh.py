"""The SSH adapter against a real sshd on 127.0.0.70 with its own host key."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hosts import ssh
from tests.hosts.deploy_servers import Sshd


@pytest.fixture
def loopback_allowed(settings):
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture
def sshd(tmp_path: Path, loopback_allowed) -> Iterator[Sshd]:
    server = Sshd(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client_key(sshd: Sshd) -> str:
    private, public = ssh.generate_client_key()
    assert public.startswith("ssh-ed25519 ")
    assert "OPENSSH PRIVATE KEY" in private
    sshd.authorize(public)
    return private


def test_fetch_host_key_gives_the_servers_key_and_fingerprint(sshd: Sshd) -> None:
    key = ssh.fetch_host_key(sshd.address, sshd.port, timeout=5)
    assert key.key_line == sshd.host_key_line
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.directory / "hostkey.pub")],
        capture_output=True, text=True, check=True,
    ).stdout.split()[1]  # fmt: skip
    assert key.fingerprint == expected
    assert ssh.fingerprint_of_line(key.key_line) == expected


def test_session_runs_commands_with_quoted_arguments_and_moves_files(
    sshd: Sshd, client_key: str, tmp_path: Path
) -> None:
    with ssh.connect(sshd.address, sshd.port, "root", client_key, sshd.host_key_line, 5) as s:
        done = s.run(["printf", "%s|", "a b", "$(id)", "'; touch /tmp/x"], timeout=10)
        assert done.rc == 0
        assert done.stdout == b"a b|$(id)|'; touch /tmp/x|"
        done = s.run(["cat"], input=b"piped", timeout=10)
        assert done.stdout == b"piped"
        done = s.run(["sh", "-c", "echo oops >&2; exit 3"], timeout=10)
        assert (done.rc, done.stderr) == (3, b"oops\n")
        target = tmp_path / "file.txt"
        s.write(str(target), b"\x00bytes\r\n", 0o600)
        assert target.read_bytes() == b"\x00bytes\r\n"
        assert target.stat().st_mode & 0o777 == 0o600
        assert s.read(str(target)) == b"\x00bytes\r\n"
        assert s.read(str(tmp_path / "missing")) is None


def test_a_changed_host_key_is_refused_before_authenticating(sshd: Sshd, client_key: str) -> None:
    pinned = sshd.host_key_line
    sshd.new_host_key()
    log_before = (sshd.directory / "log").read_text()
    with pytest.raises(ssh.HostKeyMismatch) as caught:
        ssh.connect(sshd.address, sshd.port, "root", client_key, pinned, 5)
    assert caught.value.expected == ssh.fingerprint_of_line(pinned)
    assert caught.value.actual == ssh.fingerprint_of_line(sshd.host_key_line)
    assert caught.value.expected in str(caught.value) and caught.value.actual in str(caught.value)
    # No authentication was attempted: sshd logged no "Accepted" or "publickey" line.
    log = (sshd.directory / "log").read_text()[len(log_before) :]
    assert "Accepted" not in log and "publickey" not in log


def test_no_pinned_key_is_refused(sshd: Sshd, client_key: str) -> None:
    with pytest.raises(ssh.HostKeyMismatch):
        ssh.connect(sshd.address, sshd.port, "root", client_key, "", 5)


def test_a_pinned_key_of_another_type_is_a_mismatch(sshd: Sshd, client_key: str) -> None:
    other = sshd.directory / "rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(other)], check=True
    )
    line = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    with pytest.raises(ssh.HostKeyMismatch):
        ssh.connect(sshd.address, sshd.port, "root", client_key, line, 5)


def test_an_address_outside_the_allowed_networks_is_not_contacted(settings) -> None:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    with pytest.raises(ssh.AddressRefused, match="loopback"):
        ssh.fetch_host_key("127.0.0.70", 22, timeout=2)


def test_a_wrong_client_key_is_refused(sshd: Sshd) -> None:
    private, _public = ssh.generate_client_key()  # never authorized
    with pytest.raises(ssh.SshError, match="refused"):
        ssh.connect(sshd.address, sshd.port, "root", private, sshd.host_key_line, 5)


def test_a_host_name_resolves_through_mailsecs_resolver_and_the_guard_applies(
    sshd: Sshd, tmp_path: Path, settings
) -> None:
    from mailsec.env import Nameserver
    from tests.hosts.deploy_servers import KNOT_ADDRESS
    from tests.servers import KnotServer

    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "deploy.test.zone").write_text(
        "$ORIGIN deploy.test.\n$TTL 300\n"
        "@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.53\n"
        f"mx1 A {sshd.address}\ninternal A 10.0.0.5\n"
    )
    knot = KnotServer(tmp_path / "knot", address=KNOT_ADDRESS, source=zones)
    knot.start()
    try:
        settings.MAILSEC_DNS_NAMESERVERS = [Nameserver(knot.address, knot.port)]
        key = ssh.fetch_host_key("mx1.deploy.test", sshd.port, timeout=5)
        assert key.key_line == sshd.host_key_line
        with pytest.raises(ssh.AddressRefused, match=r"10\.0\.0\.5 is private"):
            ssh.fetch_host_key("internal.deploy.test", sshd.port, timeout=5)
        with pytest.raises(ssh.AddressRefused, match="does not resolve"):
            ssh.fetch_host_key("missing.deploy.test", sshd.port, timeout=5)
    finally:
        knot.stop()
