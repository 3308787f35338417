"""Real receivers on loopback for the alerts tests: an HTTPS webhook receiver on 127.0.0.100
(certificate from a throwaway CA, for the address), an SMTP server on 127.0.0.101, and a plain
listener on 127.0.0.102 that records any connection (it must see none)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.certificates import cert_pem, key_pem, make_ca

WEBHOOK_ADDRESS = "127.0.0.100"
SMTP_ADDRESS = "127.0.0.101"
SILENT_ADDRESS = "127.0.0.102"
KNOT_ADDRESS = "127.0.0.103"
HOOK_NAME = "hook.alerts.test"


def make_certificates(directory: Path, address: str) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    hour, day = datetime.timedelta(hours=1), datetime.timedelta(days=1)
    ca = make_ca("alerts test CA", not_before=now - hour, not_after=now + day)
    cert, key = ca.issue(
        address,
        dns_names=[HOOK_NAME],
        ip_addresses=[address],
        not_before=now - hour,
        not_after=now + day,
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.pem)
    cert_file.write_bytes(cert_pem(cert))
    key_file.write_bytes(key_pem(key))
    return ca_file, cert_file, key_file


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    address: str
    ca_file: Path
    port: int = 0
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    server: Any = None

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}/hook"


@pytest.fixture(scope="session")
def webhook_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookReceiver]:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ca_file, cert, key = make_certificates(tmp_path_factory.mktemp("hook"), WEBHOOK_ADDRESS)
    receiver = WebhookReceiver(WEBHOOK_ADDRESS, ca_file)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            self.send_response(receiver.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((WEBHOOK_ADDRESS, 0), Handler)
    receiver.port = int(server.server_address[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.server = server
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook(webhook_receiver: WebhookReceiver, settings: Any) -> WebhookReceiver:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    settings.MAILSEC_TLS_CA_FILE = str(webhook_receiver.ca_file)
    webhook_receiver.requests.clear()
    webhook_receiver.status = 200
    return webhook_receiver


class _Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Controller, _Handler]]:
    handler = _Handler()
    probe = socket.socket()
    probe.bind((SMTP_ADDRESS, 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(handler, hostname=SMTP_ADDRESS, port=port)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: tuple[Controller, _Handler], settings: Any) -> _Handler:
    controller, handler = smtp_server
    port = controller.port
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.MAILSEC_EMAIL_URL = f"smtp://{SMTP_ADDRESS}:{port}"
    handler.messages.clear()
    return handler


@pytest.fixture(scope="session")
def alerts_knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Knot on 127.0.0.103 serving alerts.test: hook -> the receiver, internal -> the listener."""
    from tests.servers import KnotServer

    server = KnotServer(
        tmp_path_factory.mktemp("alerts-knot"), address=KNOT_ADDRESS,
        source=Path(__file__).resolve().parent / "zones",
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def alerts_dns(alerts_knot: Any, settings: Any) -> Any:
    from mailsec.env import parse_nameserver

    settings.MAILSEC_DNS_NAMESERVERS = [parse_nameserver(alerts_knot.nameserver)]
    settings.MAILSEC_DNS_TIMEOUT = 2.0
    return alerts_knot


@dataclass
class SilentListener:
    address: str
    port: int
    connections: list[tuple[str, int]]

    def seen(self) -> list[tuple[str, int]]:
        """The connections accepted, after giving a pending one time to be accepted."""
        import time

        time.sleep(0.5)
        return self.connections


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((SILENT_ADDRESS, 0))
    sock.listen(5)
    sock.settimeout(0.2)
    listener = SilentListener(SILENT_ADDRESS, sock.getsockname()[1], [])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            listener.connections.append(peer)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(2)
        sock.close()
