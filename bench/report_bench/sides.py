"""The two sides, each reading one report file to (records, messages): mailsec and parsedmarc.

Both are given the same file (.xml, .xml.gz, .zip or .eml) and do all of their own work on it:
mailsec's `parse_message` on the file's bytes, consuming every streamed record; parsedmarc's
`parse_report_file(path, offline=True)` (no DNS, no downloads), which returns every record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


def mailsec_parse(path: Path) -> tuple[int, int]:
    from reports.parse import parse_message
    from reports.parsed import TlsReport

    document = parse_message(path.read_bytes())
    if isinstance(document, TlsReport):
        raise TypeError(f"{path.name} is a TLS report")
    records = messages = 0
    for record in document.records():
        records += 1
        messages += record.count
    return records, messages


def parsedmarc_parse(path: Path) -> tuple[int, int]:
    import parsedmarc  # type: ignore[import-untyped]

    logging.getLogger("parsedmarc").setLevel(logging.CRITICAL)
    result: dict[str, Any] = parsedmarc.parse_report_file(str(path), offline=True)
    if result["report_type"] != "aggregate":
        raise TypeError(f"{path.name} is a {result['report_type']} report")
    found = result["report"]["records"]
    return len(found), sum(record["count"] for record in found)


SIDES = {"mailsec": mailsec_parse, "parsedmarc": parsedmarc_parse}
