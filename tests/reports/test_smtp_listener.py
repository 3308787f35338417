"""The SMTP listener (manage.py ingest_smtp) with real SMTP clients: smtplib and swaks.

The listener runs as its own process on 127.0.0.40, writing to the test database (or, for the
"database down" test, to a throwaway PostgreSQL cluster on 127.0.0.42 that the test stops and
starts). A 250 must mean the row is committed: each test reads the row right after the answer.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from reports.models import IngestSource, RawMessage
from tests import settings as test_settings
from tests.servers import REPO, free_port, missing, stop_process, wait_for_tcp

LISTEN_ADDRESS = "127.0.0.40"
PG_ADDRESS = "127.0.0.42"
INGEST_ADDRESSES = "dmarc@reports.test,tls-reports@reports.test"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_RECIPIENTS = 3
MAX_CONNECTIONS = 4
SAMPLES = REPO / "tests" / "fixtures" / "reports" / "samples"
GOOGLE_EML = (
    SAMPLES
    / "parsedmarc/samples/aggregate"
    / "Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml"
)

pytestmark = pytest.mark.django_db(transaction=True)


def _test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{db['HOST']}{port}/{db['NAME']}"


def listener_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MAILSEC_", "DJANGO_", "CELERY_"))
        and name not in ("DATABASE_URL", "REDIS_URL")
    }
    # No broker URL: the parse tasks the listener queues go to a file-system broker under
    # var_dir that no worker reads. On the shared test broker, a session's Celery worker would
    # parse them while the test's teardown empties the tables (a deadlock, and rows left over).
    env.update(
        DJANGO_SETTINGS_MODULE="mailsec.settings",
        DATABASE_URL=database_url,
        MAILSEC_SECRET_KEY="tests-only-listener-secret-key-0123456789abcdefghijklmnop",
        MAILSEC_ENCRYPTION_KEYS=test_settings.TEST_ENCRYPTION_KEYS,
        MAILSEC_VAR_DIR=str(var_dir),
        MAILSEC_INGEST_ADDRESSES=INGEST_ADDRESSES,
        MAILSEC_REPORT_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
        MAILSEC_INGEST_MAX_RECIPIENTS=str(MAX_RECIPIENTS),
        MAILSEC_INGEST_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        MAILSEC_INGEST_TIMEOUT_SECONDS="5",
    )
    env.update(extra)
    return env


@dataclass
class Listener:
    """`manage.py ingest_smtp` in its own process group on a free port of 127.0.0.40."""

    directory: Path
    env: dict[str, str]
    port: int = field(default_factory=lambda: free_port(LISTEN_ADDRESS))
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return (self.directory / "listener.log").read_text(errors="replace")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "ingest_smtp", "--listen", f"{LISTEN_ADDRESS}:{self.port}"],
            cwd=REPO, env=self.env, stdout=(self.directory / "listener.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if not wait_for_tcp(LISTEN_ADDRESS, self.port, timeout=90):
            self.stop()
            pytest.fail(f"the listener did not start:\n{self.log}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP(
            LISTEN_ADDRESS, self.port, timeout=30, source_address=(LISTEN_ADDRESS, 0)
        )


@pytest.fixture(scope="module")
def listener(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Listener]:
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    directory = tmp_path_factory.mktemp("listener")
    server = Listener(directory, listener_env(database_url, directory / "var"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def report_message(body: bytes = b"", *, to: str = "dmarc@reports.test") -> bytes:
    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@google.test"
    message["To"] = to
    message["Subject"] = "Report domain: example.org Submitter: google.test"
    message["Message-ID"] = make_msgid(domain="google.test")
    message.set_content("A DMARC aggregate report is attached.")
    message.add_attachment(
        body or b"<feedback></feedback>",
        maintype="application",
        subtype="xml",
        filename="google.test!example.org!1.xml",
    )
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def stored_id(reply: bytes) -> int:
    match = re.search(rb"stored as (\d+)", reply)
    assert match, reply
    return int(match.group(1))


def test_a_report_for_the_ingest_address_is_answered_250_once_its_row_is_committed(listener):
    content = GOOGLE_EML.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with listener.client() as client:
        client.ehlo("reporter.test")
        assert client.mail("noreply-dmarc-support@google.com")[0] == 250
        assert client.rcpt("dmarc@reports.test")[0] == 250
        code, reply = client.data(content)
    assert code == 250, reply
    # The answer names the committed row: this process reads it at once.
    row = RawMessage.objects.get(pk=stored_id(reply))
    assert row.source == IngestSource.SMTP
    assert bytes(row.content) == content
    assert row.sha256 == hashlib.sha256(content).hexdigest()
    assert row.envelope_from == "noreply-dmarc-support@google.com"
    assert row.envelope_to == "dmarc@reports.test"
    assert row.remote_addr == LISTEN_ADDRESS
    assert row.organisation_id is None


def test_recipients_match_whatever_their_case_and_every_accepted_one_is_recorded(listener):
    with listener.client() as client:
        refused = client.sendmail(
            "reports@yahoo.test",
            ["DMARC@Reports.TEST", "tls-reports@reports.test"],
            report_message(),
        )
        assert refused == {}
    row = RawMessage.objects.get()
    assert row.envelope_to == "DMARC@Reports.TEST,tls-reports@reports.test"


def test_any_other_recipient_is_refused_with_550_and_nothing_is_stored(listener):
    with listener.client() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("a@sender.test", ["postmaster@reports.test"], report_message())
    code, text = refused.value.recipients["postmaster@reports.test"]
    assert code == 550
    assert text.startswith(b"5.1.1")
    assert not RawMessage.objects.exists()


def test_a_message_to_a_refused_and_an_accepted_recipient_is_stored_for_the_accepted_one(
    listener,
):
    with listener.client() as client:
        refused = client.sendmail(
            "a@sender.test", ["someone@else.test", "dmarc@reports.test"], report_message()
        )
    assert refused["someone@else.test"][0] == 550
    assert RawMessage.objects.get().envelope_to == "dmarc@reports.test"


def test_more_recipients_than_allowed_are_deferred_with_452(listener):
    with listener.client() as client:
        client.ehlo("reporter.test")
        client.mail("a@sender.test")
        for _ in range(MAX_RECIPIENTS):
            assert client.rcpt("dmarc@reports.test")[0] == 250
        code, text = client.rcpt("dmarc@reports.test")
    assert code == 452, text


def test_an_oversized_message_is_refused_with_552_at_the_end_of_data(listener):
    big = report_message(b"<x>" + b"A" * 76 + b"</x>\n" * 1)  # a small prefix, then filler lines
    big += b"".join(b"X" * 76 + b"\r\n" for _ in range(MAX_MESSAGE_BYTES // 78 + 10))
    with listener.client() as client:
        client.ehlo("reporter.test")
        client.mail("a@sender.test")  # no SIZE parameter: the limit is found while reading
        client.rcpt("dmarc@reports.test")
        code, text = client.data(big)
        assert code == 552, text
        # The session goes on: a message within the limit is still taken.
        client.rset()
        client.mail("a@sender.test")
        client.rcpt("dmarc@reports.test")
        assert client.data(report_message())[0] == 250
    assert RawMessage.objects.count() == 1


def test_a_declared_size_over_the_limit_is_refused_with_552_at_mail_from(listener):
    with listener.client() as client:
        client.ehlo("reporter.test")
        assert client.has_extn("size")
        assert int(client.esmtp_features["size"]) == MAX_MESSAGE_BYTES
        code, _text = client.mail("a@sender.test", [f"SIZE={MAX_MESSAGE_BYTES + 1}"])
    assert code == 552
    assert not RawMessage.objects.exists()


def test_a_line_over_1000_octets_is_refused_and_nothing_is_stored(listener):
    long_line = report_message().replace(b"\r\n\r\n", b"\r\n\r\n" + b"L" * 2000 + b"\r\n", 1)
    with listener.client() as client:
        client.ehlo("reporter.test")
        client.mail("a@sender.test")
        client.rcpt("dmarc@reports.test")
        code, text = client.data(long_line)
    assert code == 500, text
    assert b"too long" in text.lower()
    assert not RawMessage.objects.exists()


def test_an_overlong_command_is_refused(listener):
    with listener.client() as client:
        client.ehlo("reporter.test")
        code, text = client.docmd("MAIL FROM:<" + "a" * 600 + "@sender.test>")
    assert code == 500, text


def test_no_authentication_is_offered(listener):
    with listener.client() as client:
        client.ehlo("reporter.test")
        assert not client.has_extn("auth")


def test_an_idle_client_is_disconnected_after_the_timeout(listener):
    with socket.create_connection((LISTEN_ADDRESS, listener.port), timeout=30) as sock:
        assert sock.recv(1024).startswith(b"220")
        started = time.monotonic()
        sock.settimeout(30)
        rest = b""
        while chunk := sock.recv(1024):
            rest += chunk
        waited = time.monotonic() - started
    assert 4 <= waited < 30, waited  # MAILSEC_INGEST_TIMEOUT_SECONDS=5


def test_connections_over_the_cap_are_turned_away_with_421(listener):
    held = [
        socket.create_connection((LISTEN_ADDRESS, listener.port)) for _ in range(MAX_CONNECTIONS)
    ]
    try:
        for sock in held:
            assert sock.recv(1024).startswith(b"220")
        with socket.create_connection((LISTEN_ADDRESS, listener.port), timeout=10) as extra:
            assert extra.recv(1024).startswith(b"421")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with listener.client() as client:  # the slots are free again
        assert client.noop()[0] == 250


def test_swaks_delivers_a_report_attachment(listener, tmp_path):
    if shutil.which("swaks") is None:
        missing("swaks is not installed")
    result = subprocess.run(
        [
            "swaks", "--server", f"{LISTEN_ADDRESS}:{listener.port}",
            "--from", "noreply@reporter.test", "--to", "dmarc@reports.test",
            "--header", "Subject: Report domain: example.org",
            "--attach-type", "application/gzip",
            "--attach", "@" + str(SAMPLES / "parsedmarc/samples/aggregate"
                                  / "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz"),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"<-\s+250 2\.0\.0 OK: stored as \d+", result.stdout), result.stdout
    row = RawMessage.objects.get()
    assert row.envelope_from == "noreply@reporter.test"
    assert b"application/gzip" in bytes(row.content)


def test_the_readme_swaks_example_is_accepted(listener):
    """The README's swaks line (a console block: the README test runs only sh blocks) works,
    pointed at this listener and its addresses instead of `make run`'s."""
    if shutil.which("swaks") is None:
        missing("swaks is not installed")
    readme = (REPO / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("swaks ")]
    assert lines, "the README shows no swaks example"
    argv = shlex.split(lines[0])
    argv[argv.index("--server") + 1] = f"{LISTEN_ADDRESS}:{listener.port}"
    argv[argv.index("--to") + 1] = "dmarc@reports.test"
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert RawMessage.objects.count() == 1


def test_sigterm_stops_the_listener_cleanly(tmp_path):
    server = Listener(tmp_path, listener_env(_test_database_url(), tmp_path / "var"))
    server.start()
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0, server.log
    assert "SMTP ingest stopped" in server.log
    assert not wait_for_tcp(LISTEN_ADDRESS, server.port, timeout=0.5)


def test_an_empty_address_list_stops_the_command_with_a_message(tmp_path):
    env = listener_env(_test_database_url(), tmp_path / "var", MAILSEC_INGEST_ADDRESSES="")
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest_smtp", "--listen", f"{LISTEN_ADDRESS}:1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "MAILSEC_INGEST_ADDRESSES is empty" in result.stderr


# --- the database down: 451, then 250 once it is back ---------------------------------------


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return found[-1].parent


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of this test's own on 127.0.0.42, run as the postgres user."""

    directory: Path
    port: int = field(default_factory=lambda: free_port(PG_ADDRESS))

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=True
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@{PG_ADDRESS}:{self.port}/ingest"

    def init(self) -> None:
        bin_dir = _postgres_bin()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._as_postgres(
            str(bin_dir / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres",
            "-A", "trust", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-h {PG_ADDRESS} -p {self.port} -k {self.directory} -c fsync=off"
        self._as_postgres(
            str(_postgres_bin() / "pg_ctl"), "-D", str(self.directory / "data"), "-o", options,
            "-l", str(self.directory / "postgres.log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(
            str(_postgres_bin() / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast",
            "-w", "stop",
        )  # fmt: skip

    def running(self) -> bool:
        return (self.directory / "data" / "postmaster.pid").exists()

    def sql(self, statement: str, database: str = "ingest") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(
            host=PG_ADDRESS, port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            cursor = conn.execute(statement)  # type: ignore[call-overload,unused-ignore]
            return cursor.fetchall() if cursor.description else []


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    # Not under pytest's tmp_path: the postgres user must reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="mailsec-h-ingest-pg-"))
    cluster = ThrowawayPostgres(directory)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_while_the_database_is_down_the_listener_answers_451_and_stores_once_it_is_back(
    throwaway_postgres, tmp_path
):
    throwaway_postgres.sql("CREATE DATABASE ingest", database="postgres")
    env = listener_env(throwaway_postgres.url, tmp_path / "var")
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    server = Listener(tmp_path, env)
    server.start()
    try:
        content = report_message()
        throwaway_postgres.stop()
        with server.client() as client:
            client.ehlo("reporter.test")
            client.mail("a@sender.test")
            assert client.rcpt("dmarc@reports.test")[0] == 250
            code, text = client.data(content)
        assert code == 451, text
        assert text.startswith(b"4.3.0")

        throwaway_postgres.start()
        with server.client() as client:
            client.ehlo("reporter.test")
            client.mail("a@sender.test")
            client.rcpt("dmarc@reports.test")
            code, text = client.data(content)
        assert code == 250, text
        rows = throwaway_postgres.sql("SELECT id, sha256, source FROM reports_rawmessage")
        assert rows == [(stored_id(text), hashlib.sha256(content).hexdigest(), "smtp")]
    finally:
        server.stop()


def test_with_a_certificate_the_listener_offers_starttls_and_still_no_auth(tmp_path):
    from tests.reports.imap_server import make_certificates

    ca_file, cert_file, key_file = make_certificates(
        tmp_path, address=LISTEN_ADDRESS, host_name="ingest.reports.test"
    )
    env = listener_env(
        _test_database_url(), tmp_path / "var",
        MAILSEC_INGEST_TLS_CERT=str(cert_file), MAILSEC_INGEST_TLS_KEY=str(key_file),
    )  # fmt: skip
    server = Listener(tmp_path, env)
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        with server.client() as client:
            client.ehlo("reporter.test")
            assert client.has_extn("starttls")
            assert client.starttls(context=context)[0] == 220
            client.ehlo("reporter.test")
            assert not client.has_extn("auth")
            assert client.sendmail("a@sender.test", ["dmarc@reports.test"], report_message()) == {}
    finally:
        server.stop()
    assert RawMessage.objects.count() == 1


def test_a_nul_and_an_undecodable_byte_in_the_sender_are_stored_visible_not_retried_forever(
    listener,
):
    """SMTPUTF8 lets any byte into MAIL FROM; PostgreSQL refuses NUL and lone surrogates, so
    unescaped they would make every delivery a 451, and the sender would retry forever."""
    with socket.create_connection((LISTEN_ADDRESS, listener.port), timeout=30) as sock:
        reader = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            return reply

        assert reader.readline().startswith(b"220")
        command(b"EHLO reporter.test")
        assert command(b"MAIL FROM:<a\x00b\xff@sender.test>").startswith(b"250")
        assert command(b"RCPT TO:<dmarc@reports.test>").startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        reply = command(report_message() + b".")
    assert reply.startswith(b"250"), reply
    assert RawMessage.objects.get().envelope_from == "a\\x00b\\udcff@sender.test"
