"""The policy advisor: shares of failing legitimate mail, sources to fix, the record to publish. Pure."""

from __future__ import annotations

import pytest

from reports.advisor import (
    PCT_RAMP,
    SourceVolume,
    Step,
    advise,
    current_tags,
    render_record,
)
from reports.classify import SourceClass, SourceCounts

RUA = "mailto:dmarc@example.com"


def own(ip: str, n: int, failing: int = 0, name: str = "") -> SourceVolume:
    ok = n - failing
    return SourceVolume(
        ip, SourceCounts(messages=n, dmarc_pass=ok, spf_aligned_pass=ok, spf_pass=ok), name
    )


def spoof(ip: str, n: int) -> SourceVolume:
    return SourceVolume(ip, SourceCounts(messages=n))


def service(ip: str, n: int) -> SourceVolume:
    """A service passing SPF for its own domain only: unauthorised until aligned."""
    return SourceVolume(ip, SourceCounts(messages=n, spf_pass=n))


def forwarder(ip: str, n: int, broken: int = 0) -> SourceVolume:
    ok = n - broken
    return SourceVolume(
        ip, SourceCounts(messages=n, dmarc_pass=ok, dkim_aligned_pass=ok, dkim_pass=n)
    )


CLEAN = [own("192.0.2.1", 10_000), spoof("203.0.113.9", 500)]


def test_none_with_clean_legitimate_mail_moves_to_quarantine_keeping_tags():
    advice = advise("example.com", CLEAN, record=f"v=DMARC1; p=none; rua={RUA}; fo=1")
    assert advice.step is Step.QUARANTINE
    assert advice.next_record == f"v=DMARC1; p=quarantine; rua={RUA}; fo=1"
    assert advice.current_policy == "none"
    assert advice.messages == 10_500
    assert advice.legitimate_messages == 10_000
    assert advice.legitimate_failing == 0
    assert advice.spoofing_messages == 500
    assert advice.fail_share_quarantine == 0.0
    assert advice.fix_first == []


def test_none_with_too_much_failing_legitimate_mail_says_fix_first_and_publishes_nothing():
    sources = [own("192.0.2.1", 9_000), own("192.0.2.2", 1_000, failing=500, name="crm.example")]
    advice = advise("example.com", sources, record=f"v=DMARC1; p=none; rua={RUA}")
    assert advice.step is Step.FIX
    assert advice.next_record == ""
    assert advice.legitimate_failing == 500
    assert advice.failing_share == pytest.approx(0.05)
    assert advice.fail_share_quarantine == pytest.approx(0.05)
    assert advice.fail_share_reject == pytest.approx(0.05)
    assert [s.ip for s in advice.fix_first] == ["192.0.2.2"]
    assert advice.fix_first[0].name == "crm.example"
    assert advice.fix_first[0].failing == 500
    assert advice.fix_first[0].kind is SourceClass.OWN
    assert "5.00%" in advice.summary


def test_a_host_failing_most_of_its_mail_is_not_counted_as_legitimate():
    advice = advise("example.com", [own("192.0.2.1", 1000, failing=900)], record="v=DMARC1; p=none")
    assert advice.legitimate_messages == 0
    assert advice.spoofing_messages == 1000


def test_sources_to_fix_are_ordered_by_failing_volume():
    sources = [
        own("192.0.2.1", 100_000, failing=100),
        own("192.0.2.2", 1_000, failing=450),
        own("192.0.2.3", 5_000, failing=400),
        forwarder("198.51.100.7", 2_000, broken=300),
    ]
    advice = advise("example.com", sources, record="v=DMARC1; p=none")
    assert [s.ip for s in advice.fix_first] == [
        "192.0.2.2",
        "192.0.2.3",
        "198.51.100.7",
        "192.0.2.1",
    ]
    assert advice.fix_first[2].kind is SourceClass.FORWARDER
    assert "ARC" in advice.fix_first[2].action


def test_unauthorised_services_are_listed_for_review_not_counted_as_legitimate():
    sources = [own("192.0.2.1", 10_000), service("198.51.100.20", 3_000)]
    advice = advise("example.com", sources, record="v=DMARC1; p=none")
    assert advice.step is Step.QUARANTINE
    assert advice.legitimate_messages == 10_000
    assert [s.ip for s in advice.review] == ["198.51.100.20"]
    assert advice.fix_first == []


def test_pct_in_use_ramps_quarantine_from_the_bottom():
    advice = advise("example.com", CLEAN, record="v=DMARC1; p=none; pct=50; rua=" + RUA)
    assert advice.step is Step.QUARANTINE
    assert advice.next_record == f"v=DMARC1; p=quarantine; pct={PCT_RAMP[0]}; rua={RUA}"
    assert advice.fail_share_quarantine == 0


@pytest.mark.parametrize(("current", "following"), [(10, 25), (25, 50), (50, 100), (30, 50)])
def test_quarantine_pct_ramps_one_step(current, following):
    advice = advise("example.com", CLEAN, record=f"v=DMARC1; p=quarantine; pct={current}")
    assert advice.step is Step.RAMP
    assert advice.next_record == f"v=DMARC1; p=quarantine; pct={following}"


def test_quarantine_share_scales_with_its_pct():
    sources = [own("192.0.2.1", 1000, failing=10)]
    advice = advise("example.com", sources, record="v=DMARC1; p=quarantine; pct=25")
    assert advice.step is Step.RAMP
    assert advice.next_record == "v=DMARC1; p=quarantine; pct=50"
    assert advice.fail_share_quarantine == pytest.approx(0.01 * 0.5)
    assert advice.fail_share_reject == pytest.approx(0.01)


def test_full_quarantine_moves_to_reject_only_under_the_reject_threshold():
    record = f"v=DMARC1; p=quarantine; rua={RUA}; adkim=s"
    good = advise("example.com", [own("192.0.2.1", 10_000, failing=10)], record=record)
    assert good.step is Step.REJECT
    assert good.next_record == f"v=DMARC1; p=reject; rua={RUA}; adkim=s"
    held = advise("example.com", [own("192.0.2.1", 10_000, failing=100)], record=record)
    assert held.step is Step.FIX
    assert held.next_record == ""
    assert "0.5%" in held.summary


def test_quarantine_threshold_is_looser_than_reject():
    sources = [own("192.0.2.1", 10_000, failing=150)]  # 1.5%
    assert advise("example.com", sources, record="v=DMARC1; p=none").step is Step.QUARANTINE
    assert advise("example.com", sources, record="v=DMARC1; p=quarantine").step is Step.FIX


def test_thresholds_are_parameters():
    sources = [own("192.0.2.1", 10_000, failing=150)]
    advice = advise("example.com", sources, record="v=DMARC1; p=quarantine", reject_max=0.02)
    assert advice.step is Step.REJECT


def test_partial_reject_ramps_up():
    advice = advise("example.com", CLEAN, record="v=DMARC1; p=reject; pct=25")
    assert advice.step is Step.RAMP
    assert advice.next_record == "v=DMARC1; p=reject; pct=50"


def test_full_reject_is_done_and_never_weakened():
    sources = [own("192.0.2.1", 1000, failing=300)]
    for record in ("v=DMARC1; p=reject", "v=DMARC1; p=reject; pct=100"):
        advice = advise("example.com", sources, record=record)
        assert advice.step is Step.DONE
        assert advice.next_record == ""


def test_failing_mail_never_advises_a_weaker_policy():
    sources = [own("192.0.2.1", 1000, failing=300)]
    for record in ("v=DMARC1; p=quarantine", "v=DMARC1; p=quarantine; pct=50"):
        advice = advise("example.com", sources, record=record)
        assert advice.step is Step.FIX
        assert advice.next_record == ""


def test_sp_and_other_tags_are_kept_as_they_are():
    record = f"v=DMARC1; p=none; sp=reject; rua={RUA}; ruf=mailto:f@example.com; aspf=s; ri=3600"
    advice = advise("example.com", CLEAN, record=record)
    assert advice.next_record == (
        f"v=DMARC1; p=quarantine; sp=reject; rua={RUA}; ruf=mailto:f@example.com; aspf=s; ri=3600"
    )


def test_too_few_messages_says_collect():
    advice = advise("example.com", [own("192.0.2.1", 20)], record="v=DMARC1; p=none")
    assert advice.step is Step.COLLECT
    assert advice.next_record == ""
    assert "20 messages" in advice.summary


def test_no_record_known_proposes_monitoring():
    advice = advise("example.com", CLEAN)
    assert advice.step is Step.PUBLISH
    assert advice.next_record == "v=DMARC1; p=none"
    assert advice.current_policy == ""


def test_invalid_record_falls_back_to_the_reported_policy_with_a_note():
    advice = advise(
        "example.com", CLEAN, record="v=DMARC1; p=bogus", published={"p": "none", "pct": 100}
    )
    assert advice.step is Step.QUARANTINE
    assert advice.next_record == "v=DMARC1; p=quarantine; pct=100"
    assert any("not valid" in n for n in advice.notes)
    assert any("rua=" in n for n in advice.notes)


def test_published_policy_from_reports_when_no_check_result():
    advice = advise(
        "example.com",
        CLEAN,
        published={"p": "quarantine", "sp": "", "pct": None, "adkim": "r", "aspf": "r"},
    )
    assert advice.step is Step.REJECT
    assert advice.next_record == "v=DMARC1; p=reject; adkim=r; aspf=r"
    assert advice.current_record == "v=DMARC1; p=quarantine; adkim=r; aspf=r"


def test_current_tags_prefers_the_checked_record():
    tags, text = current_tags(" v=DMARC1; p=reject ", {"p": "none"})
    assert tags["p"] == "reject"
    assert text == "v=DMARC1; p=reject"
    assert current_tags(None, None) == ({}, "")
    assert current_tags(None, {"p": "weird"}) == ({}, "")


def test_render_record_puts_v_and_p_first():
    assert render_record({"rua": RUA, "p": "none", "v": "DMARC1"}) == f"v=DMARC1; p=none; rua={RUA}"


def test_no_sources_no_division_by_zero():
    advice = advise("example.com", [], record="v=DMARC1; p=none", min_messages=0)
    assert advice.failing_share == 0.0
    assert advice.step is Step.QUARANTINE


def test_fix_list_is_capped():
    sources = [own(f"192.0.2.{i}", 100, failing=50) for i in range(1, 30)]
    advice = advise("example.com", sources, record="v=DMARC1; p=none")
    assert len(advice.fix_first) == 10
