"""Source classification: own, forwarder, unauthorised, spoofing, from message counts. Pure."""

from __future__ import annotations

import pytest

from reports.classify import SourceClass, SourceCounts, classify, record_counts


def counts(n: int = 100, **kw: int) -> SourceCounts:
    return SourceCounts(messages=n, **kw)


def test_aligned_spf_pass_is_own():
    result = classify(counts(dmarc_pass=100, spf_aligned_pass=100, spf_pass=100))
    assert result.kind is SourceClass.OWN
    assert "SPF" in result.explanation
    assert "fails DMARC" not in result.explanation


def test_own_host_with_some_failures_says_how_many_fail():
    result = classify(counts(dmarc_pass=80, spf_aligned_pass=80, spf_pass=80))
    assert result.kind is SourceClass.OWN
    assert "20% of its mail fails DMARC" in result.explanation


def test_aligned_dkim_with_spf_pass_for_its_own_domain_is_an_authorised_service():
    result = classify(counts(dmarc_pass=100, dkim_aligned_pass=100, dkim_pass=100, spf_pass=100))
    assert result.kind is SourceClass.OWN
    assert "DKIM" in result.explanation


def test_aligned_dkim_with_spf_failing_is_a_forwarder():
    result = classify(counts(dmarc_pass=100, dkim_aligned_pass=100, dkim_pass=100, spf_pass=0))
    assert result.kind is SourceClass.FORWARDER
    assert "forwarder" in result.explanation


def test_only_another_domains_dkim_passing_is_a_resigning_mailing_list():
    result = classify(counts(dkim_pass=100))
    assert result.kind is SourceClass.FORWARDER
    assert "mailing list" in result.explanation


def test_forwarding_override_makes_a_forwarder_even_when_everything_fails():
    result = classify(counts(forwarded=60))
    assert result.kind is SourceClass.FORWARDER
    assert "60%" in result.explanation


def test_unaligned_spf_pass_only_is_unauthorised():
    result = classify(counts(spf_pass=100))
    assert result.kind is SourceClass.UNAUTHORISED


def test_nothing_passing_is_spoofing():
    result = classify(counts())
    assert result.kind is SourceClass.SPOOFING
    assert "100% of its mail fails DMARC" in result.explanation


def test_no_messages_is_not_a_division_by_zero():
    assert classify(SourceCounts(messages=0)).kind is SourceClass.SPOOFING


def test_the_majority_decides_a_mixed_source():
    # 30 aligned passes among 100: not own; the rest fails everything.
    assert classify(counts(dmarc_pass=30, spf_aligned_pass=30, spf_pass=30)).kind is (
        SourceClass.SPOOFING
    )
    assert classify(counts(dmarc_pass=50, spf_aligned_pass=50, spf_pass=50)).kind is (
        SourceClass.OWN
    )


@pytest.mark.parametrize(
    ("kind", "legitimate"),
    [
        (SourceClass.OWN, True),
        (SourceClass.FORWARDER, True),
        (SourceClass.UNAUTHORISED, False),
        (SourceClass.SPOOFING, False),
    ],
)
def test_legitimate_classes(kind, legitimate):
    assert kind.legitimate is legitimate
    assert kind.label


def test_record_counts_from_a_report_record():
    c = record_counts(
        count=7,
        dkim_aligned="fail",
        spf_aligned="Pass",
        dkim_results=["fail", "pass"],
        spf_results=["pass"],
        override_types=["Forwarded"],
    )
    assert c == SourceCounts(
        messages=7,
        dmarc_pass=7,
        spf_aligned_pass=7,
        dkim_aligned_pass=0,
        spf_pass=7,
        dkim_pass=7,
        forwarded=7,
    )
    fail = record_counts(count=3, dkim_aligned="fail", spf_aligned="fail")
    assert fail.dmarc_pass == 0 and fail.dmarc_fail == 3 and fail.dkim_pass == 0


def test_counts_add_up():
    a = SourceCounts(messages=2, dmarc_pass=1, spf_pass=1)
    b = SourceCounts(messages=3, dmarc_pass=3, dkim_aligned_pass=3)
    assert a + b == SourceCounts(messages=5, dmarc_pass=4, spf_pass=1, dkim_aligned_pass=3)
