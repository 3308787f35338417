"""DMARC record grammar and suggestions, with no DNS server."""

from __future__ import annotations

import pytest

from dns_records.checks.dmarc import (
    DmarcSyntaxError,
    external_report_domains,
    parse_dmarc,
    suggest_dmarc,
)
from dns_records.names import organisational_domain


def test_parse_reads_tags_case_insensitively():
    record = parse_dmarc(
        "v=DMARC1; P=Reject; pct=25; rua=mailto:a@x.example!10m, mailto:b@y.example"
    )
    assert (record.policy, record.pct) == ("reject", 25)
    assert record.report_addresses("rua") == [
        ("a@x.example", "x.example"),
        ("b@y.example", "y.example"),
    ]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=DMARC1", "p= tag is missing"),
        ("v=DMARC1; p=maybe", "not none, quarantine or reject"),
        ("v=DMARC1; p=none; sp=all", "sp=all"),
        ("v=DMARC1; p=none; pct=101", "pct=101"),
        ("v=DMARC1; p=none; adkim=x", "adkim=x"),
        ("v=DMARC1; p=none; p=reject", "appears twice"),
        ("v=DMARC1; p=none; rua=https://x.example", "not a mailto"),
        ("p=none; v=DMARC1", "does not start"),
        ("v=DMARC1; p=none; junk", "not a tag=value"),
    ],
)
def test_invalid_records_are_refused(record, reason):
    with pytest.raises(DmarcSyntaxError, match=reason):
        parse_dmarc(record)


def test_unknown_tags_are_tolerated_but_noted():
    record = parse_dmarc("v=DMARC1; p=reject; foo=bar")
    assert record.problems == ("unknown tag 'foo' is ignored",)


def test_organisational_domain_uses_the_public_suffix_list():
    assert organisational_domain("mail.example.co.uk") == "example.co.uk"
    assert organisational_domain("a.b.example.com") == "example.com"


def test_report_domains_inside_the_organisation_need_no_authorisation():
    record = parse_dmarc(
        "v=DMARC1; p=reject; rua=mailto:d@reports.example.com,mailto:x@vendor.example"
    )
    assert external_report_domains("mail.example.com", record) == ["vendor.example"]


def test_suggestion_keeps_strict_policy_and_adds_ingest_address():
    current = parse_dmarc("v=DMARC1; p=reject; pct=20; adkim=s")
    assert suggest_dmarc("d.test", current, "in@mailsec.example") == (
        "v=DMARC1; p=reject; adkim=s; rua=mailto:in@mailsec.example"
    )
