"""Live probes against real Postfix and Dovecot on 127.0.0.90-96, DNS from a Knot on .99.

Each faulty configuration's result names its fault; the correct one is ok throughout.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.test import override_settings

from dns_records.models import Domain
from dns_records.resolver import Resolver
from hosts import selectors, services
from hosts.models import Host, HostEvent, Policy, ProbeResult
from hosts.probe import ProbeRefused
from hosts.services import ProbePorts, host_probe_run
from mailsec.env import Nameserver
from tests.hosts import probe_servers as ps
from tests.servers import KnotServer

pytestmark = pytest.mark.django_db
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


class Servers:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.certs = ps.make_certificates(base)
        valid_leaf = x509.load_pem_x509_certificates(self.certs.valid[0].read_bytes())[0]
        spki = valid_leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.tlsa = f"3 1 1 {hashlib.sha256(spki).hexdigest()}"
        ca = x509.load_pem_x509_certificates(self.certs.ca.read_bytes())[0]
        ca_spki = ca.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.tlsa_ta = f"2 1 1 {hashlib.sha256(ca_spki).hexdigest()}"
        zones = ps.zone_files(base / "zones", [self.tlsa, self.tlsa_ta])
        self.knot = KnotServer(base / "knot", address=ps.KNOT_ADDRESS, source=zones)
        (base / "knot").mkdir()
        self.good_dovecot = ps.ProbeDovecot(base / "dovecot-good", ps.GOOD, self.certs.valid)
        self.bad_dovecot = ps.ProbeDovecot(
            base / "dovecot-bad", ps.PLAIN_AUTH, self.certs.valid, insecure=True
        )
        self.postfix = ps.ProbePostfix(
            base / "postfix", self.certs, sasl_socket=self.good_dovecot.auth_socket
        )

    def start(self) -> None:
        self.knot.start()
        self.good_dovecot.start()
        self.bad_dovecot.start()
        self.postfix.start()

    def stop(self) -> None:
        for server in (self.postfix, self.bad_dovecot, self.good_dovecot, self.knot):
            with contextlib.suppress(Exception):  # stop the others too
                server.stop()

    def resolver(self) -> Resolver:
        return Resolver(nameservers=[Nameserver(ps.KNOT_ADDRESS, self.knot.port)], timeout=2)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    # Postfix's and Dovecot's own users must reach it: not under pytest's private tmp.
    base = Path(tempfile.mkdtemp(prefix="mailsec-probe-"))
    base.chmod(0o755)
    found = Servers(base)
    try:
        found.start()
        yield found
    finally:
        found.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def probe_settings(servers: Servers) -> Iterator[None]:
    with override_settings(
        MAILSEC_PROBE_ALLOW_NETWORKS=LOOPBACK, MAILSEC_TLS_CA_FILE=str(servers.certs.ca)
    ):
        yield


def _host(org: Any, address: str, *, size: int = ps.SIZE_LIMIT) -> Host:
    policy, _ = Policy.objects.get_or_create(
        organisation=org, name=f"p-{address}-{size}", values={"message_size_limit": size}
    )
    # The certificate's and PTR's name; hosts of one organisation differ in name, so the
    # second host of a test is the same name in another case.
    taken = Host.objects.filter(organisation=org).count()
    name = ps.MX_NAME if not taken else ps.MX_NAME.upper()
    return Host.objects.create(organisation=org, name=name, address=address, policy=policy)


def _run(servers: Servers, host: Host) -> dict[tuple[str, int], dict[str, Any]]:
    outcome = host_probe_run(host.pk, resolver=servers.resolver(), total_seconds=60)
    return {(r["name"], r["details"]["port"]): r for r in outcome["results"]}


def test_correct_server_is_ok_throughout(servers: Servers, probe_settings: None, org: Any) -> None:
    host = _host(org, ps.GOOD)
    results = _run(servers, host)
    bad = {key: (r["status"], r["summary"]) for key, r in results.items() if r["status"] != "ok"}
    assert not bad, bad
    names = {name for name, _port in results}
    assert {
        "smtp_starttls", "smtp_certificate", "smtp_auth", "smtp_size", "smtp_banner_ptr",
        "smtp_relay", "dane", "imap_tls", "imap_starttls", "imap_certificate",
        "imap_cleartext_login", "pop3_tls", "pop3_starttls", "pop3_certificate",
        "pop3_cleartext_login",
    } <= names  # fmt: skip
    # Submission (STARTTLS) and SMTPS (implicit TLS) are probed the same way.
    assert {("smtp_starttls", 587), ("smtp_auth", 587), ("smtp_certificate", 587)} <= set(results)
    assert {("smtp_tls", 465), ("smtp_certificate", 465)} <= set(results)
    assert results[("smtp_tls", 465)]["details"]["legacy_tls_accepted"] is False
    starttls = results[("smtp_starttls", 25)]
    assert starttls["details"]["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert starttls["details"]["legacy_tls_accepted"] is False
    assert results[("smtp_relay", 25)]["details"]["rcpt_reply"][0] >= 400
    # DANE: both the end-entity key (3 1 1) and the CA (2 1 1, the chain's second certificate).
    matched = results[("dane", 25)]["details"]["matched"]
    assert {m.split()[0] for m in matched} == {"2", "3"}, matched
    # Stored as history and current state; a first result that is ok is no event.
    assert ProbeResult.objects.filter(host=host).count() == len(results)
    assert not HostEvent.objects.filter(host=host, kind="probe").exists()
    # A second run with the same statuses adds history but no event.
    _run(servers, host)
    assert ProbeResult.objects.filter(host=host).count() == 2 * len(results)
    assert not HostEvent.objects.filter(host=host, kind="probe").exists()


def test_auth_offered_before_starttls_and_cleartext_mailbox_login(
    servers: Servers, probe_settings: None, org: Any
) -> None:
    results = _run(servers, _host(org, ps.PLAIN_AUTH))
    auth = results[("smtp_auth", 25)]
    assert auth["status"] == "fail"
    assert "AUTH" in auth["summary"] and "before STARTTLS" in auth["summary"]
    assert "PLAIN" in auth["details"]["mechanisms"]
    imap = results[("imap_cleartext_login", 143)]
    assert imap["status"] == "fail" and "LOGINDISABLED" in imap["summary"]
    pop3 = results[("pop3_cleartext_login", 110)]
    assert pop3["status"] == "fail" and "USER" in pop3["summary"]
    # That Dovecot also takes TLS 1.0.
    assert results[("imap_tls", 993)]["status"] == "fail"
    assert results[("imap_tls", 993)]["details"]["legacy_tls_accepted"] is True


def test_tls_1_0_accepted_is_a_fail(servers: Servers, probe_settings: None, org: Any) -> None:
    results = _run(servers, _host(org, ps.OLD_TLS))
    starttls = results[("smtp_starttls", 25)]
    assert starttls["status"] == "fail", starttls
    assert "TLSv1" in starttls["summary"] and "below TLS 1.2" in starttls["summary"]
    # Its PTR names another host than the banner.
    ptr = results[("smtp_banner_ptr", 25)]
    assert ptr["status"] == "fail" and "elsewhere.example.org" in ptr["summary"]


def test_open_relay_is_a_fail_and_never_sends_data(
    servers: Servers, probe_settings: None, org: Any
) -> None:
    results = _run(servers, _host(org, ps.OPEN_RELAY))
    relay = results[("smtp_relay", 25)]
    assert relay["status"] == "fail" and "Open relay" in relay["summary"], relay
    assert 200 <= relay["details"]["rcpt_reply"][0] < 300
    log = servers.postfix.log()
    assert "relay-test@example.net" not in log or "queued" not in log  # nothing queued
    assert list((servers.postfix.base / "spool" / "incoming").iterdir()) == []


def test_expired_and_wrong_name_certificates(
    servers: Servers, probe_settings: None, org: Any
) -> None:
    expired = _run(servers, _host(org, ps.EXPIRED))[("smtp_certificate", 25)]
    assert expired["status"] == "fail" and "expired" in expired["summary"], expired
    wrong_results = _run(servers, _host(org, ps.WRONG_NAME))
    wrong = wrong_results[("smtp_certificate", 25)]
    assert wrong["status"] == "fail" and "not for mx.probe.test" in wrong["summary"], wrong
    assert "other.example.org" in wrong["summary"]
    # 3 1 1 is for the valid certificate's key; 2 1 1 (the same CA) needs the host's name.
    dane = wrong_results[("dane", 25)]
    assert dane["status"] == "fail" and "No TLSA record" in dane["summary"]


def test_size_differing_from_the_policy(servers: Servers, probe_settings: None, org: Any) -> None:
    size = _run(servers, _host(org, ps.GOOD, size=5_000_000))[("smtp_size", 25)]
    assert size["status"] == "fail"
    assert str(ps.SIZE_LIMIT) in size["summary"] and "5000000" in size["summary"]


def test_status_change_is_an_event(servers: Servers, probe_settings: None, org: Any) -> None:
    host = _host(org, ps.GOOD)
    _run(servers, host)
    assert host.policy_id is not None
    Policy.objects.filter(pk=host.policy_id).update(values={"message_size_limit": 5_000_000})
    _run(servers, host)
    event = HostEvent.objects.filter(host=host, kind="probe").order_by("-id").first()
    assert event is not None and event.details["name"] == "smtp_size"
    assert (event.details["from"], event.details["to"]) == ("ok", "fail")


def test_timeout_is_error_not_fail(servers: Servers, probe_settings: None, org: Any) -> None:
    """A server that accepts and never greets: every SMTP result is `error`."""
    listener = socket.socket()
    listener.bind((ps.REFUSED, 0))
    listener.listen()
    port = listener.getsockname()[1]
    host = _host(org, ps.REFUSED)
    try:
        outcome = host_probe_run(
            host.pk, resolver=servers.resolver(), total_seconds=2,
            ports=ProbePorts(smtp=port, submission=1, smtps=1, imap=1, imaps=1, pop3=1, pop3s=1),
        )  # fmt: skip
    finally:
        listener.close()
    smtp = [r for r in outcome["results"] if r["name"] == "smtp_starttls"]
    assert smtp and smtp[0]["status"] == "error" and "timed out" in smtp[0]["summary"]
    assert not [r for r in outcome["results"] if r["status"] == "fail"]


def test_refused_target_opens_no_socket(servers: Servers, org: Any) -> None:
    """With MAILSEC_PROBE_ALLOW_NETWORKS empty, loopback is refused before any connection."""
    listener = socket.socket()
    listener.bind((ps.REFUSED, 25))
    listener.listen()
    listener.settimeout(0.5)
    seen: list[Any] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the timeout: nothing connected
            seen.append(listener.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    host = _host(org, ps.REFUSED)
    try:
        with override_settings(MAILSEC_PROBE_ALLOW_NETWORKS=[]):
            outcome = host_probe_run(host.pk, resolver=servers.resolver())
    finally:
        thread.join()
        listener.close()
    assert seen == []
    [result] = outcome["results"]
    assert result["name"] == "probe_target" and result["status"] == "error"
    assert "loopback" in result["summary"]
    # Embedded forms are refused too, and never connected to.
    for address in ("::ffff:127.0.0.95", "64:ff9b::7f00:5f"):
        with override_settings(MAILSEC_PROBE_ALLOW_NETWORKS=LOOPBACK):
            host.address = address
            with pytest.raises(ProbeRefused):
                services.probe_target(host, servers.resolver())


def test_probe_command_prints_the_check_shape(
    servers: Servers, probe_settings: None, org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _host(org, ps.PLAIN_AUTH)
    monkeypatch.setattr(services, "Resolver", lambda: servers.resolver())
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("probe", host.name, "--json", stdout=out)
    assert exited.value.code == 1  # smtp_auth fails
    results = json.loads(out.getvalue())
    assert all(set(r) == {"name", "status", "summary", "details", "checked_at"} for r in results)
    assert any(r["name"] == "smtp_auth" and r["status"] == "fail" for r in results)


HOSTILE = "127.0.0.97"


def _hostile_server(replies: list[bytes]) -> tuple[socket.socket, threading.Thread]:
    """Accepts connections on HOSTILE and answers each with `replies`, one per line read."""
    listener = socket.socket()
    listener.bind((HOSTILE, 0))
    listener.listen()
    listener.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.sendall(replies[0])
                    for reply in replies[1:]:
                        if not conn.recv(1024):
                            break
                        conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def _probe_port(servers: Servers, org: Any, port: int) -> dict[str, Any]:
    host = _host(org, HOSTILE)
    ports = ProbePorts(smtp=port, submission=1, smtps=1, imap=1, imaps=1, pop3=1, pop3s=1)
    return host_probe_run(host.pk, resolver=servers.resolver(), total_seconds=10, ports=ports)


def test_hostile_replies_are_stored_visibly(
    servers: Servers, probe_settings: None, org: Any
) -> None:
    """A NUL and control bytes in the banner and EHLO are stored as escapes (PostgreSQL refuses
    a NUL in JSON); an over-long line is an error, not a hang."""
    listener, _thread = _hostile_server(
        [b"220 evil\x00name\x1b[31m ESMTP\r\n", b"250-evil\r\n250 SIZE 1\x00\r\n", b"221 bye\r\n"]
    )
    try:
        outcome = _probe_port(servers, org, listener.getsockname()[1])
    finally:
        listener.close()
    found = {r["name"]: r for r in outcome["results"]}
    banner = found["smtp_banner_ptr"]["details"]["banner"]
    assert "\x00" not in banner and "\\x00" in banner and "\\x1b" in banner
    assert found["smtp_starttls"]["status"] == "fail"  # no STARTTLS offered
    stored = ProbeResult.objects.get(name="smtp_banner_ptr", host__address=HOSTILE)
    assert "\\x00" in stored.details["banner"]

    listener, _thread = _hostile_server([b"220 " + b"x" * 10_000])
    try:
        outcome = _probe_port(servers, org, listener.getsockname()[1])
    finally:
        listener.close()
    [smtp] = [r for r in outcome["results"] if r["name"] == "smtp_starttls"]
    assert smtp["status"] == "error" and "longer than 4096" in smtp["summary"]


def test_a_host_name_is_resolved_once_and_its_address_checked(servers: Servers, org: Any) -> None:
    host = Host(organisation=org, name=ps.MX_NAME, address=ps.MX_NAME)
    with (
        override_settings(MAILSEC_PROBE_ALLOW_NETWORKS=[]),
        pytest.raises(ProbeRefused, match="loopback"),
    ):
        services.probe_target(host, servers.resolver())
    with override_settings(MAILSEC_PROBE_ALLOW_NETWORKS=LOOPBACK):
        target = services.probe_target(host, servers.resolver())
    assert (target.address, target.name) == (ps.GOOD, ps.MX_NAME)
    host.address = "nothing.probe.test"
    with pytest.raises(ProbeRefused, match="no address"):
        services.probe_target(host, servers.resolver())


def test_a_domains_mx_targets_are_probed_on_port_25(
    servers: Servers, probe_settings: None, org: Any
) -> None:
    """probe.test's MX: mx.probe.test (the correct server) and relay.probe.test (the open
    relay, whose certificate names mx.probe.test): each probed for its own name."""
    domain = Domain.objects.create(organisation=org, name="probe.test")
    outcome = services.domain_mx_probe_run(domain.pk, resolver=servers.resolver())
    assert outcome["targets"] == ["mx.probe.test", "relay.probe.test"]
    found = {(r["target"], r["name"]): r for r in outcome["results"]}
    assert found[("mx.probe.test", "smtp_starttls")]["status"] == "ok"
    assert found[("mx.probe.test", "smtp_relay")]["status"] == "ok"
    assert found[("mx.probe.test", "dane")]["status"] == "ok"
    assert found[("relay.probe.test", "smtp_relay")]["status"] == "fail"
    cert = found[("relay.probe.test", "smtp_certificate")]
    assert cert["status"] == "fail" and "not for relay.probe.test" in cert["summary"]
    assert not any(name.startswith(("imap", "pop3")) for _t, name in found)
    current = selectors.mx_probe_results_current(domain)
    assert {(r.target, r.address) for r in current} == {
        ("mx.probe.test", ps.GOOD), ("relay.probe.test", ps.OPEN_RELAY),
    }  # fmt: skip
    # A managed host of the organisation is probed as a host, not again as an MX target.
    Host.objects.create(organisation=org, name="mx.probe.test", address=ps.GOOD)
    again = services.domain_mx_probe_run(domain.pk, resolver=servers.resolver())
    assert again["targets"] == ["relay.probe.test"]
    assert {r.target for r in selectors.mx_probe_results_current(domain)} == {"relay.probe.test"}
    # With every MX target managed, the last run says so (the earlier results are history).
    Host.objects.create(organisation=org, name="relay.probe.test", address=ps.OPEN_RELAY)
    services.domain_mx_probe_run(domain.pk, resolver=servers.resolver())
    [only] = selectors.mx_probe_results_current(domain)
    assert (only.name, only.status) == ("mx_targets", "ok")
    Host.objects.filter(name="relay.probe.test").delete()
    # Refused addresses are never connected to.
    with override_settings(MAILSEC_PROBE_ALLOW_NETWORKS=[]):
        refused = services.domain_mx_probe_run(domain.pk, resolver=servers.resolver())
    [row] = refused["results"]
    assert row["name"] == "probe_target" and "loopback" in row["summary"]
