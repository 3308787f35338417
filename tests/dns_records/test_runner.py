"""Every mail check against Knot serving the fixture zones: each rule and its edge cases."""

from __future__ import annotations

import pytest

from dns_records.checks import CheckContext
from dns_records.resolver import Resolver
from dns_records.runner import run_domain_checks
from mailsec.env import parse_nameserver

pytestmark = pytest.mark.knot

REPORTS = "reports@mailsec.example"


@pytest.fixture(scope="module")
def resolver(knot):
    return Resolver(nameservers=[parse_nameserver(knot.nameserver)], timeout=2)


def check(resolver, domain, name):
    outcomes = run_domain_checks(CheckContext(domain, REPORTS), resolver)
    return next(o for o in outcomes if o.name == name)


CASES = [
    # SPF
    ("good.test", "spf", "ok", "SPF is valid, ends in -all"),
    ("softfail.spf.test", "spf", "warning", "~all"),
    ("redirect.spf.test", "spf", "warning", "~all"),
    ("plusall.spf.test", "spf", "fail", "+all"),
    ("neutral.spf.test", "spf", "fail", "?all"),
    ("noall.spf.test", "spf", "fail", "no 'all' term"),
    ("two.spf.test", "spf", "fail", "publishes 2 SPF records"),
    ("badip.spf.test", "spf", "fail", "bad address"),
    ("badterm.spf.test", "spf", "fail", "unknown mechanism"),
    ("toomany.spf.test", "spf", "fail", "12 DNS lookups"),
    ("chain.spf.test", "spf", "fail", "11 DNS lookups"),
    ("loop.spf.test", "spf", "fail", "loops back"),
    ("void.spf.test", "spf", "fail", "3 void lookups"),
    ("missinginclude.spf.test", "spf", "fail", "nospf.spf.test, which has no SPF record"),
    ("none.spf.test", "spf", "fail", "has no SPF record"),
    ("refusedinclude.spf.test", "spf", "error", "spf.unserved.example"),
    ("mxfail.spf.test", "spf", "warning", "MX mx1.good.test 192.0.2.10 does not pass SPF (fail)"),
    ("unserved.example", "spf", "error", "REFUSED"),
    ("controls.test", "spf", "fail", "control character \\x00 at position 14"),
    # DMARC
    ("good.test", "dmarc", "ok", "DMARC p=reject"),
    ("strict.dmarc.test", "dmarc", "ok", "DMARC p=reject"),
    ("none.dmarc.test", "dmarc", "warning", "p=none"),
    ("pct.dmarc.test", "dmarc", "warning", "pct=50"),
    ("norua.dmarc.test", "dmarc", "warning", "No rua="),
    ("nop.dmarc.test", "dmarc", "fail", "p= tag is missing"),
    ("badp.dmarc.test", "dmarc", "fail", "p=block"),
    ("badpct.dmarc.test", "dmarc", "fail", "pct=abc"),
    ("notmailto.dmarc.test", "dmarc", "fail", "not a mailto"),
    ("two.dmarc.test", "dmarc", "fail", "2 DMARC records"),
    ("missing.dmarc.test", "dmarc", "fail", "No DMARC record"),
    ("ext.dmarc.test", "dmarc", "ok", "DMARC p=reject"),
    ("extmissing.dmarc.test", "dmarc", "warning", "reports.test has not authorised"),
    ("extrefused.dmarc.test", "dmarc", "error", "unserved.example"),
    ("sub.inherit.test", "dmarc", "ok", "DMARC p=quarantine"),
    ("unserved.example", "dmarc", "error", "REFUSED"),
    ("controls.test", "dmarc", "fail", "control character \\x00 at position 18"),
    # MX
    ("good.test", "mx", "ok", "2 MX hosts"),
    ("single.mx.test", "mx", "warning", "Only one MX"),
    ("cname.mx.test", "mx", "fail", "alias.mx.test is a CNAME"),
    ("noaddr.mx.test", "mx", "fail", "ghost.mx.test has no address"),
    ("literal.mx.test", "mx", "fail", "is an IP address"),
    ("null.mx.test", "mx", "ok", "Null MX"),
    ("none.mx.test", "mx", "fail", "No MX records"),
    ("shared.mx.test", "mx", "warning", "s1.mx.test and s2.mx.test share the address 192.0.2.10"),
    ("sharedpair.mx.test", "mx", "warning", "s1.mx.test and s2.mx.test share the address"),
    ("refused.mx.test", "mx", "error", "mail.unserved.example"),
    ("missing.good.test", "mx", "fail", "does not exist"),
    # reverse DNS
    ("good.test", "rdns", "ok", "forward-confirmed"),
    ("ptrmismatch.mx.test", "rdns", "fail", "elsewhere.good.test, which does not resolve back"),
    ("noptr.mx.test", "rdns", "fail", "192.0.2.21 (np.mx.test) has no PTR"),
    ("null.mx.test", "rdns", "ok", "Null MX"),
    # MTA-STS, TLS-RPT, BIMI, DNSSEC
    ("good.test", "mta_sts", "ok", "id=20261128"),
    ("single.mx.test", "mta_sts", "warning", "No MTA-STS record"),
    ("badid.policy.test", "mta_sts", "fail", "id of 1 to 32"),
    ("nohost.policy.test", "mta_sts", "fail", "mta-sts.nohost.policy.test"),
    ("enforce.policy.test", "mta_sts", "ok", "MTA-STS enforced (id=2026112801)"),
    ("testing.policy.test", "mta_sts", "warning", "testing mode"),
    (
        "mismatch.policy.test",
        "mta_sts",
        "fail",
        "MX mx1.good.test, mx2.good.test not in the policy's mx",
    ),
    ("shortage.policy.test", "mta_sts", "warning", "max_age 300s"),
    ("broken.policy.test", "mta_sts", "fail", "mode 'strict'"),
    ("html.policy.test", "mta_sts", "fail", "text/html"),
    ("missing.policy.test", "mta_sts", "fail", "HTTP 404"),
    (
        "badcert.policy.test",
        "mta_sts",
        "fail",
        "certificate not valid for mta-sts.badcert.policy.test",
    ),
    ("good.test", "tls_rpt", "ok", "tls-reports@good.test"),
    ("single.mx.test", "tls_rpt", "warning", "No TLS-RPT record"),
    ("badrua.policy.test", "tls_rpt", "fail", "mailto: or https:"),
    ("good.test", "bimi", "ok", "https://mta-sts.good.test/bimi/logo.svg"),
    ("plainlogo.policy.test", "bimi", "fail", "The SVG version must be 1.2"),
    ("htmllogo.policy.test", "bimi", "fail", "not an SVG image"),
    ("missinglogo.policy.test", "bimi", "fail", "answered HTTP 404"),
    ("nohostlogo.policy.test", "bimi", "fail", "nowhere.policy.test has no address"),
    ("selfsigned.policy.test", "bimi", "fail", "required extension: logotype"),
    ("single.mx.test", "bimi", "ok", "No BIMI record"),
    ("badbimi.policy.test", "bimi", "fail", "https://"),
    ("decline.policy.test", "bimi", "ok", "declines"),
    ("good.test", "dnssec", "warning", "not signed"),
    ("unserved.example", "dnssec", "error", "REFUSED"),
]


@pytest.mark.parametrize(("domain", "name", "status", "phrase"), CASES)
def test_check_verdict(resolver, domain, name, status, phrase):
    outcome = check(resolver, domain, name)
    assert outcome.status == status, (outcome.summary, outcome.details.get("findings"))
    assert phrase in outcome.summary


def test_a_refused_domain_is_error_in_every_check(resolver):
    outcomes = run_domain_checks(CheckContext("unserved.example", REPORTS), resolver)
    assert {o.status for o in outcomes} == {"error"}


def test_spf_details_count_lookups_and_list_includes(resolver):
    outcome = check(resolver, "toomany.spf.test", "spf")
    assert outcome.details["lookups"] == 12
    assert len(outcome.details["includes"]) == 7


def test_spf_suggestion_keeps_the_senders_and_ends_in_minus_all(resolver):
    outcome = check(resolver, "softfail.spf.test", "spf")
    assert outcome.details["suggested_record"] == {
        "name": "softfail.spf.test", "type": "TXT", "value": "v=spf1 ip4:192.0.2.0/24 -all",
    }  # fmt: skip


def test_missing_spf_suggestion_is_built_from_mx(resolver):
    outcome = check(resolver, "none.spf.test", "spf")
    assert outcome.details["suggested_record"]["value"] == "v=spf1 mx -all"


def test_spf_evaluates_each_mx_address(resolver):
    outcome = check(resolver, "good.test", "spf")
    results = {e["ip"]: e["result"] for e in outcome.details["evaluations"]}
    assert results == {"192.0.2.10": "pass", "192.0.2.11": "pass"}


def test_dmarc_suggestion_enforces_and_reports_to_the_ingest_address(resolver):
    outcome = check(resolver, "none.dmarc.test", "dmarc")
    assert outcome.details["suggested_record"] == {
        "name": "_dmarc.none.dmarc.test",
        "type": "TXT",
        "value": f"v=DMARC1; p=quarantine; rua=mailto:d@dmarc.test,mailto:{REPORTS}",
    }


def test_missing_dmarc_suggestion(resolver):
    outcome = check(resolver, "missing.dmarc.test", "dmarc")
    assert outcome.details["suggested_record"]["value"] == (
        f"v=DMARC1; p=quarantine; rua=mailto:{REPORTS}"
    )


def test_dmarc_falls_back_to_the_organisational_domain(resolver):
    outcome = check(resolver, "sub.inherit.test", "dmarc")
    assert outcome.details["inherited_from"] == "_dmarc.inherit.test"


def test_mx_details_list_hosts_and_addresses(resolver):
    outcome = check(resolver, "good.test", "mx")
    assert [(h["host"], h["addresses"]) for h in outcome.details["hosts"]] == [
        ("mx1.good.test", ["192.0.2.10"]),
        ("mx2.good.test", ["192.0.2.11"]),
    ]


def test_missing_tls_rpt_suggests_a_record_and_mta_sts_without_a_policy_only_names_it(resolver):
    mta_sts = check(resolver, "single.mx.test", "mta_sts")
    # Published before a policy is served, the record would make the check fail.
    assert "suggested_record" not in mta_sts.details
    assert '_mta-sts.single.mx.test "v=STSv1; id=' in mta_sts.details["hint"]
    tls_rpt = check(resolver, "single.mx.test", "tls_rpt")
    assert tls_rpt.details["suggested_record"]["value"] == f"v=TLSRPTv1; rua=mailto:{REPORTS}"


def test_spf_suggestion_authorises_the_mx_hosts_that_fail(resolver):
    outcome = check(resolver, "mxfail.spf.test", "spf")
    assert outcome.details["suggested_record"]["value"] == "v=spf1 mx ip4:198.51.100.1 -all"


def test_redirected_spf_gets_no_suggestion_to_rewrite_its_target(resolver):
    outcome = check(resolver, "redirect.spf.test", "spf")
    assert "suggested_record" not in outcome.details


def test_delegation_of_a_subdomain_is_its_parent_zones(resolver):
    outcome = check(resolver, "softfail.spf.test", "delegation")
    assert outcome.status == "ok"
    assert outcome.details["zone"] == "spf.test"


def test_signed_zone_is_reported_signed(resolver):
    outcome = check(resolver, "signed.test", "dnssec")
    assert outcome.status == "ok"
    assert outcome.details["signed"] is True
    assert outcome.details["keys"] >= 1
    # Knot answers authoritatively and validates nothing: mailsec says so instead of claiming it.
    assert outcome.details["validated"] is False
    assert "does not validate" in outcome.summary


def test_exponential_include_fan_out_is_cut_short(resolver):
    from dns_records.checks.spf import MAX_SPF_NODES, build_spf_tree

    tree = build_spf_tree("fan.spf.test", resolver)

    def fetched(node):
        own = 0 if node.truncated else 1
        return own + sum(fetched(child) for child in node.children)

    assert fetched(tree) == MAX_SPF_NODES
    outcome = check(resolver, "fan.spf.test", "spf")
    assert outcome.status == "fail"
    assert "stopped counting" in outcome.summary


def test_redirect_is_ignored_when_the_record_has_all(resolver):
    outcome = check(resolver, "ignoredredirect.spf.test", "spf")
    assert outcome.details["lookups"] == 8
    assert outcome.status == "ok", outcome.summary


def test_an_inheriting_subdomain_is_judged_by_sp(resolver):
    outcome = check(resolver, "mail.weaksub.test", "dmarc")
    assert outcome.status == "warning"
    assert "sp=none only monitors" in outcome.summary
    assert outcome.details["policy"] == "none"


def test_inherited_records_report_authorisation_is_asked_of_the_policy_domain(resolver):
    outcome = check(resolver, "mail.weaksub.test", "dmarc")
    assert outcome.details["external_reports"] == [
        {"domain": "reports.test", "record_name": "weaksub.test._report._dmarc.reports.test",
         "state": "authorised"},
    ]  # fmt: skip


def test_the_organisational_domain_itself_is_judged_by_p(resolver):
    outcome = check(resolver, "weaksub.test", "dmarc")
    assert outcome.status == "ok"
    assert outcome.summary.startswith("DMARC p=reject")


def test_inheriting_subdomain_is_offered_its_own_enforcing_record(resolver):
    outcome = check(resolver, "mail.weaksub.test", "dmarc")
    suggestion = outcome.details["suggested_record"]
    assert (suggestion["name"], suggestion["type"], suggestion["value"]) == (
        "_dmarc.mail.weaksub.test", "TXT", f"v=DMARC1; p=reject; rua=mailto:{REPORTS}",
    )  # fmt: skip
    # reports.test authorised the parent's reports, not the subdomain's.
    assert "mail.weaksub.test._report._dmarc.reports.test" in suggestion["note"]


def test_mta_sts_policy_is_not_fetched_from_networks_outside_the_allowed_ones(resolver, settings):
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    outcome = check(resolver, "enforce.policy.test", "mta_sts")
    assert outcome.status == "error"
    assert "outside the networks mailsec may reach" in outcome.summary


def test_mta_sts_details_carry_the_policy(resolver):
    outcome = check(resolver, "good.test", "mta_sts")
    assert outcome.details["mode"] == "enforce"
    assert outcome.details["mx_patterns"] == ["mx1.good.test", "*.good.test"]
    assert outcome.details["max_age"] == 604800


def test_a_policy_record_needs_its_exact_version_tag():
    from dns_records.checks.bimi import evaluate_bimi
    from dns_records.checks.tls_rpt import evaluate_tls_rpt
    from dns_records.lookups import Lookup, LookupStatus

    txt = Lookup("_smtp._tls.d.test", "TXT", LookupStatus.OK, ("v=TLSRPTv10; rua=mailto:a@d.test",))
    assert evaluate_tls_rpt("d.test", txt, suggestion="x").summary.startswith("No TLS-RPT record")
    bimi = Lookup(
        "default._bimi.d.test", "TXT", LookupStatus.OK, ("v=BIMI10; l=https://d.test/l.svg",)
    )
    assert evaluate_bimi("d.test", bimi).summary.startswith("No BIMI record")


def test_missing_mta_sts_says_to_serve_the_policy_first(resolver):
    outcome = check(resolver, "single.mx.test", "mta_sts")
    assert "https://mta-sts.single.mx.test/.well-known/mta-sts.txt" in outcome.details["hint"]


def test_a_mark_certificate_from_no_verifying_authority_is_named_as_such(resolver):
    outcome = check(resolver, "selfsigned.policy.test", "bimi")
    messages = [f["message"] for f in outcome.details["findings"]]
    assert any("Mark Verifying Authority" in m for m in messages), messages
    logo, certificate = outcome.details["assets"]
    assert logo["problems"] == [] and logo["sha256"]
    assert certificate["url"].endswith("/bimi/vmc.pem")
