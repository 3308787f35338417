"""SPF record grammar and the verdict over looked-up trees, with no DNS server."""

from __future__ import annotations

import pytest

from dns_records.checks.spf import SpfNode, evaluate_spf_tree, suggest_spf
from dns_records.lookups import Lookup, LookupStatus
from dns_records.spf import SpfSyntaxError, parse_spf
from dns_records.status import CheckStatus


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 -all",
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx ptr ~all",
        "v=spf1 a:mail.example.com/24 mx//64 include:_spf.example.net -all",
        "v=spf1 exists:%{i}.%{l1r+-}._spf.%{d} -all",
        "v=spf1 redirect=_spf.example.com",
        "V=SPF1 MX -ALL",
        "v=spf1 mx -all exp=explain.%{d} future-modifier=x",
    ],
)
def test_valid_records_parse(record):
    assert parse_spf(record).text == record


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=spf1 ip4:192.0.2.300 -all", "bad address"),
        ("v=spf1 ip4:2001:db8::1 -all", "wrong address family"),
        ("v=spf1 ip4:192.0.2.0/33 -all", "bad address"),
        ("v=spf1 a/33 -all", "prefix too long"),
        ("v=spf1 include -all", "needs a domain"),
        ("v=spf1 include:localhost -all", "single-label"),
        ("v=spf1 exists:%{z}.example.com -all", "bad macro"),
        ("v=spf1 redirect=a.example redirect=b.example", "more than one redirect"),
        ("v=spf1 all:foo", "takes no argument"),
        ("v=spf1 mx:example.com:25 -all", "does not end in a domain"),
        ("spf1 -all", "does not start"),
    ],
)
def test_invalid_records_are_refused(record, reason):
    with pytest.raises(SpfSyntaxError, match=reason):
        parse_spf(record)


def node(domain, *records, status=LookupStatus.OK, via="", children=(), reason=""):
    txt = Lookup(domain, "TXT", status, tuple(records), reason=reason)
    return SpfNode(domain, txt, via=via, children=list(children))


def test_include_and_redirect_count_as_lookups():
    root = node(
        "d.test",
        "v=spf1 include:a.test redirect=b.test",
        children=[node("a.test", "v=spf1 a -all", via="include:a.test"),
                  node("b.test", "v=spf1 -all", via="redirect=b.test")],
    )  # fmt: skip
    outcome = evaluate_spf_tree(root)
    assert outcome.details["lookups"] == 3
    assert outcome.status == CheckStatus.OK
    assert outcome.details["all"] == "-"


def test_failed_include_lookup_is_an_error_not_a_fail():
    root = node(
        "d.test",
        "v=spf1 include:a.test -all",
        children=[
            node("a.test", status=LookupStatus.ERROR, via="include:a.test", reason="timed out")
        ],
    )
    assert evaluate_spf_tree(root).status == CheckStatus.ERROR


def test_a_definite_fault_outranks_an_unknown():
    root = node(
        "d.test",
        "v=spf1 include:a.test +all",
        children=[node("a.test", status=LookupStatus.ERROR, via="include:a.test", reason="x")],
    )
    # +all authorises everyone whatever the include holds: that is a fail, not an unknown.
    outcome = evaluate_spf_tree(root)
    assert outcome.status == CheckStatus.FAIL
    assert "+all" in outcome.summary


def test_unexpanded_macro_include_is_counted_but_not_followed():
    root = node("d.test", "v=spf1 include:%{d}.x.test -all")
    root.children = [
        SpfNode("%{d}.x.test", Lookup("%{d}.x.test", "TXT", LookupStatus.OK), via="include:%{d}.x.test",
                unexpanded=True)
    ]  # fmt: skip
    outcome = evaluate_spf_tree(root)
    assert (outcome.status, outcome.details["lookups"]) == (CheckStatus.OK, 1)


def test_spf_ignores_other_txt_records():
    outcome = evaluate_spf_tree(node("d.test", "google-site-verification=abc", "v=spf1 -all"))
    assert outcome.status == CheckStatus.OK


def test_suggestion_from_broken_record_starts_fresh():
    assert suggest_spf("d.test", "v=spf1 ip4:300.1.1.1 -all", []) == "v=spf1 mx -all"
    assert suggest_spf("d.test", None, ["192.0.2.1", "2001:db8::1"]) == (
        "v=spf1 mx ip4:192.0.2.1 ip6:2001:db8::1 -all"
    )


def test_prefix_only_a_and_mx_terms_print_without_a_colon():
    record = parse_spf("v=spf1 a/24 mx//64 ~all")
    assert [str(t) for t in record.terms] == ["a/24", "mx//64", "~all"]
    suggestion = suggest_spf("d.test", record.text, [])
    assert suggestion == "v=spf1 a/24 mx//64 -all"
    assert parse_spf(suggestion)
