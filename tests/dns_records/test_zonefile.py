"""Zone-file lines for suggested records."""

from __future__ import annotations

from dns_records.zonefile import quote_txt, zone_line


def test_zone_line_is_fully_qualified_with_quoted_txt():
    assert zone_line("_dmarc.example.org", "TXT", "v=DMARC1; p=reject") == (
        '_dmarc.example.org. 3600 IN TXT "v=DMARC1; p=reject"'
    )


def test_long_txt_values_are_split_into_255_byte_strings():
    quoted = quote_txt("x" * 600)
    assert quoted == f'"{"x" * 255}" "{"x" * 255}" "{"x" * 90}"'


def test_quotes_and_backslashes_are_escaped():
    assert quote_txt('a"b\\c') == '"a\\"b\\\\c"'
