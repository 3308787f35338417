"""Every sample report parses to the right reporter, id, domain, range and totals, as parsedmarc reads it.

The samples (tests/fixtures/reports/samples/, provenance in its SOURCES.md) are real reports
from three projects' test suites. Each aggregate report's values are pinned here and also
compared, in the same test, with parsedmarc 11.1.0 run offline on the same file: reporter,
report id, policy domain, date range, record count, message total and each record's source,
count, disposition and alignment.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reports.parse import parse_message
from reports.parsed import AggregateRecord, Rejection, TlsReport

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "samples"
ALL_SAMPLES = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name != "SOURCES.md")

# file name: (reporter, report id, policy domain, begin, end, records, messages, schema)
EXPECTED: dict[str, tuple[str, str, str, int, int, int, int, str]] = {
    "acme.xml": (
        "acme.com",
        "9391651994964116463",
        "example.com",
        1335571200,
        1335657599,
        1,
        2,
        "draft",
    ),
    "aol.xml": (
        "AOL",
        "website.com_1504828800",
        "website.com",
        1504742400,
        1504828800,
        1,
        1,
        "draft",
    ),
    "gmxnet.xml": (
        "GMX",
        "6d2be94cbabf4e838a3cf58fb4a42ab5",
        "myserver.com",
        1733184000,
        1733270399,
        1,
        1,
        "rfc9990",
    ),
    "google.xml": (
        "google.com",
        "3166094538684628578",
        "foo-bar.io",
        1709683200,
        1709769599,
        1,
        1,
        "draft",
    ),
    "hardfail.xml": (
        "reporting org",
        "abcdef",
        "mydomain.org",
        1727049600,
        1727135999,
        1,
        1,
        "draft",
    ),
    "invalid_casing.xml": (
        "reporting org",
        "abcdef",
        "mydomain.org",
        1727049600,
        1727135999,
        1,
        1,
        "draft",
    ),
    "mailru.xml": (
        "Mail.Ru",
        "28327321193681154911721360800",
        "foobar.de",
        1721260800,
        1721347200,
        1,
        1,
        "draft",
    ),
    "outlook.xml": (
        "Outlook.com",
        "a4f4ef0654474d3faa5dca167a34a86a",
        "random.net",
        1709683200,
        1709769600,
        2,
        3,
        "rfc7489",
    ),
    "solamora.xml": (
        "solarmora.com",
        "9391651994964116463",
        "bix-business.com",
        1335571200,
        1335657599,
        1,
        2,
        "draft",
    ),
    "webde.xml": (
        "WEB.DE",
        "a3345c7cb5fd4f26aa62144bf449a54b",
        "foobar.com",
        1722816000,
        1722902399,
        1,
        1,
        "rfc9990",
    ),
    "yahoo.xml": (
        "Yahoo",
        "1709600619.487850",
        "random.org",
        1709510400,
        1709596799,
        1,
        1,
        "draft",
    ),
    "Report_Domain_ngyn.org_Submitter_amazon.com_Report-ID_aggr_report_ngyn.org_20210607.eml": (
        "AMAZON-SES",
        "12007123-9847-4f23-a7d7-c6837cce89de",
        "ngyn.org",
        1622937600,
        1623024000,
        1,
        1,
        "rfc7489",
    ),
    "!example.com!1538204542!1538463818.xml": (
        "accurateplastics.com",
        "example.com:1538463741",
        "example.com",
        1538413632,
        1538413632,
        1,
        1,
        "draft",
    ),
    "!large-example.com!1711897200!1711983600.xml": (
        "accurateplastics.com",
        "example.com:1711897200",
        "example.com",
        1711897200,
        1711983600,
        2286,
        2286,
        "draft",
    ),
    "Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml": (
        "google.com",
        "949348866075514174",
        "borschow.com",
        1549929600,
        1550015999,
        1,
        1,
        "draft",
    ),
    "addisonfoods.com!example.com!1536105600!1536191999.xml": (
        "addisonfoods.com",
        "3ceb5548498640beaeb47327e202b0b9",
        "example.com",
        1536105600,
        1536191999,
        1,
        1,
        "rfc7489",
    ),
    "empty_reason.xml": (
        "example.org",
        "20240125141224705995",
        "example.com",
        1706159544,
        1706185733,
        1,
        2,
        "rfc7489",
    ),
    "estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip": (
        "XYZ Corporation",
        "2940",
        "example.com",
        1536853302,
        1536939702,
        1,
        1,
        "draft",
    ),
    "example.net!example.com!1529366400!1529452799.xml": (
        "example.net",
        "b043f0e264cf4ea995e93765242f6dfb",
        "example.com",
        1529366400,
        1529452799,
        1,
        1,
        "rfc7489",
    ),
    "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz": (
        "FastMail Pty Ltd",
        "102675056",
        "indemed.com",
        1516060800,
        1516147199,
        1,
        1,
        "rfc7489",
    ),
    "ikea.com!example.de!1538690400!1538776800.xml": (
        "ikea.com",
        "aggr_report_2018_10_05_5bc7e9b4f3e8a",
        "example.de",
        1538690400,
        1538776800,
        1,
        1,
        "draft",
    ),
    "invalid_utf_8.xml": (
        "accurateplastics.com",
        "example.com:1538463741",
        "example.com",
        1538413632,
        1538413632,
        1,
        1,
        "draft",
    ),
    "invalid_xml.xml": (
        "veeam.com",
        "sonexushealth.com:1530233361",
        "example.com",
        1530133200,
        1530219600,
        1,
        1,
        "draft",
    ),
    "mimecast-weird-gzip.eml": (
        "Mimecast",
        "157a5fe30ec76f4bc0d8bccfc96c118a167a1280fee7c7465af5115e73082e5e",
        "ab.id.au",
        1693353600,
        1693439999,
        1,
        1,
        "draft",
    ),
    "old_draft_from_wiki.xml": (
        "acme.com",
        "9391651994964116463",
        "example.com",
        1335571200,
        1335657599,
        1,
        2,
        "draft",
    ),
    "protection.outlook.com!example.com!1711756800!1711843200.xml": (
        "Outlook.com",
        "cfeafefe4129445e8c81018bd9177197",
        "example.com",
        1711756800,
        1711843200,
        1,
        1,
        "rfc7489",
    ),
    "rfc9990-example.net!example.com!1700000000!1700086399.xml": (
        "example.net",
        "dmarcbis-test-report-001",
        "example.com",
        1700000000,
        1700086399,
        2,
        7,
        "rfc9990",
    ),
    "rfc9990-sample.xml": (
        "Sample Reporter",
        "3v98abbp8ya9n3va8yr8oa3ya",
        "example.com",
        302832000,
        302918399,
        1,
        123,
        "rfc9990",
    ),
    "twilight.eml": (
        "google.com",
        "1627703331531660819",
        "twlnet.com",
        1549756800,
        1549843199,
        1,
        1,
        "draft",
    ),
    "usssa.com!example.com!1538784000!1538870399.xml": (
        "usssa.com",
        "8953b4d4a4ee4218b6ac0e2cb2667ee1",
        "example.com",
        1538784000,
        1538870399,
        2,
        2,
        "rfc7489",
    ),
    "veeam.com!example.com!1530133200!1530219600.xml": (
        "veeam.com",
        "sonexushealth.com:1530233361",
        "example.com",
        1530133200,
        1530219600,
        1,
        1,
        "draft",
    ),
    "report_with_upper_cased_pass.xml": (
        "example.com",
        "aggr_report_example.com_20191202_1638",
        "example.com",
        1574955300,
        1575304683,
        1,
        1,
        "draft",
    ),
    "nice-input.xml": (
        "google.com",
        "11038226378739404135",
        "example.com",
        1718236800,
        1718323199,
        20,
        3047,
        "draft",
    ),
    "nice-input.xml.gz": (
        "google.com",
        "11038226378739404135",
        "example.com",
        1718236800,
        1718323199,
        20,
        3047,
        "draft",
    ),
    "nice-input.xml.zip": (
        "google.com",
        "11038226378739404135",
        "example.com",
        1718236800,
        1718323199,
        20,
        3047,
        "draft",
    ),
}
REJECTED = {
    "empty.xml": "empty",
    "DMARC Failure Report for domain.de (mail-from=sharepoint@domain.de, ip=10.10.10.10).eml": "failure_report",
}
# Malformed samples kept by recovery, with what their header.errors says.
RECOVERED = {
    "ikea.com!example.de!1538690400!1538776800.xml": "Invalid XML: no element found: line 47",
    "invalid_xml.xml": "Invalid XML: not well-formed (invalid token): line 5",
    "invalid_utf_8.xml": "Invalid XML: not well-formed (invalid token): line 31",
}


def test_every_sample_is_expected() -> None:
    names = {path.name for path in ALL_SAMPLES}
    assert names == set(EXPECTED) | set(REJECTED)


def _parsedmarc(path: Path) -> dict[str, Any]:
    import parsedmarc  # type: ignore[import-untyped]

    logging.getLogger("parsedmarc").setLevel(logging.ERROR)
    return parsedmarc.parse_report_file(str(path), offline=True)  # type: ignore[no-any-return]


def _local_time(moment: datetime) -> str:
    # parsedmarc prints timestamps in the local time zone, naive.
    return datetime.fromtimestamp(moment.timestamp()).strftime("%Y-%m-%d %H:%M:%S")


def _record_key(record: AggregateRecord) -> tuple[str, int, str, str, str, str]:
    return (
        record.source_ip,
        record.count,
        record.disposition,
        record.dkim_aligned,
        record.spf_aligned,
        # An invalid UTF-8 byte: replaced (U+FFFD) here, dropped by parsedmarc.
        record.header_from.replace("\ufffd", ""),
    )


def _their_record_key(record: dict[str, Any]) -> tuple[str, int, str, str, str, str]:
    evaluated = record["policy_evaluated"]
    return (
        record["source"]["ip_address"],
        record["count"],
        evaluated["disposition"].lower(),
        evaluated["dkim"].lower(),
        evaluated["spf"].lower(),
        (record["identifiers"]["header_from"] or "").lower(),
    )


@pytest.mark.parametrize(
    "path", [p for p in ALL_SAMPLES if p.name in EXPECTED], ids=lambda p: p.name
)
def test_sample_parses_as_parsedmarc_reads_it(path: Path) -> None:
    org, report_id, domain, begin, end, count, messages, schema = EXPECTED[path.name]
    document = parse_message(path.read_bytes())
    assert not isinstance(document, TlsReport)
    header = document.header
    records = list(document.records())

    assert (header.org_name, header.report_id, header.policy.domain) == (org, report_id, domain)
    assert (header.date_begin.timestamp(), header.date_end.timestamp()) == (begin, end)
    assert header.date_begin.tzinfo is not None
    assert (len(records), sum(r.count for r in records)) == (count, messages)
    assert header.schema == schema
    assert all(r.disposition in {"none", "quarantine", "reject", "pass"} for r in records)
    assert all(
        r.dkim_aligned in {"pass", "fail"} and r.spf_aligned in {"pass", "fail"} for r in records
    )
    if path.name in RECOVERED:
        assert any(e.startswith(RECOVERED[path.name]) for e in header.errors), header.errors
    else:
        assert not any(e.startswith("Invalid XML") for e in header.errors)

    theirs = _parsedmarc(path)
    assert theirs["report_type"] == "aggregate"
    report = theirs["report"]
    metadata = report["report_metadata"]
    assert header.org_name.casefold() == metadata["org_name"].casefold()
    assert header.report_id == metadata["report_id"]
    assert header.policy.domain == report["policy_published"]["domain"].lower()
    assert _local_time(header.date_begin) == str(metadata["begin_date"])
    assert _local_time(header.date_end) == str(metadata["end_date"])
    assert len(records) == len(report["records"])
    assert sum(r.count for r in records) == sum(r["count"] for r in report["records"])
    assert sorted(map(_record_key, records)) == sorted(map(_their_record_key, report["records"]))


@pytest.mark.parametrize(
    "path", [p for p in ALL_SAMPLES if p.name in REJECTED], ids=lambda p: p.name
)
def test_sample_that_is_not_an_aggregate_report_is_rejected_with_its_reason(path: Path) -> None:
    with pytest.raises(Rejection) as caught:
        parse_message(path.read_bytes())
    assert caught.value.reason == REJECTED[path.name]


def test_records_and_auth_results_carry_every_field() -> None:
    path = next(p for p in ALL_SAMPLES if p.name == "acme.xml")
    document = parse_message(path.read_bytes())
    assert not isinstance(document, TlsReport)
    assert document.header.errors == ("There was a sample error.",)
    assert document.header.extra_contact_info == "http://acme.com/dmarc/support"
    assert document.header.policy.fo == "1" and document.header.policy.pct == 100
    (record,) = document.records()
    assert record.source_ip == "72.150.241.94" and record.count == 2
    assert (record.disposition, record.dkim_aligned, record.spf_aligned) == ("none", "fail", "pass")
    assert record.dmarc_pass
    assert (record.header_from, record.envelope_from, record.envelope_to) == (
        "example.com",
        "example.com",
        "acme.com",
    )
    assert [(r.type, r.comment) for r in record.reasons] == [
        ("other", "DMARC Policy overridden for incoherent example.")
    ]
    (dkim,) = record.dkim
    assert (dkim.domain, dkim.selector, dkim.result, dkim.human_result) == (
        "example.com",
        "ExamplesSelector",
        "fail",
        "Incoherent example",
    )
    (spf,) = record.spf
    assert (spf.domain, spf.scope, spf.result) == ("example.com", "helo", "pass")


def test_rfc9990_fields_are_read() -> None:
    path = next(p for p in ALL_SAMPLES if p.name == "rfc9990-sample.xml")
    document = parse_message(path.read_bytes())
    assert not isinstance(document, TlsReport)
    header = document.header
    assert header.generator == "Example DMARC Aggregate Reporter v1.2"
    assert (header.policy.np, header.policy.testing, header.policy.discovery_method) == (
        "none",
        "n",
        "treewalk",
    )
    assert header.policy.pct is None
    (record,) = document.records()
    assert record.disposition == "pass"
    assert record.dkim[0].selector == "abc123"


def test_mixed_case_result_words_are_lower_cased() -> None:
    for name in ("report_with_upper_cased_pass.xml", "invalid_casing.xml"):
        path = next(p for p in ALL_SAMPLES if p.name == name)
        document = parse_message(path.read_bytes())
        assert not isinstance(document, TlsReport)
        for record in document.records():
            words = [record.disposition, record.dkim_aligned, record.spf_aligned]
            words += [a.result for a in record.dkim] + [a.result for a in record.spf]
            assert words == [w.lower() for w in words]
            assert "pass" in words


def test_empty_org_name_is_the_email_domain() -> None:
    path = next(p for p in ALL_SAMPLES if p.name == "!example.com!1538204542!1538463818.xml")
    document = parse_message(path.read_bytes())
    assert document.header.org_name == "accurateplastics.com"  # type: ignore[union-attr]
    assert document.header.date_begin == document.header.date_end  # type: ignore[union-attr]


def _nice() -> bytes:
    return next(p for p in ALL_SAMPLES if p.name == "nice-input.xml").read_bytes()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_report_is_read(encoding: str) -> None:
    text = _nice().decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    data = text.encode(encoding)
    if encoding == "utf-16-le":
        data = b"\xff\xfe" + data
    elif encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    document = parse_message(data)
    assert not isinstance(document, TlsReport)
    assert document.header.report_id == "11038226378739404135"
    assert sum(r.count for r in document.records()) == 3047


def test_latin1_report_keeps_its_characters() -> None:
    text = _nice().decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    text = text.replace("<org_name>google.com</org_name>", "<org_name>Müller Mail</org_name>")
    document = parse_message(text.encode("latin-1"))
    assert not isinstance(document, TlsReport)
    assert document.header.org_name == "Müller Mail"
    assert document.header.errors == ()
    assert sum(1 for _ in document.records()) == 20


def test_report_with_a_trailing_comment_is_read() -> None:
    document = parse_message(_nice() + b"\n<!-- generated by a reporter -->\n")
    assert not isinstance(document, TlsReport)
    assert sum(1 for _ in document.records()) == 20
