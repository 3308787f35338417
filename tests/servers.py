"""Real servers for the tests, each started on a loopback address and stopped by its own pid.

A missing component skips its tests with the reason, unless MAILSEC_TEST_REQUIRE_SERVICES=1,
where it fails them: CI must never pass by skipping what it was meant to exercise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import pytest

REPO = Path(__file__).resolve().parent.parent
ZONES = Path(__file__).resolve().parent / "fixtures" / "zones"
KNOT_ADDRESS = "127.0.0.10"


def services_required() -> bool:
    return os.environ.get("MAILSEC_TEST_REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Skip, or fail when the run requires every component."""
    if services_required():
        pytest.fail(f"required test component unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port(address: str) -> int:
    """A port free for both TCP and UDP on the address."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError(f"no free port on {address}")


def wait_for_tcp(address: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop the process group that this test started, and nothing else."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class KnotServer:
    """knotd serving the fixture zones on KNOT_ADDRESS, for every DNS test."""

    directory: Path
    address: str = KNOT_ADDRESS
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    zones: list[str] = field(default_factory=list)
    # The zone files to serve, each `<domain>.zone` unless `zone_files` maps each domain to its
    # file; a domain mapped to None gets no file, and Knot answers SERVFAIL for names in it.
    source: Path = ZONES
    zone_files: dict[str, str | None] | None = None
    # Zones that accept RFC 2136 updates signed with this TSIG key: (name, algorithm, base64).
    update_key: tuple[str, str, str] | None = None
    updatable: tuple[str, ...] = ()

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def config(self) -> Path:
        return self.directory / "knot.conf"

    def start(self) -> None:
        if shutil.which("knotd") is None:
            missing("knotd is not installed (scripts/install-system-deps installs it)")
        zone_dir = self.directory / "zones"
        shutil.copytree(self.source, zone_dir)
        files = self.zone_files
        if files is None:
            files = {p.name.removesuffix(".zone"): p.name for p in zone_dir.glob("*.zone")}
        self.zones = sorted(zone for zone, file in files.items() if file is not None)
        failing = sorted(zone for zone, file in files.items() if file is None)
        self.port = free_port(self.address)
        for sub in ("run", "db"):
            (self.directory / sub).mkdir()
        lines = [
            "server:",
            f"    rundir: {self.directory / 'run'}",
            f"    listen: {self.address}@{self.port}",
            "database:",
            f"    storage: {self.directory / 'db'}",
            "control:",
            f"    listen: {self.directory / 'run' / 'knot.sock'}",
            "log:",
            "  - target: stderr",
            "    any: warning",
            "template:",
            "  - id: default",
            f"    storage: {zone_dir}",
            "    zonefile-load: whole",
            "    journal-content: none",
            # Updates are written back to the zone file at once (no journal to keep them in).
            "    zonefile-sync: 0",
        ]
        if self.update_key is not None:
            name, algorithm, secret = self.update_key
            lines += [
                "key:",
                f"  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}",
                "acl:",
                f"  - id: update\n    key: {name}\n    action: update",
            ]
        lines.append("zone:")
        for zone in self.zones:
            lines.append(f"  - domain: {zone}\n    file: {files[zone]}")
            if zone in self.updatable:
                lines.append("    acl: update")
            # A zone file whose first line asks for it is signed by Knot as it loads.
            first_line = (zone_dir / str(files[zone])).read_text().split("\n", 1)[0]
            if "knot: dnssec-signing" in first_line:
                lines.append("    dnssec-signing: on")
        # No such file in the storage: the zone stays unloaded, which Knot answers with SERVFAIL.
        lines += [
            f"  - domain: {zone}\n    file: absent-{n}.zone" for n, zone in enumerate(failing)
        ]
        self.config.write_text("\n".join(lines) + "\n")
        log = (self.directory / "knotd.log").open("wb")
        self.process = subprocess.Popen(
            ["knotd", "-c", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_for_tcp(self.address, self.port):
            self.stop()
            raise RuntimeError(f"knotd did not start: {(self.directory / 'knotd.log').read_text()}")
        self._wait_for_zones()

    def reload(self) -> None:
        """Load zone files edited in place (their SOA serial raised first)."""
        subprocess.run(
            ["knotc", "-c", str(self.config), "-b", "zone-reload"], check=True, capture_output=True
        )

    def _wait_for_zones(self) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + 10
        for zone in self.zones:
            while True:
                query = dns.message.make_query(zone, "SOA")
                try:
                    reply = dns.query.udp(query, self.address, port=self.port, timeout=1)
                    if reply.answer:
                        break
                except Exception:  # noqa: S110  (not up yet)
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"knotd did not load zone {zone}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass
class CeleryWorker:
    """A real `celery worker` process on the test broker and the test database."""

    directory: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    name: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}@localhost")
    concurrency: int = 2

    @property
    def log_path(self) -> Path:
        return self.directory / "worker.log"

    def start(self, timeout: float = 30.0) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "mailsec", "worker",
            "--loglevel=INFO", "--pool=prefork", f"--concurrency={self.concurrency}",
            "--without-gossip", "--without-mingle", "-n", self.name,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log_path.read_text()[-3000:]}")
            if "ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"celery worker not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=20)


class SlowDnsRelay:
    """A UDP DNS relay to Knot that can hold every answer back, to keep a task busy on cue."""

    def __init__(self, upstream: tuple[str, int], address: str = "127.0.0.14") -> None:
        self.upstream = upstream
        self.delay = 1.0
        self.slow = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, 0))
        self._sock.settimeout(0.2)
        self.address, self.port = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.queries = 0

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._sock.recvfrom(65535)
            except OSError:
                continue
            self.queries += 1
            threading.Thread(target=self._answer, args=(query, client), daemon=True).start()

    def _answer(self, query: bytes, client: tuple[str, int]) -> None:
        if self.slow.is_set():
            time.sleep(self.delay)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(2)
            upstream.sendto(query, self.upstream)
            try:
                reply, _ = upstream.recvfrom(65535)
            except OSError:
                return
        with contextlib.suppress(OSError):
            self._sock.sendto(reply, client)


class SilentDnsRelay(SlowDnsRelay):
    """A relay to Knot that never answers questions for names under `silent` (a zone whose
    servers are down, or drop queries): each such lookup costs its whole timeout."""

    def __init__(self, upstream: tuple[str, int], silent: str, address: str = "127.0.0.14") -> None:
        super().__init__(upstream, address=address)
        self.silent = silent.lower().rstrip(".")

    def _answer(self, query: bytes, client: tuple[str, int]) -> None:
        name = dns.message.from_wire(query).question[0].name.to_text(omit_final_dot=True)
        if name.lower() == self.silent or name.lower().endswith("." + self.silent):
            return
        super()._answer(query, client)


POLICY_WEB_ADDRESS = "127.0.0.15"


class PolicyWebServer:
    """An HTTPS server on a free port of POLICY_WEB_ADDRESS serving MTA-STS policies by Host header,
    and other files (BIMI logos and certificates) by host and path.

    It runs unprivileged: the port is chosen by the system at start (`.port`), and the tests
    point mailsec's fetch at it (MAILSEC_MTA_STS_HTTPS_PORT); production fetches from 443.
    Its certificate comes from a throwaway CA made at start and covers `names`; the tests give
    mailsec that CA (MAILSEC_TLS_CA_FILE), as a private PKI would.
    """

    def __init__(
        self,
        directory: Path,
        policies: dict[str, tuple[int, str, str]],
        names: list[str],
        address: str = POLICY_WEB_ADDRESS,
        files: dict[tuple[str, str], tuple[int, str, bytes]] | None = None,
    ) -> None:
        self.directory = directory
        self.policies = policies
        self.files = files or {}
        self.names = names
        self.address = address
        self.ca_file = directory / "ca.pem"
        self.port = 0  # set by start()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import ssl
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        cert, key = self._make_certificates()
        policies, files = self.policies, self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                status, content_type, body = policies.get(host, (404, "text/plain", "not found\n"))
                if self.path != "/.well-known/mta-sts.txt":
                    status, content_type, body = 404, "text/plain", "not found\n"
                data = body.encode()
                if (host, self.path) in files:
                    status, content_type, data = files[(host, self.path)]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Port 0: the system picks a free port as the socket binds, so no root is needed and
        # concurrent test runs never collide.
        server = ThreadingHTTPServer((self.address, 0), Handler)
        self.port = int(server.server_address[1])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _make_certificates(self) -> tuple[Path, Path]:
        import datetime

        from tests.certificates import cert_pem, key_pem, make_ca

        now = datetime.datetime.now(datetime.UTC)
        hour, day = datetime.timedelta(hours=1), datetime.timedelta(days=1)
        ca = make_ca("mailsec test CA", not_before=now - hour, not_after=now + 2 * day)
        cert, key = ca.issue(
            self.names[0], dns_names=self.names, not_before=now - hour, not_after=now + day
        )
        self.ca_file.write_bytes(ca.pem)
        cert_file, key_file = self.directory / "server.pem", self.directory / "server.key"
        cert_file.write_bytes(cert_pem(cert))
        key_file.write_bytes(key_pem(key))
        return cert_file, key_file
