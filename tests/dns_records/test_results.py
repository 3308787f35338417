"""What a check result may hold once stored: control characters escaped, details bounded."""

from __future__ import annotations

import json

from dns_records.results import (
    MAX_DETAIL_ITEMS,
    MAX_DETAIL_STRING,
    MAX_DETAILS_CHARS,
    CheckOutcome,
    storable,
    visible_text,
)
from dns_records.status import CheckStatus


def test_nul_and_other_controls_become_visible_escapes() -> None:
    assert visible_text("a\x00b\x07c\x1bd\x7fe\x85f") == "a\\x00b\\x07c\\x1bd\\x7fe\\x85f"


def test_tab_newline_and_carriage_return_are_kept() -> None:
    assert (
        visible_text("version: STSv1\r\nmode: enforce\tx") == "version: STSv1\r\nmode: enforce\tx"
    )


def test_a_lone_surrogate_is_escaped_so_the_text_encodes_as_utf8() -> None:
    text = visible_text("x\ud800y")
    assert text == "x\\ud800y"
    text.encode("utf-8")


def test_summary_details_and_their_keys_are_escaped_at_every_depth() -> None:
    outcome = CheckOutcome(
        "spf", CheckStatus.FAIL, "bad\x00",
        {"record": "v=spf1 -all\x00", "k\x00": [{"deep\x01": ("t\x02",)}]},
    )  # fmt: skip
    stored = storable(outcome)
    assert stored.summary == "bad\\x00"
    assert stored.details == {
        "record": "v=spf1 -all\\x00",
        "k\\x00": [{"deep\\x01": ["t\\x02"]}],
    }
    assert "\\u0000" not in json.dumps(stored.details)
    assert stored.status is CheckStatus.FAIL


def test_long_lists_and_strings_are_cut_with_a_marker() -> None:
    outcome = CheckOutcome(
        "mx", CheckStatus.OK, "s", {"hosts": list(range(1000)), "text": "x" * 10_000}
    )
    details = storable(outcome).details
    assert details["hosts"][:MAX_DETAIL_ITEMS] == list(range(MAX_DETAIL_ITEMS))
    assert details["hosts"][-1] == f"… {1000 - MAX_DETAIL_ITEMS} more not kept"
    assert details["text"].startswith("x" * MAX_DETAIL_STRING)
    assert details["text"].endswith("more characters not kept)")


def test_details_too_large_even_when_cut_keep_only_the_findings() -> None:
    findings = [{"status": "warning", "message": "w"}]
    wide = {f"key{n}": "y" * 4000 for n in range(100)}
    details = storable(CheckOutcome("x", CheckStatus.WARNING, "s", {**wide, "findings": findings}))
    assert details.details["findings"] == findings
    assert "details_not_kept" in details.details
    assert len(json.dumps(details.details)) < MAX_DETAILS_CHARS
