"""End-to-end report ingest: N reports sent over SMTP until their reports are stored rows.

```
.venv/bin/python bench/report_ingest.py [--reports 300] [--records 20] [--clients 4]
    [--pipe-messages 20] [--output var/bench/report_ingest.json]
```

It migrates a database of its own (a fresh `<name>_bench_ingest` on DATABASE_URL's PostgreSQL
server, dropped afterwards; SQLite in a temporary directory without DATABASE_URL), starts
`manage.py ingest_smtp` on a free port of 127.0.0.1 and a Celery worker (2 processes) on a queue
of its own (Redis on 127.0.0.1:6379 when it answers, else the file-system broker), then sends
N generated aggregate reports (each its own report id, gzipped XML attached, as Google sends
them) from `--clients` SMTP connections at once. It measures:

- accepted/s: messages answered 250 per second (each committed as a raw message first);
- stored/s: reports per second from the first message sent to the last report stored by the
  worker (the raw message `stored`, its report a row): the end-to-end number;
- for comparison, `manage.py ingest_email` (the Postfix pipe) on `--pipe-messages` messages,
  one process per message as Postfix runs it: messages stored per second and the mean time.

Exit status 0 when every report sent is stored exactly once, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.1"
INGEST_ADDRESS = "dmarc@bench.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ADDRESS, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def report_xml(n: int, records: int, rng: random.Random) -> bytes:
    rows = []
    for _ in range(records):
        ip = (
            f"192.0.2.{rng.randrange(1, 255)}"
            if rng.random() < 0.8
            else f"2001:db8::{rng.randrange(1, 65535):x}"
        )
        passed = rng.random() < 0.7
        result = "pass" if passed else "fail"
        rows.append(
            f"""  <record>
    <row><source_ip>{ip}</source_ip><count>{rng.randrange(1, 300)}</count>
      <policy_evaluated><disposition>{"none" if passed else "quarantine"}</disposition><dkim>{result}</dkim><spf>{result}</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results><dkim><domain>example.com</domain><selector>s1</selector><result>{result}</result></dkim><spf><domain>example.com</domain><result>{result}</result></spf></auth_results>
  </record>
"""
        )
    return (
        f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata><org_name>google.com</org_name><email>noreply-dmarc-support@google.com</email>
    <report_id>bench-ingest-{n}</report_id><date_range><begin>1718236800</begin><end>1718323199</end></date_range>
  </report_metadata>
  <policy_published><domain>example.com</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>
{"".join(rows)}</feedback>
"""
    ).encode()


def report_message(n: int, records: int, rng: random.Random) -> bytes:
    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@google.com"
    message["To"] = INGEST_ADDRESS
    message["Subject"] = (
        f"Report domain: example.com Submitter: google.com Report-ID: bench-ingest-{n}"
    )
    message["Message-ID"] = make_msgid(domain="google.com")
    message.set_content("This is an aggregate report from Google.")
    message.add_attachment(
        gzip.compress(report_xml(n, records, rng), mtime=0),
        maintype="application",
        subtype="gzip",
        filename=f"google.com!example.com!1718236800!1718323199!{n}.xml.gz",
    )
    # On the wire every line ends in CR LF (smtplib sends bytes as they are).
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Database:
    """A fresh database for the run: PostgreSQL beside DATABASE_URL's, or SQLite."""

    def __init__(self, base_url: str, directory: Path) -> None:
        self.base_url = base_url
        self.directory = directory
        if base_url.startswith(("postgres://", "postgresql://")):
            parts = urlsplit(base_url)
            self.name = f"{parts.path.lstrip('/') or 'mailsec'}_bench_ingest"
            self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
            self.admin = urlunsplit(parts._replace(path="/postgres"))
        else:
            self.name = ""
            self.url = f"sqlite:///{directory / 'bench.sqlite3'}"

    def create(self) -> None:
        if self.name:
            import psycopg

            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        if self.name:
            import psycopg

            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def environment(database: Database, var_dir: Path, queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSEC_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="mailsec.settings",
        DATABASE_URL=database.url,
        MAILSEC_DEBUG="1",
        MAILSEC_VAR_DIR=str(var_dir),
        MAILSEC_CELERY_QUEUE=queue,
        MAILSEC_INGEST_ADDRESSES=INGEST_ADDRESS,
        MAILSEC_LOG_LEVEL="WARNING",
        # Nothing the worker resolves may leave the machine.
        MAILSEC_DNS_NAMESERVERS="127.0.0.1:9",
        MAILSEC_DNS_TIMEOUT="0.5",
    )
    broker = os.environ.get("CELERY_BROKER_URL") or (
        "redis://127.0.0.1:6379/14" if redis_up() else ""
    )
    if broker:
        env["CELERY_BROKER_URL"] = broker
    else:
        env.pop("CELERY_BROKER_URL", None)
    return env


def run(argv: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, cwd=REPO, env=env, check=False, capture_output=True, **kwargs)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def counts() -> dict[str, int]:
    from django.db import close_old_connections
    from django.db.models import Count

    from reports.models import RawMessage, Report

    close_old_connections()
    states = {
        row["state"]: row["n"] for row in RawMessage.objects.values("state").annotate(n=Count("pk"))
    }
    return {**states, "reports": Report.objects.count(), "raw": sum(states.values())}


def send_all(port: int, messages: list[bytes], clients: int) -> tuple[float, list[str]]:
    failures: list[str] = []
    lock = threading.Lock()
    chunks = [messages[i::clients] for i in range(clients)]

    def work(chunk: list[bytes]) -> None:
        with smtplib.SMTP(ADDRESS, port, timeout=120) as client:
            for content in chunk:
                try:
                    client.sendmail("noreply-dmarc-support@google.com", [INGEST_ADDRESS], content)
                except smtplib.SMTPException as exc:
                    with lock:
                        failures.append(str(exc))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(work, chunks))
    return time.monotonic() - started, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--records", type=int, default=20, help="records per report")
    parser.add_argument("--clients", type=int, default=4, help="SMTP connections at once")
    parser.add_argument("--pipe-messages", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--output", default=str(REPO / "var" / "bench" / "report_ingest.json"))
    options = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="mailsec-bench-ingest-"))
    database = Database(os.environ.get("DATABASE_URL", ""), directory)
    queue = f"bench-ingest-{os.getpid()}"
    env = environment(database, directory / "var", queue)
    os.environ.update(
        {
            k: env[k]
            for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "MAILSEC_VAR_DIR", "MAILSEC_DEBUG")
        }
    )
    sys.path.insert(0, str(REPO))
    database.create()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        migrated = run([sys.executable, "manage.py", "migrate", "--noinput"], env)
        if migrated.returncode != 0:
            print(migrated.stdout.decode() + migrated.stderr.decode())
            return 1
        import django

        django.setup()
        port = free_port()
        processes.append(
            start(
                [sys.executable, "manage.py", "ingest_smtp", "--listen", f"{ADDRESS}:{port}"],
                env,
                directory / "listener.log",
            )
        )
        processes.append(start([
            sys.executable, "-m", "celery", "-A", "mailsec", "worker", "--loglevel=WARNING",
            "--concurrency=2", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{queue}@localhost",
        ], env, directory / "worker.log"))  # fmt: skip
        if not wait_for_port(port):
            print((directory / "listener.log").read_text())
            return 1
        rng = random.Random(20261203)  # noqa: S311 (test data, not secrets)
        messages = [report_message(n, options.records, rng) for n in range(options.reports)]

        started = time.monotonic()
        sending, failures = send_all(port, messages, options.clients)
        deadline = started + options.timeout
        seen = counts()
        while (
            seen.get("stored", 0) + seen.get("quarantined", 0) + seen.get("duplicate", 0)
            < options.reports
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            seen = counts()
        elapsed = time.monotonic() - started
        smtp = dict(seen)

        # The pipe: one `manage.py ingest_email` process per message, as Postfix runs it.
        pipe_times = []
        pipe_failures = 0
        for n in range(options.pipe_messages):
            content = report_message(options.reports + n, options.records, rng)
            begun = time.monotonic()
            result = run(
                [sys.executable, "manage.py", "ingest_email", "--sender", "x@google.com", "--recipient", INGEST_ADDRESS],
                env, input=content,
            )  # fmt: skip
            pipe_times.append(time.monotonic() - begun)
            pipe_failures += result.returncode != 0
    finally:
        for process in processes:
            stop(process)
        from django.db import connections

        connections.close_all()
        database.drop()

    stored_ok = smtp.get("stored", 0) == options.reports and smtp["reports"] == options.reports
    report = {
        "reports": options.reports,
        "records_per_report": options.records,
        "smtp_clients": options.clients,
        "database": "postgresql" if database.name else "sqlite",
        "broker": "redis" if env.get("CELERY_BROKER_URL") else "filesystem",
        "smtp": {
            "send_seconds": round(sending, 3),
            "accepted_per_second": round(options.reports / sending, 1),
            "refused": len(failures),
            "end_to_end_seconds": round(elapsed, 3),
            "stored_reports_per_second": round(smtp["reports"] / elapsed, 1),
            "raw_messages": smtp,
        },
        "pipe_ingest_email": {
            "messages": options.pipe_messages,
            "failures": pipe_failures,
            "mean_seconds_per_message": round(sum(pipe_times) / max(len(pipe_times), 1), 3),
            "messages_per_second": round(len(pipe_times) / max(sum(pipe_times), 1e-9), 2),
        },
        "ok": stored_ok and not failures and not pipe_failures,
    }
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    for failure in failures[:3]:
        print("refused:", failure)
    print(
        f"\nSMTP: {report['smtp']['accepted_per_second']} messages/s accepted, "
        f"{report['smtp']['stored_reports_per_second']} reports/s stored end to end "
        f"({options.reports} reports, {options.records} records each); ingest_email: "
        f"{report['pipe_ingest_email']['messages_per_second']} messages/s "
        f"({report['pipe_ingest_email']['mean_seconds_per_message']} s each, mostly process start)"
    )
    if report["ok"]:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"logs kept in {directory}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
