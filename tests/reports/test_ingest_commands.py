"""manage.py ingest_report and ingest_email: every sample through each, the JSON contract, and
the pipe's exit codes (0 stored, 65 too large, 75 not stored) as Postfix reads them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from dns_records.models import Domain
from reports.models import IngestSource, RawMessage, RawMessageState, Report
from tests import settings as test_settings
from tests.reports.generate import aggregate_xml
from tests.reports.store_helpers import process
from tests.reports.test_parse_samples import ALL_SAMPLES, EXPECTED, REJECTED

REPO = Path(__file__).resolve().parents[2]


def _ingest_report(*args: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    call_command("ingest_report", *args, "--json", stdout=out)
    result: list[dict[str, Any]] = json.loads(out.getvalue())
    return result


@pytest.mark.django_db
@pytest.mark.parametrize("path", ALL_SAMPLES, ids=lambda p: p.name)
def test_ingest_report_gives_every_sample_its_status(path):
    (result,) = _ingest_report(str(path))
    assert result["file"] == str(path)
    if path.name in REJECTED:
        assert (result["status"], result["reason"]) == ("rejected", REJECTED[path.name])
        assert result["report"] is None
        assert RawMessage.objects.get().state == RawMessageState.QUARANTINED
        return
    reporter, report_id, domain, _begin, _end, records, messages, _schema = EXPECTED[path.name]
    assert result["status"] == "stored"
    report = result["report"]
    assert (report["org_name"], report["report_id"], report["domain"]) == (
        reporter, report_id, domain,
    )  # fmt: skip
    assert (report["record_count"], report["message_count"]) == (records, messages)
    assert report["unmatched"] is True and result["reason"] == "unmatched"
    assert Report.objects.filter(raw_message__source=IngestSource.COMMAND).count() == 1


@pytest.mark.django_db
def test_ingest_report_stores_a_duplicate_once(tmp_path):
    first, second = tmp_path / "a.xml", tmp_path / "b.xml"
    first.write_bytes(aggregate_xml(4))
    second.write_bytes(aggregate_xml(4))
    results = _ingest_report(str(first), str(second))
    assert [r["status"] for r in results] == ["stored", "duplicate"]
    assert results[0]["report"]["id"] == results[1]["report"]["id"]
    assert Report.objects.count() == 1


@pytest.mark.django_db
def test_ingest_report_for_an_organisation(org, tmp_path):
    path = tmp_path / "r.xml"
    path.write_bytes(aggregate_xml(2, domain="not-theirs.example"))
    (result,) = _ingest_report(str(path), "--organisation", org.slug)
    assert result["report"]["organisation"] == org.slug
    assert result["reason"] == ""


@pytest.mark.django_db
def test_ingest_report_matches_the_organisation_by_domain(org, tmp_path):
    Domain.objects.create(organisation=org, name="example.com")
    path = tmp_path / "r.xml"
    path.write_bytes(aggregate_xml(2))
    (result,) = _ingest_report(str(path))
    assert result["report"]["organisation"] == org.slug
    assert result["report"]["unmatched"] is False


@pytest.mark.django_db
def test_ingest_report_refuses_an_unknown_organisation_or_file(tmp_path):
    path = tmp_path / "r.xml"
    path.write_bytes(aggregate_xml(1))
    with pytest.raises(CommandError, match="no organisation"):
        call_command("ingest_report", str(path), "--organisation", "nope")
    with pytest.raises(CommandError, match="no such file"):
        call_command("ingest_report", str(path), str(tmp_path / "missing.xml"))
    assert RawMessage.objects.count() == 0


@pytest.mark.django_db
def test_ingest_report_refuses_a_file_over_the_size_limit(tmp_path, settings):
    settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES = 2048
    path = tmp_path / "big.xml"
    path.write_bytes(aggregate_xml(50))
    (result,) = _ingest_report(str(path))
    assert (result["status"], result["reason"]) == ("rejected", "too_large")
    assert RawMessage.objects.count() == 0


@pytest.mark.django_db
def test_ingest_report_prints_a_line_per_file(tmp_path):
    path = tmp_path / "r.xml"
    path.write_bytes(aggregate_xml(3))
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    out = io.StringIO()
    call_command("ingest_report", str(path), str(empty), stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{path}: stored generator.example generated-1 for example.com")
    assert lines[1].startswith(f"{empty}: rejected (empty)")


# --- ingest_email, in this process: every sample ------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ALL_SAMPLES, ids=lambda p: p.name)
def test_ingest_email_stores_every_sample_and_the_worker_step_gives_its_status(path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    call_command("ingest_email", "--sender", "dmarc@reporter.example", "--recipient", "rua@x.test")
    message = RawMessage.objects.get()
    assert (message.source, message.state) == (IngestSource.PIPE, RawMessageState.PENDING)
    assert bytes(message.content) == path.read_bytes()
    assert message.envelope_from == "dmarc@reporter.example"
    outcome = process(message.pk)
    expected = "rejected" if path.name in REJECTED else "stored"
    assert outcome.status == expected
    if path.name in REJECTED:
        assert outcome.reason == REJECTED[path.name]


# --- ingest_email as Postfix runs it: a process, stdin, an exit status ---------------------


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{db['HOST']}{port}/{db['NAME']}"


def _manage(
    args: list[str], *, stdin: bytes, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[bytes]:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailsec.settings",
        "MAILSEC_SECRET_KEY": "ingest-email-test-secret-key-0123456789-abcdefghijklmnop",
        "MAILSEC_VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": test_settings.TEST_BROKER_URL,
        "MAILSEC_CELERY_QUEUE": test_settings.TEST_QUEUE,
        **env,
    }
    environment.pop("MAILSEC_DEBUG", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        env=environment,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_ingest_email_exits_0_once_stored(tmp_path):
    content = aggregate_xml(2)
    done = _manage(
        ["ingest_email", "--recipient", "dmarc@ingest.test"],
        stdin=content,
        tmp_path=tmp_path,
        DATABASE_URL=_database_url(),
    )
    assert done.returncode == 0, done.stderr
    message = RawMessage.objects.get()
    assert bytes(message.content) == content
    assert message.envelope_to == "dmarc@ingest.test"


@pytest.mark.django_db(transaction=True)
def test_ingest_email_exits_0_for_what_will_be_quarantined_or_a_duplicate(tmp_path):
    for content in (b"", b"not a report at all", aggregate_xml(1), aggregate_xml(1)):
        done = _manage(
            ["ingest_email"],
            stdin=content,
            tmp_path=tmp_path,
            DATABASE_URL=_database_url(),
            # No broker: no session worker parses these before this test does.
            CELERY_BROKER_URL="redis://127.0.0.1:9/0",
        )
        assert done.returncode == 0, done.stderr
    outcomes = [process(pk).status for pk in RawMessage.objects.order_by("pk").values_list("pk", flat=True)]  # fmt: skip
    assert outcomes == ["rejected", "rejected", "stored", "duplicate"]


@pytest.mark.django_db(transaction=True)
def test_ingest_email_stores_even_when_the_broker_is_down(tmp_path):
    done = _manage(
        ["ingest_email"],
        stdin=aggregate_xml(1),
        tmp_path=tmp_path,
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL="redis://127.0.0.1:9/0",
    )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert RawMessage.objects.get().state == RawMessageState.PENDING  # the sweep queues it


def test_ingest_email_exits_75_when_the_database_is_unreachable(tmp_path):
    done = _manage(
        ["ingest_email"],
        stdin=aggregate_xml(1),
        tmp_path=tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:9/unreachable",
    )
    assert done.returncode == 75
    assert b"Traceback" not in done.stderr
    assert b"could not store the message" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_ingest_email_exits_65_for_a_message_over_the_limit(tmp_path):
    done = _manage(
        ["ingest_email"],
        stdin=b"x" * 5000,
        tmp_path=tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:9/unreachable",
        MAILSEC_REPORT_MAX_MESSAGE_BYTES="4096",
    )
    assert done.returncode == 65
    assert b"too large" in done.stderr and b"Traceback" not in done.stderr


@pytest.mark.django_db(transaction=True)
def test_ingest_report_runs_the_whole_pipeline_in_its_own_process(tmp_path):
    path = tmp_path / "report.xml"
    path.write_bytes(aggregate_xml(7))
    done = _manage(
        ["ingest_report", "--json", str(path), str(path)],
        stdin=b"",
        tmp_path=tmp_path,
        DATABASE_URL=_database_url(),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["status"] for r in results] == ["stored", "duplicate"]
    assert results[0]["report"]["record_count"] == 7
    assert Report.objects.get().record_count == 7
