"""The delegation verdict from given lookups: no DNS server involved."""

from __future__ import annotations

from dns_records.checks.delegation import evaluate_delegation, parse_soa
from dns_records.lookups import Lookup, LookupStatus
from dns_records.models import CheckStatus

OK = LookupStatus.OK
SOA = Lookup("d.test", "SOA", OK, ("ns1.d.test. host.d.test. 42 7200 3600 1209600 300",))


def ns(*hosts):
    return Lookup("d.test", "NS", OK, tuple(hosts))


def addr(host, *ips, status=OK, reason=""):
    """A and AAAA lookups of a name server: its IPv4 addresses, or the given failure."""
    a_status = LookupStatus.NODATA if status is OK and not ips else status
    return [
        Lookup(host, "A", a_status, ips, reason=reason),
        Lookup(host, "AAAA", LookupStatus.NODATA),
    ]


def test_two_resolving_name_servers_are_ok():
    outcome = evaluate_delegation(
        "d.test", ns("a.d.test", "b.d.test"), SOA,
        {"a.d.test": addr("a.d.test", "192.0.2.1"), "b.d.test": addr("b.d.test", "192.0.2.2")},
    )  # fmt: skip
    assert outcome.status == CheckStatus.OK
    assert "serial 42" in outcome.summary
    assert outcome.details["soa"]["mname"] == "ns1.d.test"


def test_one_name_server_is_a_warning():
    outcome = evaluate_delegation(
        "d.test", ns("a.d.test"), SOA, {"a.d.test": addr("a.d.test", "192.0.2.1")}
    )
    assert outcome.status == CheckStatus.WARNING


def test_name_servers_sharing_an_address_is_a_warning():
    outcome = evaluate_delegation(
        "d.test", ns("a.d.test", "b.d.test"), SOA,
        {"a.d.test": addr("a.d.test", "192.0.2.1"), "b.d.test": addr("b.d.test", "192.0.2.1")},
    )  # fmt: skip
    assert outcome.status == CheckStatus.WARNING
    assert "share one address" in outcome.summary


def test_name_server_without_address_is_a_fail():
    outcome = evaluate_delegation(
        "d.test", ns("a.d.test", "b.d.test"), SOA,
        {"a.d.test": addr("a.d.test", "192.0.2.1"), "b.d.test": addr("b.d.test")},
    )  # fmt: skip
    assert outcome.status == CheckStatus.FAIL
    assert "b.d.test" in outcome.summary


def test_name_server_whose_lookup_failed_is_an_error_not_a_fail():
    outcome = evaluate_delegation(
        "d.test", ns("a.d.test", "b.d.test"), SOA,
        {"a.d.test": addr("a.d.test", "192.0.2.1"),
         "b.d.test": addr("b.d.test", status=LookupStatus.ERROR, reason="timed out")},
    )  # fmt: skip
    assert outcome.status == CheckStatus.ERROR


def test_nxdomain_is_a_fail():
    outcome = evaluate_delegation(
        "d.test",
        Lookup("d.test", "NS", LookupStatus.NXDOMAIN),
        Lookup("d.test", "SOA", LookupStatus.NXDOMAIN),
        {},
    )
    assert outcome.status == CheckStatus.FAIL
    assert "does not exist" in outcome.summary


def test_no_ns_records_is_a_fail():
    outcome = evaluate_delegation(
        "d.test",
        Lookup("d.test", "NS", LookupStatus.NODATA),
        Lookup("d.test", "SOA", LookupStatus.NODATA),
        {},
    )
    assert outcome.status == CheckStatus.FAIL


def test_failed_ns_lookup_is_an_error_with_the_reason():
    outcome = evaluate_delegation(
        "d.test", Lookup("d.test", "NS", LookupStatus.ERROR, reason="SERVFAIL"), SOA, {}
    )
    assert outcome.status == CheckStatus.ERROR
    assert "SERVFAIL" in outcome.summary


def test_failed_soa_lookup_is_an_error():
    outcome = evaluate_delegation(
        "d.test",
        ns("a.d.test"),
        Lookup("d.test", "SOA", LookupStatus.ERROR, reason="timed out"),
        {},
    )
    assert outcome.status == CheckStatus.ERROR


def test_parse_soa_keeps_unparseable_text():
    assert parse_soa("garbage") == {"raw": "garbage"}
    assert parse_soa("a. b. 1 2 3 4 5")["minimum"] == 5
