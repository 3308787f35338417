"""The local blacklist as a Postfix cidr: map: deterministic, sanitised, expired entries out."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from blocklists.cidr_map import CidrEntry, parse_network, render_cidr_map, sanitise_reason
from tests.servers import missing

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_one_reject_line_per_network_most_specific_first():
    text = render_cidr_map(
        [
            CidrEntry("192.0.2.0/24", "spam network"),
            CidrEntry("192.0.2.7", "one host"),
            CidrEntry("2001:db8::/32", "v6 range"),
            CidrEntry("198.51.100.0/24", "other"),
        ],
        now=NOW,
    )
    assert text.splitlines()[1:] == [
        "192.0.2.7/32\tREJECT one host",
        "192.0.2.0/24\tREJECT spam network",
        "198.51.100.0/24\tREJECT other",
        "[2001:db8::]/32\tREJECT v6 range",
    ]


def test_order_of_input_does_not_change_the_map():
    entries = [CidrEntry(f"192.0.2.{i}", f"r{i}") for i in range(10)]
    assert render_cidr_map(entries, now=NOW) == render_cidr_map(entries[::-1], now=NOW)


def test_expired_entries_leave_the_map():
    text = render_cidr_map(
        [
            CidrEntry("192.0.2.1", "expired", NOW - timedelta(seconds=1)),
            CidrEntry("192.0.2.2", "expires now", NOW),
            CidrEntry("192.0.2.3", "later", NOW + timedelta(days=1)),
            CidrEntry("192.0.2.4", "never"),
        ],
        now=NOW,
    )
    assert "192.0.2.1/" not in text and "192.0.2.2/" not in text
    assert "192.0.2.3/32" in text and "192.0.2.4/32" in text


def test_reason_cannot_inject_a_second_entry_or_controls():
    assert sanitise_reason("spam\n0.0.0.0/0 OK") == "spam 0.0.0.0/0 OK"
    assert sanitise_reason("bad\x00\x1b[31m") == "bad??[31m"
    assert sanitise_reason("Spät") == "Sp?t"
    assert sanitise_reason("   ") == "Blocked by local policy"
    text = render_cidr_map([CidrEntry("192.0.2.9", "a\r\n192.0.2.0/24 OK")], now=NOW)
    assert len(text.splitlines()) == 2


def test_network_with_host_bits_is_refused():
    with pytest.raises(ValueError, match="not an IP address or network"):
        parse_network("192.0.2.7/24")


def test_postfix_reads_the_rendered_map(tmp_path):
    postmap = shutil.which("postmap") or "/usr/sbin/postmap"
    if not shutil.which(postmap):
        missing("postmap (Postfix) is not installed")
    (tmp_path / "main.cf").write_text("")
    path = tmp_path / "blacklist.cidr"
    path.write_text(
        render_cidr_map(
            [
                CidrEntry("192.0.2.0/24", "spam net"),
                CidrEntry("2001:db8::/32", "v6"),
                CidrEntry("203.0.113.5", "gone", NOW - timedelta(days=1)),
            ],
            now=NOW,
        )
    )

    def lookup(address):
        result = subprocess.run(
            [postmap, "-c", str(tmp_path), "-q", address, f"cidr:{path}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.stdout.strip()

    assert lookup("192.0.2.77") == "REJECT spam net"
    assert lookup("2001:db8::25") == "REJECT v6"
    assert lookup("203.0.113.5") == ""
    assert lookup("198.51.100.1") == ""
