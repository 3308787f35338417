"""The HTTPS fetch against loopback servers that misbehave: refused addresses are never
connected to, and the fetch's timeout bounds it in total however slowly a server answers."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dns_records.web import MAX_HEADER_BYTES, fetch_https
from tests.servers import PolicyWebServer

HOST = "web.test"
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
SLACK = 0.6  # scheduling and TLS set-up on a busy CI machine

Behaviour = Callable[[ssl.SSLSocket], None]


class RawTlsServer:
    """A TLS server on 127.0.0.1 that hands each connection to `behaviour` after reading the
    request, and records how many connections arrived and whether a client hung up on it."""

    def __init__(self, directory: Path, behaviour: Behaviour, *, speak_tls: bool = True) -> None:
        names = PolicyWebServer(directory, {}, [HOST])
        cert, key = names._make_certificates()
        self.ca_file = names.ca_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.behaviour = behaviour
        self.speak_tls = speak_tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self.hung_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if not self.speak_tls:
                self._stop.wait(30)
                return
            conn.settimeout(10)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        raise ConnectionResetError
                    request += chunk
                self.behaviour(tls)
        except (OSError, ssl.SSLError):
            self.hung_up.set()
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=2)


@pytest.fixture
def serve(tmp_path: Path, settings: Any) -> Iterator[Callable[..., RawTlsServer]]:
    servers: list[RawTlsServer] = []
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = LOOPBACK

    def start(behaviour: Behaviour, *, speak_tls: bool = True) -> RawTlsServer:
        directory = tmp_path / str(len(servers))
        directory.mkdir()
        server = RawTlsServer(directory, behaviour, speak_tls=speak_tls)
        servers.append(server)
        settings.MAILSEC_TLS_CA_FILE = str(server.ca_file)
        return server

    yield start
    for server in servers:
        server.stop()


def answer(body: bytes, extra: bytes = b"") -> Behaviour:
    def behaviour(tls: ssl.SSLSocket) -> None:
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + extra
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    return behaviour


def drip(head: bytes, then: bytes, interval: float = 0.1) -> Behaviour:
    """Send `head` at once, then `then` a byte at a time, `interval` apart, forever."""

    def behaviour(tls: ssl.SSLSocket) -> None:
        tls.sendall(head)
        while True:
            for byte in then:
                tls.sendall(bytes([byte]))
                time.sleep(interval)

    return behaviour


def endless(head: bytes, line: Callable[[int], bytes]) -> Behaviour:
    def behaviour(tls: ssl.SSLSocket) -> None:
        tls.sendall(head)
        number = 0
        while True:
            tls.sendall(line(number))
            number += 1

    return behaviour


def fetch(server: RawTlsServer, **kwargs: Any) -> Any:
    return fetch_https(HOST, "/policy.txt", ["127.0.0.1"], port=server.port, **kwargs)


# --- the guard comes before any socket ---------------------------------------------------------


@pytest.fixture
def listener(settings: Any) -> Iterator[socket.socket]:
    """A loopback listener that nothing should reach; MAILSEC_PROBE_ALLOW_NETWORKS is empty."""
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.3)
    yield sock
    sock.close()


def connections_arrived(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _peer = sock.accept()
        except TimeoutError:
            return count
        conn.close()
        count += 1


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1",
        "0.0.0.0",
        "::",
        "[::]",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b:1::7f00:1",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "localhost",
        "127.0.0.1 ",
    ],
)
def test_refused_address_is_never_connected_to(listener: socket.socket, address: str) -> None:
    port = int(listener.getsockname()[1])
    result = fetch_https(HOST, "/policy.txt", [address], port=port, timeout=2)
    assert result.error.startswith("not fetched:")
    assert "MAILSEC_PROBE_ALLOW_NETWORKS" in result.error
    assert connections_arrived(listener) == 0


def test_the_listener_would_have_recorded_an_allowed_connection(
    listener: socket.socket, settings: Any
) -> None:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = LOOPBACK
    port = int(listener.getsockname()[1])
    result = fetch_https(HOST, "/policy.txt", ["127.0.0.1"], port=port, timeout=0.5)
    assert result.error
    assert connections_arrived(listener) == 1


def test_a_path_with_line_breaks_is_not_sent(listener: socket.socket, settings: Any) -> None:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = LOOPBACK
    port = int(listener.getsockname()[1])
    result = fetch_https(HOST, "/a\r\nHost: evil", ["127.0.0.1"], port=port, timeout=1)
    assert result.error.startswith("not fetched:")
    assert connections_arrived(listener) == 0


# --- a normal answer, and the size cap ---------------------------------------------------------


def test_a_prompt_answer_is_fetched(serve: Callable[..., RawTlsServer]) -> None:
    result = fetch(serve(answer(b"version: STSv1\n")), timeout=5)
    assert (result.status, result.body, result.error, result.fault) == (
        200,
        "version: STSv1\n",
        "",
        "",
    )
    assert result.content_type == "text/plain"


def test_a_body_of_exactly_the_cap_is_fetched(serve: Callable[..., RawTlsServer]) -> None:
    result = fetch(serve(answer(b"x" * 1024)), timeout=5, max_bytes=1024)
    assert result.fault == ""
    assert len(result.data) == 1024


def test_a_body_over_the_cap_is_a_fault(serve: Callable[..., RawTlsServer]) -> None:
    result = fetch(serve(answer(b"x" * 2048)), timeout=5, max_bytes=1024)
    assert result.fault == "larger than 1 KiB"


# --- the total deadline -------------------------------------------------------------------------


def assert_timed_out(result: Any, started: float, timeout: float) -> None:
    elapsed = time.monotonic() - started
    assert result.error == f"timed out after {timeout:g}s total"
    assert elapsed < timeout + SLACK, elapsed


def test_a_status_line_dripped_a_byte_at_a_time_times_out_in_total(
    serve: Callable[..., RawTlsServer],
) -> None:
    server = serve(drip(b"", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000))
    started = time.monotonic()
    assert_timed_out(fetch(server, timeout=1), started, 1)


def test_a_body_dripped_a_byte_at_a_time_times_out_in_total(
    serve: Callable[..., RawTlsServer],
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    server = serve(drip(head, b"version: STSv1\n"))
    started = time.monotonic()
    assert_timed_out(fetch(server, timeout=1.5), started, 1.5)


def test_a_server_that_never_answers_the_tls_handshake_times_out_in_total(
    serve: Callable[..., RawTlsServer],
) -> None:
    server = serve(answer(b""), speak_tls=False)
    started = time.monotonic()
    assert_timed_out(fetch(server, timeout=1), started, 1)


def test_a_deadline_passed_in_ends_the_fetch_sooner(serve: Callable[..., RawTlsServer]) -> None:
    server = serve(drip(b"HTTP/1.1 200 OK\r\n", b"X: y\r\n"))
    started = time.monotonic()
    result = fetch(server, timeout=30, deadline=started + 0.8)
    assert result.error == "timed out after 30s total"
    assert time.monotonic() - started < 0.8 + SLACK


def test_a_cancelled_fetch_hangs_up_on_the_server(serve: Callable[..., RawTlsServer]) -> None:
    """The work stops, not only the caller's wait: the server sees the connection closed."""
    server = serve(drip(b"HTTP/1.1 200 OK\r\n", b"X: y\r\n", interval=0.05))
    results: list[Any] = []
    worker = threading.Thread(
        target=lambda: results.append(fetch(server, timeout=30, deadline=time.monotonic() + 0.5))
    )
    worker.start()
    worker.join(timeout=0.5 + SLACK)
    assert not worker.is_alive()
    assert results[0].error
    assert server.hung_up.wait(timeout=3)


# --- the header cap -----------------------------------------------------------------------------


def test_endless_header_lines_are_cut_off(serve: Callable[..., RawTlsServer]) -> None:
    server = serve(endless(b"HTTP/1.1 200 OK\r\n", lambda n: b"X-Pad-%d: %s\r\n" % (n, b"a" * 50)))
    started = time.monotonic()
    result = fetch(server, timeout=10)
    assert result.fault.startswith("response headers")
    assert time.monotonic() - started < 2


def test_many_small_header_lines_are_cut_off(serve: Callable[..., RawTlsServer]) -> None:
    server = serve(endless(b"HTTP/1.1 200 OK\r\n", lambda n: b"X: y\r\n"))
    result = fetch(server, timeout=10)
    assert result.fault.startswith("response headers")


def test_one_endless_header_line_is_cut_off(serve: Callable[..., RawTlsServer]) -> None:
    server = serve(endless(b"HTTP/1.1 200 OK\r\nX-Long: ", lambda n: b"a" * 4096))
    result = fetch(server, timeout=10)
    assert result.fault == f"response headers larger than {MAX_HEADER_BYTES // 1024} KiB"


def test_headers_under_the_cap_are_accepted(serve: Callable[..., RawTlsServer]) -> None:
    extra = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 200) for n in range(60))
    result = fetch(serve(answer(b"ok", extra)), timeout=5)
    assert (result.status, result.body, result.fault) == (200, "ok", "")
