"""manage.py ingest_report FILE... [--json] [--organisation SLUG]: the whole pipeline, here.

Each file (a report as xml, xml.gz, zip, json or json.gz, or a whole .eml) is stored as a raw
message, parsed and stored in this process, exactly as the worker would. `--json` prints one
object per file, as a JSON list:

    [{"file": "...", "status": "stored"|"duplicate"|"rejected", "reason": "...",
      "detail": "...", "report": {...} | null, "reports": [{...}, ...]}]

`report` carries org_name, report_id, domain, date_begin, date_end, record_count,
message_count and dmarc_pass_count (TLS reports: their session counts), its organisation (slug,
or null and "unmatched": true when no organisation has the domain); `reports` lists every copy
when several organisations have the domain. A rejected file stays in the quarantine with its
reason (a file over the size limit is refused before anything is stored: reason "too_large").
The exit status is 0 once every file is processed, whatever its status; 1 when a file cannot be
read or the organisation is unknown (then nothing is stored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailsec.models import Organisation
from reports.models import IngestSource
from reports.services import (
    OutcomeStatus,
    ProcessOutcome,
    raw_message_outcome,
    raw_message_process,
    raw_message_store,
)


class Command(BaseCommand):
    help = "Store, parse and store report files or e-mails in this process; print each outcome."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--json", action="store_true", help="print a JSON list of outcomes")
        parser.add_argument(
            "--organisation",
            default="",
            metavar="SLUG",
            help="store the reports for this organisation (default: by their policy domain)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organisation_id = _organisation_id(options["organisation"])
        paths = [Path(name) for name in options["files"]]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        results = []
        for path in paths:
            outcome = _ingest(path, organisation_id)
            results.append({"file": str(path), **outcome.as_dict()})
            if not options["json"]:
                self.stdout.write(_line(str(path), outcome))
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2))


def _organisation_id(slug: str) -> int | None:
    if not slug:
        return None
    organisation = Organisation.objects.filter(slug=slug).first()
    if organisation is None:
        raise CommandError(f"no organisation {slug!r}")
    return organisation.pk


def _ingest(path: Path, organisation_id: int | None) -> ProcessOutcome:
    limit = settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES
    try:
        with path.open("rb") as handle:
            content = handle.read(limit + 1)
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None
    if len(content) > limit:
        return ProcessOutcome(
            OutcomeStatus.REJECTED, "too_large", f"more than {limit} bytes; nothing stored"
        )
    message = raw_message_store(
        content,
        source=IngestSource.COMMAND,
        organisation_id=organisation_id,
        filename=path.name,
        parse=False,
    )
    outcome = raw_message_process(raw_message_id=message.pk)
    return outcome or raw_message_outcome(raw_message_id=message.pk)


def _line(name: str, outcome: ProcessOutcome) -> str:
    if outcome.status == OutcomeStatus.REJECTED:
        return f"{name}: rejected ({outcome.reason}) {outcome.detail}".rstrip()
    summary = outcome.as_dict()["report"] or {}
    text = (
        f"{name}: {outcome.status} {summary.get('org_name', '')} {summary.get('report_id', '')}"
        f" for {summary.get('domain', '')}"
    )
    if "record_count" in summary:
        text += f", {summary['record_count']} records, {summary['message_count']} messages"
    if outcome.reason == "unmatched":
        text += " (no organisation has this domain)"
    return text
