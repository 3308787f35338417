"""SPF record grammar and the verdict over looked-up trees, with no DNS server."""

from __future__ import annotations

import pytest

from dns_records.checks.base import CheckContext
from dns_records.checks.spf import (
    FLATTEN_NOTE,
    SpfLookups,
    SpfNode,
    SpfRewrite,
    evaluate_spf_tree,
    flatten_spf,
    include_costs,
    merge_spf,
    rewrite_spf,
    suggest_spf,
    verdict,
)
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


def provider(domain, record, via, **addresses):
    """An included record whose a/mx terms resolve to `addresses` (term text -> IPv4 list)."""
    included = node(domain, record, via=via)
    for term, found in addresses.items():
        included.term_addresses[term] = [
            Lookup(domain, "A", LookupStatus.OK, tuple(found)),
            Lookup(domain, "AAAA", LookupStatus.NODATA),
        ]
    return included


def over_the_limit():
    """Six providers, each an include plus the 'a' inside it: twelve lookups."""
    includes = [f"include:p{n}.test" for n in range(1, 7)]
    children = [
        provider(f"p{n}.test", "v=spf1 a -all", f"include:p{n}.test", a=[f"192.0.2.{n}"])
        for n in range(1, 7)
    ]
    return node("d.test", f"v=spf1 mx {' '.join(includes)} ~all", children=children)


def test_include_costs_count_each_include_with_everything_below_it():
    root = node(
        "d.test",
        "v=spf1 include:a.test include:b.test -all",
        children=[
            node("a.test", "v=spf1 a mx include:c.test -all", via="include:a.test",
                 children=[node("c.test", "v=spf1 ip4:192.0.2.9 -all", via="include:c.test")]),
            node("b.test", "v=spf1 ip4:192.0.2.0/24 -all", via="include:b.test"),
        ],
    )  # fmt: skip
    assert include_costs(root) == [
        {"term": "include:a.test", "lookups": 4},
        {"term": "include:b.test", "lookups": 1},
    ]


def test_flatten_spf_replaces_each_include_with_the_addresses_it_authorises():
    flat = flatten_spf(over_the_limit(), [], authorise_mx=False)
    addresses = " ".join(f"ip4:192.0.2.{n}" for n in range(1, 7))
    assert flat == f"v=spf1 mx {addresses} -all"


def test_flatten_spf_keeps_qualifiers_prefixes_and_the_managed_hosts():
    root = node(
        "d.test",
        "v=spf1 ~include:a.test -all exp=why.d.test",
        children=[provider("a.test", "v=spf1 a/24 ip6:2001:db8::/32 -all", "~include:a.test",
                           **{"a/24": ["192.0.2.77"]})],
    )  # fmt: skip
    assert flatten_spf(root, ["198.51.100.7"], authorise_mx=True) == (
        "v=spf1 mx ~ip4:192.0.2.0/24 ~ip6:2001:db8::/32 ip4:198.51.100.7 -all exp=why.d.test"
    )


def test_flatten_spf_leaves_what_only_a_message_can_resolve_and_gives_up_over_the_limit():
    root = over_the_limit()
    for child in root.children:
        child.txt = Lookup(
            child.domain, "TXT", LookupStatus.OK, ("v=spf1 exists:%{i}.x.test -all",)
        )
    # exists: with a macro is known only when a message arrives: every include stays, 12 lookups.
    assert flatten_spf(root, [], authorise_mx=False) is None
    root.children[0].txt = Lookup("p1.test", "TXT", LookupStatus.OK, ("v=spf1 ip4:192.0.2.1 -all",))
    root.children[1].txt = Lookup("p2.test", "TXT", LookupStatus.OK, ("v=spf1 ip4:192.0.2.2 -all",))
    assert flatten_spf(root, [], authorise_mx=False) == (
        "v=spf1 mx ip4:192.0.2.1 ip4:192.0.2.2 include:p3.test include:p4.test include:p5.test "
        "include:p6.test -all"
    )


def spf_verdict(root, **context):
    return verdict(CheckContext("d.test", "r@d.test", **context), SpfLookups(root))


def test_over_the_limit_the_suggestion_is_flattened_and_says_to_refresh_it():
    outcome = spf_verdict(over_the_limit())
    assert outcome.status == CheckStatus.FAIL
    assert [c["lookups"] for c in outcome.details["include_costs"]] == [2] * 6
    suggestion = outcome.details["suggested_record"]
    assert suggestion["value"].startswith("v=spf1 mx ip4:192.0.2.1 ")
    assert suggestion["note"] == FLATTEN_NOTE
    assert "refresh it whenever a provider changes" in FLATTEN_NOTE


def test_a_loop_is_flattened_into_what_it_adds():
    loop = SpfNode(
        "d.test", Lookup("d.test", "TXT", LookupStatus.OK), via="include:d.test", loop=True
    )
    root = node(
        "d.test",
        "v=spf1 include:_spf.d.test -all",
        children=[node("_spf.d.test", "v=spf1 ip4:192.0.2.5 include:d.test -all",
                       via="include:_spf.d.test", children=[loop])],
    )  # fmt: skip
    suggestion = spf_verdict(root).details["suggested_record"]
    assert suggestion["value"] == "v=spf1 ip4:192.0.2.5 -all"
    assert "loop" in suggestion["note"]


def test_void_terms_and_includes_of_records_without_spf_are_left_out():
    root = node(
        "d.test",
        "v=spf1 a:nx1.d.test a:nx2.d.test a:nx3.d.test include:gone.test ip4:192.0.2.1 -all",
        children=[node("gone.test", status=LookupStatus.NXDOMAIN, via="include:gone.test")],
    )
    for host in ("nx1", "nx2", "nx3"):
        term, name = f"a:{host}.d.test", f"{host}.d.test"
        root.term_lookups[term] = [Lookup(name, "A", LookupStatus.NXDOMAIN)]
        root.term_addresses[term] = [
            Lookup(name, "A", LookupStatus.NXDOMAIN), Lookup(name, "AAAA", LookupStatus.NXDOMAIN),
        ]  # fmt: skip
    outcome = spf_verdict(root)
    assert outcome.details["void_lookups"] == 4
    suggestion = outcome.details["suggested_record"]
    assert suggestion["value"] == "v=spf1 ip4:192.0.2.1 -all"
    assert "Drops include:gone.test: gone.test publishes no SPF record" in suggestion["note"]
    assert "Drops a:nx1.d.test: nx1.d.test has no address record" in suggestion["note"]


def test_an_a_term_with_only_an_ipv6_address_is_not_void():
    root = node("d.test", "v=spf1 a:v6.d.test ~all")
    root.term_lookups["a:v6.d.test"] = [Lookup("v6.d.test", "A", LookupStatus.NODATA)]
    root.term_addresses["a:v6.d.test"] = [
        Lookup("v6.d.test", "A", LookupStatus.NODATA),
        Lookup("v6.d.test", "AAAA", LookupStatus.OK, ("2001:db8::25",)),
    ]
    assert rewrite_spf(root, [], authorise_mx=False, flatten=False) == SpfRewrite(
        "v=spf1 a:v6.d.test -all"
    )


def test_several_records_are_merged_into_one():
    assert merge_spf(
        ["v=spf1 mx ip4:192.0.2.1 -all", "v=spf1 ip4:192.0.2.1 include:p.test ~all"]
    ) == ("v=spf1 mx ip4:192.0.2.1 include:p.test -all")
    assert merge_spf(["v=spf1 -all", "v=spf1 redirect=p.test"]) is None
    outcome = spf_verdict(node("d.test", "v=spf1 ip4:192.0.2.1 -all", "v=spf1 ip4:192.0.2.2 -all"))
    assert outcome.details["suggested_record"]["value"] == "v=spf1 ip4:192.0.2.1 ip4:192.0.2.2 -all"
