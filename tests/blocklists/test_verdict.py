"""Three states, never two: listed (code, meaning, reason), clean, error."""

from __future__ import annotations

from blocklists.verdict import ListingStatus, probe_verdict, read_answer
from blocklists.zones import ZoneKind, zone_info
from dns_records.lookups import Lookup, LookupStatus

ZEN = zone_info("zen.spamhaus.org", ZoneKind.IP)
URIBL = zone_info("multi.uribl.com", ZoneKind.DOMAIN)
SURBL = zone_info("multi.surbl.org", ZoneKind.DOMAIN)
UNKNOWN = zone_info("bl.example", ZoneKind.IP)


def a(*records, status=LookupStatus.OK, reason=""):
    return Lookup("q.example", "A", status, records=tuple(records), reason=reason)


def test_nxdomain_is_clean():
    assert read_answer(ZEN, a(status=LookupStatus.NXDOMAIN)).status is ListingStatus.CLEAN


def test_listing_carries_code_meaning_and_txt_reason():
    txt = Lookup("q.example", "TXT", LookupStatus.OK, records=("https://example/why",))
    verdict = read_answer(ZEN, a("127.0.0.4"), txt)
    assert verdict.status is ListingStatus.LISTED
    assert verdict.code == "127.0.0.4"
    assert "XBL" in verdict.meaning
    assert verdict.reason == "https://example/why"


def test_several_codes_are_all_named():
    verdict = read_answer(ZEN, a("127.0.0.10", "127.0.0.2"))
    assert verdict.code == "127.0.0.2, 127.0.0.10"
    assert "SBL" in verdict.meaning and "PBL" in verdict.meaning


def test_timeout_servfail_refused_are_errors():
    for reason in ("timed out after 1s", "answered SERVFAIL", "answered REFUSED"):
        verdict = read_answer(ZEN, a(status=LookupStatus.ERROR, reason=reason))
        assert verdict.status is ListingStatus.ERROR
        assert verdict.reason == reason


def test_spamhaus_error_codes_are_errors_not_listings():
    for code in ("127.255.255.252", "127.255.255.254", "127.255.255.255"):
        assert read_answer(ZEN, a(code)).status is ListingStatus.ERROR
    assert "public" in read_answer(ZEN, a("127.255.255.254")).reason


def test_uribl_query_refused_is_an_error():
    verdict = read_answer(URIBL, a("127.0.0.1"))
    assert verdict.status is ListingStatus.ERROR
    assert "refused" in verdict.reason


def test_uribl_and_surbl_bits_are_decoded():
    assert read_answer(URIBL, a("127.0.0.6")).meaning == "black, grey"
    assert read_answer(SURBL, a("127.0.0.24")).meaning == "PH: phishing, MW: malware"


def test_any_answer_outside_loopback_is_an_error():
    for answers in (("10.0.0.2",), ("127.0.0.2", "198.51.100.7")):
        verdict = read_answer(ZEN, a(*answers))
        assert verdict.status is ListingStatus.ERROR
        assert "outside 127.0.0.0/8" in verdict.reason


def test_answers_above_15_are_listings_not_hidden():
    # Modoboa read answers above .15 as clean; they are listings (or errors), never clean.
    assert read_answer(UNKNOWN, a("127.0.0.200")).status is ListingStatus.LISTED


def test_unknown_list_uses_rfc5782_conventions():
    assert read_answer(UNKNOWN, a("127.0.0.2")).status is ListingStatus.LISTED
    assert read_answer(UNKNOWN, a("127.0.0.1")).status is ListingStatus.ERROR
    assert read_answer(UNKNOWN, a("127.255.255.1")).status is ListingStatus.ERROR


def test_a_list_listing_its_negative_test_point_is_untrusted():
    assert "lists its RFC 5782 negative test point" in probe_verdict(UNKNOWN, a("127.0.0.2"))
    assert probe_verdict(UNKNOWN, a(status=LookupStatus.NXDOMAIN)) == ""
    assert probe_verdict(UNKNOWN, a(status=LookupStatus.ERROR, reason="timed out")) == ""


def test_txt_reason_has_no_control_characters():
    txt = Lookup("q", "TXT", LookupStatus.OK, records=("bad\x00\nreason",))
    assert read_answer(ZEN, a("127.0.0.2"), txt).reason == "bad\\x00\\x0areason"
