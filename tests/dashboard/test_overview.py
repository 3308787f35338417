"""The overview: the thirteen-control scorecard follows the stored checks, hosts and listings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from blocklists.models import BlacklistEntry, BlocklistTarget, BlocklistZone, Listing, ListingEvent
from dashboard import scorecard_rules as rules
from dashboard.overview import scorecard
from dns_records.models import CheckEvent, CheckState, DkimKey, DkimKeyState, Domain
from hosts import models as host_models
from hosts.models import Deployment, DeploymentState, Host, Policy
from hosts.policy import PolicyValues
from hosts.selectors import policy_values_json
from reports.models import Report

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def verdicts(user, org) -> dict[str, rules.Verdict]:
    return {v.control.key: v for v in scorecard(user, org).verdicts}


# --- the pure rules ---------------------------------------------------------------------------


def test_worst_of_ranks_fail_over_error_and_nothing_measured_is_unmeasured():
    assert rules.worst([]) == rules.UNMEASURED
    assert rules.worst(["ok", "warning"]) == "warning"
    assert rules.worst(["ok", "error", "warning"]) == "error"
    assert rules.worst(["error", "fail", "ok"]) == "fail"
    assert rules.worst(["unmeasured", "ok"]) == "ok"


def test_combine_counts_names_the_worst_first_and_keeps_unmeasured_apart():
    control = rules.CONTROLS[4]
    findings = [
        rules.Finding("domain", f"d{i}.test", status, f"s{i}")
        for i, status in enumerate(["ok", "warning", "fail", "ok", "error", "fail"] + ["ok"] * 5)
    ]
    verdict = rules.combine(control, findings, unmeasured_subjects=2, noun="domain")
    assert verdict.status == "fail"
    assert verdict.counts == {"ok": 7, "warning": 1, "fail": 2, "error": 1, "unmeasured": 2}
    assert [f.name for f in verdict.offenders] == ["d2.test", "d5.test", "d4.test", "d1.test"]
    assert verdict.summary.startswith("7 of 11 domains ok, 2 fail, 1 error, 1 warning")
    assert "2 not yet measured" in verdict.summary
    empty = rules.combine(control, [], unmeasured_subjects=3, unmeasured_reason="No data.")
    assert (empty.status, empty.summary, empty.counts["unmeasured"]) == (
        "unmeasured",
        "No data.",
        3,
    )


def test_action_first_orders_fails_by_control_priority_then_errors_then_warnings():
    by_key = {c.key: c for c in rules.CONTROLS}

    def v(key, status):
        return rules.Verdict(by_key[key], status, "", {}, (), 1)

    ordered = rules.action_first(
        [v("spf", "fail"), v("message_size", "warning"), v("open_relay", "fail"),
         v("dnsbl", "error"), v("dkim", "ok"), v("two_mx", "unmeasured")]
    )  # fmt: skip
    assert [x.control.key for x in ordered] == ["open_relay", "spf", "dnsbl", "message_size"]


def test_mynetworks_and_deployment_verdicts():
    assert rules.mynetworks_verdict(["127.0.0.0/8", "::1/128", "192.168.1.0/24"])[0] == "ok"
    assert rules.mynetworks_verdict(["0.0.0.0/0"])[0] == "fail"
    assert rules.mynetworks_verdict(["8.8.0.0/16"])[0] == "fail"
    assert rules.mynetworks_verdict(["nonsense"])[0] == "error"
    verdict = rules.deployment_verdict
    assert verdict(has_policy=False, last_state=None, policy_changed_since=False)[0] == "warning"
    assert verdict(has_policy=True, last_state=None, policy_changed_since=False)[0] == "warning"
    assert verdict(has_policy=True, last_state="rolled_back", policy_changed_since=False) == (
        "fail",
        "The last deployment rolled back",
    )
    assert verdict(has_policy=True, last_state="succeeded", policy_changed_since=True)[0] == (
        "warning"
    )
    assert verdict(has_policy=True, last_state="unchanged", policy_changed_since=False)[0] == "ok"


# --- verdicts from real checks against the fixture zones --------------------------------------


@pytest.mark.knot
def test_scorecard_follows_real_checks_of_the_fixture_domains(knot, owner, org):
    from dns_records.services import domain_checks_run

    good = Domain.objects.create(organisation=org, name="good.test")
    single = Domain.objects.create(organisation=org, name="single.mx.test")
    no_spf = Domain.objects.create(organisation=org, name="none.spf.test")
    unchecked = Domain.objects.create(organisation=org, name="later.test")
    for domain in (good, single, no_spf):
        domain_checks_run(domain_id=domain.pk)
    states = {
        (s.domain.name, s.name): s.status
        for s in CheckState.objects.filter(domain__organisation=org).select_related("domain")
    }
    # The fixtures are what they claim to be.
    assert states[("good.test", "mx")] == "ok" and states[("good.test", "spf")] == "ok"
    assert states[("single.mx.test", "mx")] in {"fail", "warning"}
    assert states[("none.spf.test", "spf")] == "fail"

    card = verdicts(owner, org)
    two_mx = card["two_mx"]
    names = ("good.test", "single.mx.test", "none.spf.test")
    assert two_mx.status == rules.worst(states[(n, "mx")] for n in names)
    assert two_mx.counts["fail"] + two_mx.counts["warning"] == sum(
        states[(n, "mx")] in {"fail", "warning"} for n in names
    )
    assert "single.mx.test" in [f.name for f in two_mx.offenders]
    assert "good.test" not in [f.name for f in two_mx.offenders]
    assert two_mx.counts["unmeasured"] == 1  # later.test has no result yet
    urls = {f.name: f.url for f in two_mx.offenders}
    assert urls["single.mx.test"] == f"/domains/{single.pk}/"
    spf = card["spf"]
    assert spf.status == "fail"
    assert spf.offenders[0].name == "none.spf.test"
    assert "none.spf.test" in spf.summary
    # good.test's DMARC record is sound but no aggregate report arrived: a warning, not ok.
    dmarc_good = next((f for f in card["dmarc"].offenders if f.name == "good.test"), None)
    assert dmarc_good is not None and dmarc_good.status == "warning"
    Report.objects.create(
        organisation=org, domain=good, org_name="rx", report_id="r1", policy_domain="good.test",
        date_begin=timezone.now() - timedelta(days=2), date_end=timezone.now() - timedelta(days=1),
    )  # fmt: skip
    card = verdicts(owner, org)
    assert "good.test" not in [f.name for f in card["dmarc"].offenders]
    # Nothing host-side exists yet: those controls are not yet measured, never ok.
    for key in ("message_size", "imap_pop3_tls", "open_relay", "connection_limits"):
        assert card[key].status == "unmeasured", key
    assert card["dnsbl"].status == "unmeasured"
    assert unchecked.pk  # counted above, never checked


def _check(domain, name, status, summary="x"):
    now = timezone.now()
    CheckState.objects.create(
        domain=domain, name=name, status=status, summary=summary, checked_at=now, changed_at=now
    )


def test_dkim_fails_when_an_active_key_does_not_sign(owner, org):
    domain = Domain.objects.create(organisation=org, name="signs.test")
    _check(domain, "dkim", "ok", "The record matches")
    assert verdicts(owner, org)["dkim"].status == "ok"
    DkimKey.objects.create(
        domain=domain, selector="s1", algorithm="ed25519", state=DkimKeyState.ACTIVE,
        signing_verified=False, signing_error="body hash mismatch",
    )  # fmt: skip
    dkim = verdicts(owner, org)["dkim"]
    assert dkim.status == "fail"
    assert "s1" in dkim.offenders[0].summary and "body hash mismatch" in dkim.offenders[0].summary


def _host(org, name, *, policy=None, state=None, finished=None):
    host = Host.objects.create(organisation=org, name=name, address="192.0.2.1", policy=policy)
    if state is not None:
        Deployment.objects.create(
            host=host,
            state=state,
            finished_at=finished or timezone.now(),
            started_at=timezone.now(),
        )
    return host


def test_host_controls_follow_policy_deployment_and_probes(owner, org):
    open_values = policy_values_json(PolicyValues(mynetworks=("0.0.0.0/0",)))
    wide = Policy.objects.create(organisation=org, name="wide", values=open_values)
    strict = Policy.objects.create(
        organisation=org, name="strict", values=policy_values_json(PolicyValues())
    )
    good = _host(org, "mx1.acme.test", policy=strict, state=DeploymentState.SUCCEEDED)
    relay = _host(org, "mx2.acme.test", policy=wide, state=DeploymentState.UNCHANGED)
    broken = _host(org, "mx3.acme.test", policy=strict, state=DeploymentState.ROLLED_BACK)
    bare = _host(org, "mx4.acme.test")
    card = verdicts(owner, org)
    assert card["open_relay"].status == "fail"
    relay_names = {f.name: f for f in card["open_relay"].offenders}
    assert "0.0.0.0/0" in relay_names["mx2.acme.test"].summary
    assert relay_names["mx2.acme.test"].url == f"/hosts/{relay.pk}/"
    limits = card["connection_limits"]
    assert limits.status == "fail"
    assert {f.name: f.status for f in limits.offenders} == {
        "mx3.acme.test": "fail",
        "mx4.acme.test": "warning",
    }
    assert limits.counts["ok"] == 2
    assert card["message_size"].counts == {
        "ok": 2, "warning": 1, "fail": 1, "error": 0, "unmeasured": 0
    }  # fmt: skip
    sc = scorecard(owner, org)
    assert sc.host_counts["ok"] == 2 and sc.hosts_total == 4
    assert sc.action_first[0].control.key == "open_relay"

    # A policy edited after the last deployment is a warning: the host runs the old values.
    Policy.objects.filter(pk=strict.pk).update(updated_at=timezone.now() + timedelta(minutes=1))
    limits = verdicts(owner, org)["connection_limits"]
    assert {f.name: f.status for f in limits.offenders}["mx1.acme.test"] == "warning"
    Policy.objects.filter(pk=strict.pk).update(updated_at=timezone.now() - timedelta(days=1))

    # Blacklist entries added after a host's deployment are not on it yet.
    BlacklistEntry.objects.create(organisation=org, network="198.51.100.0/24")
    blacklist = verdicts(owner, org)["local_blacklist"]
    assert {f.name: f.status for f in blacklist.offenders}["mx1.acme.test"] == "warning"
    assert blacklist.summary.startswith("1 entry;")

    probe_model = host_models.ProbeResult
    # A live probe decides over the policy: the relay probe of mx1 was refused (ok) while an
    # IMAP TLS probe failed.
    now = timezone.now()
    probe_model.objects.create(
        host=good, name="imap_tls", address="192.0.2.1", port=993, status="fail",
        summary="Certificate expired", probed_at=now,
    )  # fmt: skip
    probe_model.objects.create(
        host=good, name="imap_tls", address="192.0.2.1", port=993, status="ok",
        summary="old", probed_at=now - timedelta(hours=1),
    )  # fmt: skip
    tls = verdicts(owner, org)["imap_pop3_tls"]
    mx1 = {f.name: f for f in tls.offenders}["mx1.acme.test"]
    assert mx1.status == "fail" and "Certificate expired" in mx1.summary
    assert broken.pk and bare.pk


def test_blocklist_controls_follow_listings_on_enabled_zones(owner, org):
    domain = Domain.objects.create(organisation=org, name="acme.test")
    now = timezone.now()
    BlocklistZone.objects.create(organisation=org, name="zen.example", kind="ip")
    off = BlocklistZone.objects.create(organisation=org, name="off.example", kind="ip")
    BlocklistZone.objects.create(organisation=org, name="dbl.example", kind="domain")
    ip = BlocklistTarget.objects.create(organisation=org, kind="ip", value="192.0.2.25")
    ip.domains.add(domain)
    name = BlocklistTarget.objects.create(organisation=org, kind="domain", value="acme.test")

    def listing(target, zone, status):
        Listing.objects.create(
            target=target, zone=zone, status=status, checked_at=now, changed_at=now
        )

    listing(ip, "zen.example", "clean")
    listing(ip, "off.example", "listed")  # a disabled zone does not count
    off.enabled = False
    off.save()
    listing(name, "dbl.example", "error")
    card = verdicts(owner, org)
    assert card["dnsbl"].status == "ok"
    assert card["uri_blocklists"].status == "error"
    Listing.objects.filter(target=ip, zone="zen.example").update(status="listed")
    sc = scorecard(owner, org)
    card = {v.control.key: v for v in sc.verdicts}
    assert card["dnsbl"].status == "fail"
    assert card["dnsbl"].offenders[0].name == "192.0.2.25"
    # A domain whose MX address is listed counts as fail, as the domain list shows it.
    assert sc.domain_counts["fail"] == 1
    assert "zen.example" in card["dnsbl"].offenders[0].summary


def test_trends_compare_the_last_seven_days_with_the_seven_before(owner, org):
    domain = Domain.objects.create(organisation=org, name="t.test")
    now = timezone.now()
    for days in (1, 2, 3, 9):
        CheckEvent.objects.create(
            domain=domain, name="spf", status="fail", summary="x",
            created_at=now - timedelta(days=days),
        )  # fmt: skip
    target = BlocklistTarget.objects.create(organisation=org, kind="ip", value="192.0.2.9")
    ListingEvent.objects.create(
        organisation=org, target=target, zone="z", status="listed",
        created_at=now - timedelta(days=10),
    )  # fmt: skip
    trends = scorecard(owner, org).trends
    assert (trends["check_failures"].current, trends["check_failures"].previous) == (3, 1)
    assert trends["check_failures"].direction == "up"
    assert trends["listing_changes"].direction == "down"


# --- the page ---------------------------------------------------------------------------------


def test_overview_is_the_landing_page_and_shows_only_the_users_organisations(
    owner, outsider, org, other_org
):
    mine = Domain.objects.create(organisation=org, name="mine.test")
    _check(mine, "spf", "fail", "No SPF record")
    secret = Domain.objects.create(organisation=other_org, name="secret.test")
    _check(secret, "spf", "fail", "Secret failure")
    page = login(owner).get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Overview" in text and "Acme Mail" in text and "Other Org" not in text
    assert "mine.test" in text and "secret.test" not in text
    assert 'data-control="spf" data-status="fail"' in text
    assert f'href="/domains/{mine.pk}/"' in text
    assert text.count('class="control"') == 13
    assert "What needs action first" in text
    # No inline script or style: the strict CSP would refuse them.
    assert "<script>" not in text and "style=" not in text
    assert login(owner).get("/?org=other-org").status_code == 404
    # The domain list stays at its own address.
    assert "mine.test" in login(owner).get("/domains/").content.decode()


def test_overview_htmx_refresh_returns_the_cards_only(owner, org):
    response = login(owner).get("/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="overview")
    text = response.content.decode()
    assert text.lstrip().startswith('<div id="overview">')
    assert "<html" not in text


def test_overview_queries_do_not_grow_with_domains(owner, org, django_assert_max_num_queries):
    for i in range(30):
        d = Domain.objects.create(organisation=org, name=f"d{i}.test")
        _check(d, "mx", "fail" if i % 2 else "ok")
        _host(org, f"h{i}.test", state=DeploymentState.SUCCEEDED)
    client = login(owner)
    with django_assert_max_num_queries(40):
        assert client.get("/").status_code == 200
