"""OpenDKIM's files as mailsec renders them, and the real OpenDKIM signing with them.

Each instance (one per algorithm) gets the rendered tables and keys in a temporary directory,
`opendkim -n` checks its configuration, and, started as a milter on a loopback address, it
signs a message passed to it over the milter protocol the way an MTA would. mailsec's verifier
then checks both signatures against the records a test-owned Knot serves.

opendkim-testkey is not used: it asks the system resolver, which cannot be pointed at a Knot
on a free port, and the signatures verified through mailsec's resolver prove more.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dns_records.dkim import DkimAlgorithm, GeneratedKey, generate_key, record_name, record_value
from dns_records.dkim_verify import verify_message
from dns_records.opendkim import (
    PRIVATE_KEY_MODE,
    SigningKey,
    instance_settings,
    render_opendkim,
)
from dns_records.resolver import Resolver
from mailsec.env import parse_nameserver
from tests.dns_records.test_dkim_verify import write_zone
from tests.servers import KnotServer, free_port, missing, stop_process, wait_for_tcp

DOMAIN = "sign.test"
MILTER_ADDRESS = "127.0.0.19"
KNOT_ADDRESS = "127.0.0.18"


def pem(algorithm: str) -> bytes:
    return f"-----BEGIN PRIVATE KEY-----\n{algorithm}\n-----END PRIVATE KEY-----\n".encode()


def key(domain: str, selector: str, algorithm: str = "rsa") -> SigningKey:
    return SigningKey(domain, selector, algorithm, pem(algorithm))


def files(keys: list[SigningKey], key_dir: str = "/etc/opendkim/keys") -> dict[str, bytes]:
    return {f.path: f.content for f in render_opendkim(keys, key_dir=key_dir)}


# --- rendering ----------------------------------------------------------------------------------


def test_key_table_names_each_key_with_its_domain_selector_and_file():
    rendered = files([key("example.org", "ms202612r")])
    assert rendered["KeyTable"] == (
        b"ms202612r._domainkey.example.org "
        b"example.org:ms202612r:/etc/opendkim/keys/example.org/ms202612r.private\n"
    )
    assert rendered["SigningTable"] == b"*@example.org ms202612r._domainkey.example.org\n"
    assert rendered["keys/example.org/ms202612r.private"] == pem("rsa")


def test_each_algorithm_has_its_own_tables_listing_every_key_of_a_domain():
    rendered = files(
        [key("a.test", "r1"), key("a.test", "r2"), key("a.test", "e1", "ed25519")],
        key_dir="/srv/dkim/keys/",
    )
    assert rendered["SigningTable"] == (
        b"*@a.test r1._domainkey.a.test\n*@a.test r2._domainkey.a.test\n"
    )
    assert rendered["ed25519/SigningTable"] == b"*@a.test e1._domainkey.a.test\n"
    assert rendered["ed25519/KeyTable"] == (
        b"e1._domainkey.a.test a.test:e1:/srv/dkim/keys/a.test/e1.private\n"
    )


def test_private_keys_are_readable_by_their_owner_only():
    modes = {f.path: f.mode for f in render_opendkim([key("a.test", "r1")])}
    assert modes["keys/a.test/r1.private"] == PRIVATE_KEY_MODE == 0o600
    assert modes["KeyTable"] == 0o644


def test_the_order_is_the_same_whatever_order_the_keys_come_in():
    keys = [key("b.test", "s2"), key("a.test", "s1", "ed25519"), key("b.test", "s1")]
    assert render_opendkim(keys) == render_opendkim(list(reversed(keys)))
    assert [f.path for f in render_opendkim(keys)] == [
        "KeyTable", "SigningTable", "ed25519/KeyTable", "ed25519/SigningTable",
        "keys/a.test/s1.private", "keys/b.test/s1.private", "keys/b.test/s2.private",
    ]  # fmt: skip


def test_no_keys_render_empty_tables():
    assert files([]) == {
        "KeyTable": b"", "SigningTable": b"", "ed25519/KeyTable": b"", "ed25519/SigningTable": b"",
    }  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        key("../etc", "s1"),
        key("a.test", "../s1"),
        key("a.test", "S1"),
        key("a.test/x", "s1"),
        key("a.test", "s1", "dsa"),
    ],
)
def test_names_that_are_not_dns_names_and_unknown_algorithms_are_refused(bad):
    with pytest.raises(ValueError):  # noqa: PT011  (each names its own reason)
        render_opendkim([bad])


def test_a_selector_used_twice_for_a_domain_is_refused():
    with pytest.raises(ValueError, match="share a domain and selector"):
        render_opendkim([key("a.test", "s1"), key("a.test", "s1", "ed25519")])


def test_instance_settings_point_at_the_instances_tables():
    assert instance_settings("ed25519", config_dir="/etc/opendkim/") == (
        "KeyTable file:/etc/opendkim/ed25519/KeyTable\n"
        "SigningTable refile:/etc/opendkim/ed25519/SigningTable\n"
        "SignatureAlgorithm ed25519-sha256\n"
        "MultipleSignatures yes\n"
    )


# --- the real OpenDKIM ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opendkim() -> str:
    found = shutil.which("opendkim", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        missing("opendkim is not installed (scripts/install-system-deps installs it)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def generated() -> dict[str, GeneratedKey]:
    return {"r1": generate_key(DkimAlgorithm.RSA), "e1": generate_key(DkimAlgorithm.ED25519)}


def signing_keys(generated: dict[str, GeneratedKey]) -> list[SigningKey]:
    return [
        SigningKey(DOMAIN, selector, str(k.algorithm), k.private_pem)
        for selector, k in generated.items()
    ]


def install(directory: Path, keys: list[SigningKey]) -> None:
    """The rendered files written as a host would write them, with their modes."""
    for rendered in render_opendkim(keys, key_dir=str(directory / "keys")):
        path = directory / rendered.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered.content)
        path.chmod(rendered.mode)


def write_config(directory: Path, algorithm: str, port: int, *, settings: str = "") -> Path:
    conf = directory / f"opendkim-{algorithm}.conf"
    conf.write_text(
        "Mode s\n"
        "Syslog no\n"
        f"Socket inet:{port}@{MILTER_ADDRESS}\n"
        f"PidFile {directory / f'opendkim-{algorithm}.pid'}\n"
        f"UserID {pwd.getpwuid(os.getuid()).pw_name}\n"
        "Canonicalization relaxed/relaxed\n"
        # The test's directory sits under the world-writable /tmp, which OpenDKIM's safe-keys
        # check refuses; a host's /etc/opendkim/keys passes it.
        "RequireSafeKeys no\n"
        + (settings or instance_settings(algorithm, config_dir=str(directory)))
    )
    return conf


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_opendkim_accepts_each_instances_configuration(opendkim, generated, tmp_path, algorithm):
    install(tmp_path, signing_keys(generated))
    conf = write_config(tmp_path, algorithm, free_port(MILTER_ADDRESS))
    result = subprocess.run(
        [opendkim, "-n", "-x", str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


@dataclass
class Milter:
    """One OpenDKIM instance, started on a loopback port and stopped by its own pid."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path


@pytest.fixture(scope="module")
def start_milter(opendkim: str) -> Iterator[Callable[..., Milter]]:
    """Starts OpenDKIM instances; all are stopped together when the module ends (each takes
    up to five seconds to notice SIGTERM)."""
    started: list[Milter] = []

    def start(directory: Path, algorithm: str, *, settings: str = "") -> Milter:
        port = free_port(MILTER_ADDRESS)
        conf = write_config(directory, algorithm, port, settings=settings)
        log = directory / f"opendkim-{algorithm}.log"
        process = subprocess.Popen(
            [opendkim, "-f", "-x", str(conf)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        milter = Milter(process, port, log)
        started.append(milter)
        if not wait_for_tcp(MILTER_ADDRESS, port):
            pytest.fail(f"opendkim did not start: {log.read_text()}")
        return milter

    yield start
    for milter in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(milter.process.pid, signal.SIGTERM)
    for milter in started:
        stop_process(milter.process)


# The milter protocol (version 6), as an MTA speaks it: the steps of one SMTP transaction.
_NO_STEP = {b"C": 0x1, b"H": 0x2, b"M": 0x4, b"R": 0x8, b"B": 0x10, b"L": 0x20, b"N": 0x40}
_NO_STEP |= {b"T": 0x200}
_NO_REPLY = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000, b"T": 0x10000}
_NO_REPLY |= {b"L": 0x80, b"N": 0x40000, b"B": 0x80000}


class MilterRefused(Exception):
    """The milter answered reject or tempfail."""


def _send(sock: socket.socket, command: bytes, data: bytes = b"") -> None:
    sock.sendall(struct.pack(">I", len(data) + 1) + command + data)


def _receive(sock: socket.socket) -> tuple[bytes, bytes]:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            assert chunk, "the milter closed the connection"
            data += chunk
        return data

    (size,) = struct.unpack(">I", exactly(4))
    packet = exactly(size)
    return packet[:1], packet[1:]


def milter_sign(port: int, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
    """Pass one message through the milter; the header fields it adds, as message lines."""
    added: list[bytes] = []
    with socket.create_connection((MILTER_ADDRESS, port), timeout=10) as sock:
        _send(sock, b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
        command, data = _receive(sock)
        assert command == b"O"
        protocol = struct.unpack(">III", data[:12])[2]

        def step(command: bytes, data: bytes = b"") -> bool:
            """Send a step; False once the milter has accepted the message (no more steps)."""
            if protocol & _NO_STEP.get(command, 0):
                return True
            _send(sock, command, data)
            if protocol & _NO_REPLY.get(command, 0):
                return True
            while True:
                reply, data = _receive(sock)
                if reply in {b"h", b"i"}:  # add header / insert header (after an index)
                    name, value, _ = (data[4:] if reply == b"i" else data).split(b"\0")
                    added.append(name + b":" + value.replace(b"\n", b"\r\n"))
                elif reply in {b"c", b"s"}:
                    return True
                elif reply == b"a":
                    return False
                else:
                    raise MilterRefused(f"{command!r}: {reply!r} {data!r}")

        _send(sock, b"D", b"Cj\0mail.sign.test\0{daemon_name}\0MTA\0")
        steps = [
            (b"C", b"localhost\x004" + struct.pack(">H", 25) + b"127.0.0.1\0"),
            (b"H", b"mail.sign.test\0"),
            (b"M", f"<postmaster@{DOMAIN}>\0".encode()),
            (b"R", b"<someone@example.net>\0"),
            (b"T", b""),
            *[(b"L", f"{name}\0{value}\0".encode()) for name, value in headers],
            (b"N", b""),
            (b"B", body),
            (b"E", b""),
        ]
        for command, data in steps:
            if command == b"M":
                _send(sock, b"D", b"Mi\0TESTQUEUEID\0")
            if not step(command, data):
                break
        _send(sock, b"Q")
    return added


HEADERS = [
    ("From", f"Postmaster <postmaster@{DOMAIN}>"),
    ("To", "someone@example.net"),
    ("Subject", "Signed by OpenDKIM"),
    ("Date", "Thu, 03 Dec 2026 10:00:00 +0000"),
    ("Message-ID", f"<opendkim-test@{DOMAIN}>"),
]
BODY = b"Signed with the files mailsec rendered.\r\n"


def message(signatures: list[bytes]) -> bytes:
    head = b"".join(line + b"\r\n" for line in signatures)
    head += b"".join(f"{name}: {value}\r\n".encode() for name, value in HEADERS)
    return head + b"\r\n" + BODY


@pytest.fixture(scope="module")
def dns(
    generated: dict[str, GeneratedKey], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Resolver]:
    """A Knot of the test's own serving sign.test with both keys' records."""
    zones = tmp_path_factory.mktemp("opendkim-zones")
    write_zone(
        zones,
        DOMAIN,
        {
            record_name(selector, DOMAIN): [record_value(k.algorithm, k.public_b64)]
            for selector, k in generated.items()
        },
    )
    server = KnotServer(
        tmp_path_factory.mktemp("knot-opendkim"), address=KNOT_ADDRESS, source=zones
    )
    server.start()
    try:
        yield Resolver(nameservers=[parse_nameserver(server.nameserver)], timeout=2)
    finally:
        server.stop()


@pytest.mark.knot
def test_two_instances_sign_with_rsa_and_ed25519_and_both_signatures_verify(
    start_milter, generated, dns, tmp_path
):
    install(tmp_path, signing_keys(generated))
    signatures = [
        line
        for algorithm in ("rsa", "ed25519")
        for line in milter_sign(start_milter(tmp_path, algorithm).port, HEADERS, BODY)
    ]
    assert len(signatures) == 2
    assert b"a=rsa-sha256" in signatures[0] and b"s=r1;" in signatures[0]
    assert b"a=ed25519-sha256" in signatures[1] and b"s=e1;" in signatures[1]
    proof = verify_message(message(signatures), resolver=dns)
    assert proof.ok, proof.error


def test_an_instance_does_not_sign_for_a_domain_it_has_no_key_for(start_milter, tmp_path):
    install(
        tmp_path,
        [SigningKey("other.test", "r1", "rsa", generate_key(DkimAlgorithm.RSA).private_pem)],
    )
    assert milter_sign(start_milter(tmp_path, "rsa").port, HEADERS, BODY) == []


def test_one_instance_cannot_sign_with_both_algorithms(start_milter, generated, tmp_path):
    """Why render_opendkim splits the tables: OpenDKIM 2.11 signs with one algorithm only, and an
    Ed25519 key in an RSA instance's tables makes it tempfail the message."""
    install(tmp_path, signing_keys(generated))
    both = (
        f"KeyTable file:{tmp_path / 'KeyTable'}\n"
        f"SigningTable refile:{tmp_path / 'both'}\n"
        "MultipleSignatures yes\n"
    )
    (tmp_path / "KeyTable").write_bytes(
        (tmp_path / "KeyTable").read_bytes() + (tmp_path / "ed25519" / "KeyTable").read_bytes()
    )
    (tmp_path / "both").write_bytes(
        (tmp_path / "SigningTable").read_bytes()
        + (tmp_path / "ed25519" / "SigningTable").read_bytes()
    )
    with pytest.raises(MilterRefused, match="resource unavailable"):
        milter_sign(start_milter(tmp_path, "rsa", settings=both).port, HEADERS, BODY)
