"""Every suggested record mailsec shows fixes the fault it is shown for: proved against Knot.

For each fixture domain the checks run against the session's Knot. The records they suggest
are then published into a copy of the fixture zones served by this module's own Knot, written
as the zone-file lines the domain page offers to paste (`zone_line`), so Knot also proves that
text valid. Publishing replaces the record of the same kind at that name (the old SPF record,
the old DMARC record, ...) and keeps the other TXT records there. The checks run again: every
check that made a suggestion must be OK, and no check may be worse than it was.

Domains are published together in batches, and never with a domain whose records would change
an answer its checks asked for (a record at an include target fixes every domain including it):
that would let one domain's record hide another's suggestion that fixes nothing.

Exceptions are listed in ALLOWED_AFTER, each for one domain and check. There is none for
MTA-STS: mailsec offers its record only once a usable policy is served, since published any
earlier it turns a missing record into a broken one. (A policy served in testing mode would
leave a warning that only the policy can lift; no fixture serves a policy without a record.)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdataset
import dns.rdatatype
import dns.zone
import pytest

from dns_records.checks import CheckContext
from dns_records.checks.dmarc import DmarcLookups
from dns_records.checks.dmarc import verdict as dmarc_verdict
from dns_records.checks.mta_sts import evaluate_mta_sts
from dns_records.lookups import Fetch, Lookup, LookupStatus
from dns_records.resolver import Resolver
from dns_records.results import CheckOutcome
from dns_records.runner import run_domain_checks
from dns_records.status import CheckStatus
from dns_records.zonefile import zone_line
from mailsec.env import parse_nameserver
from tests.dns_records.test_runner import CASES
from tests.servers import ZONES, KnotServer

SCRATCH_ADDRESS = "127.0.0.17"

# (domain, check) -> (the status it may keep, a phrase its summary must hold, why).
ALLOWED_AFTER = {
    ("refused.mx.test", "spf"): (
        CheckStatus.ERROR, "mail.unserved.example",
        "the suggested 'mx' is right, but one MX host is in a zone Knot refuses on purpose, so "
        "whether the MX hosts pass cannot be told",
    ),
    ("literal.mx.test", "spf"): (
        CheckStatus.ERROR, "DNS A 192.0.2.10",
        "the suggested 'mx' is right, but the MX names an IP address: its A lookup goes to a "
        "zone Knot refuses, where the real DNS would answer NXDOMAIN (the MX check fails it)",
    ),
}  # fmt: skip

# Checks whose fault mailsec cannot write a record for: (domain, check) -> why.
NO_SUGGESTION = {
    ("redirect.spf.test", "spf"): "its ~all comes from the redirect target: that domain's to fix",
}
# An SPF tree cut short (MAX_SPF_NODES) is unknown past the cut: nothing equivalent can be written.
CUT_SHORT = "stopped counting"


def _zone_texts() -> dict[str, str]:
    return {path.name.removesuffix(".zone"): path.read_text() for path in ZONES.glob("*.zone")}


def _parse_zone(zone: str, text: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=zone, relativize=False, check_origin=False)


def _zone_of(name: str, zones: list[str]) -> str | None:
    """The served zone holding `name` (the longest apex it ends in), None when none does."""
    holding = [z for z in zones if name == z or name.endswith("." + z)]
    return max(holding, key=len, default=None)


def fixture_domains() -> list[str]:
    """The domains of the runner's cases, and every other name the fixture zones hold.

    Names under an underscore label are records of a domain, not domains; the reverse zone
    holds PTR records, not mail domains.
    """
    names = {case[0] for case in CASES}
    for zone, text in _zone_texts().items():
        if zone.endswith(".in-addr.arpa"):
            continue
        for owner in _parse_zone(zone, text).nodes:
            name = owner.to_text(omit_final_dot=True)
            if not any(label.startswith("_") for label in name.split(".")):
                names.add(name)
    return sorted(names)


def _params() -> list[Any]:
    """Every fixture domain a zone holds; a domain in no zone (unserved.example, which Knot
    refuses on purpose) has nowhere its records could be published, so it is not a case."""
    zones = list(_zone_texts())
    return [
        pytest.param(domain, id=domain)
        for domain in fixture_domains()
        if _zone_of(domain, zones) is not None
    ]


def _version_tag(value: str) -> str:
    """What makes two TXT records the same kind: `v=spf1`, `v=DMARC1`, `v=STSv1`..."""
    match = re.match(r"\s*(v\s*=\s*[^;\s]+)", value)
    return re.sub(r"\s", "", match.group(1)).lower() if match else ""


def _name(text: str) -> str:
    return text.lower().rstrip(".")


class RecordingResolver(Resolver):
    """A resolver that notes each question, and the names that came back NXDOMAIN."""

    def __init__(self, nameserver: str) -> None:
        super().__init__(nameservers=[parse_nameserver(nameserver)], timeout=2)
        self.asked: set[tuple[str, str]] = set()
        self.missing: set[str] = set()

    def lookup(self, name: str, rdtype: str) -> Lookup:
        found = super().lookup(name, rdtype)
        self.asked.add((_name(name), rdtype))
        if found.status is LookupStatus.NXDOMAIN:
            self.missing.add(_name(name))
        return found


@dataclass
class Checked:
    """One run of a domain's checks, with the questions it asked."""

    outcomes: dict[str, CheckOutcome]
    asked: set[tuple[str, str]]
    missing: set[str]


def check(domain: str, context: CheckContext, nameserver: str) -> Checked:
    resolver = RecordingResolver(nameserver)
    outcomes = run_domain_checks(context, resolver)
    return Checked({o.name: o for o in outcomes}, resolver.asked, resolver.missing)


def changes_answers_of(records: list[dict[str, str]], run: Checked) -> bool:
    """Whether publishing `records` changes an answer `run` got.

    A record changes the answer for its own name and type, and makes its name and every name
    above it exist where they did not.
    """
    for record in records:
        name = _name(record["name"])
        if (name, record["type"]) in run.asked:
            return True
        labels = name.split(".")
        if any(".".join(labels[i:]) in run.missing for i in range(len(labels))):
            return True
    return False


@dataclass
class DomainRun:
    """A domain's checks before and after its suggested records were published.

    `aliased` is the run, after publishing, of the target of an alias whose SPF record the
    suggestion puts there: Knot, authoritative only, answers for the alias with a bare CNAME
    into the other zone, where receivers' resolvers follow it to the record.
    """

    context: CheckContext
    before: Checked
    after: Checked | None = None
    aliased: Checked | None = None
    skipped: str = ""  # why its records cannot be published here
    unpublishable: str = ""  # why its records cannot be published anywhere

    @property
    def suggestions(self) -> dict[str, dict[str, str]]:
        return {
            name: outcome.details["suggested_record"]
            for name, outcome in self.before.outcomes.items()
            if "suggested_record" in outcome.details
        }

    @property
    def records(self) -> list[dict[str, str]]:
        return list(self.suggestions.values())

    @property
    def alias_target(self) -> str | None:
        spf = self.suggestions.get("spf")
        name = _name(spf["name"]) if spf else self.context.domain
        return name if name != self.context.domain else None

    def outcome_after(self, check: str) -> CheckOutcome:
        assert self.after is not None
        if check == "spf" and self.aliased is not None:
            return self.aliased.outcomes[check]
        return self.after.outcomes[check]


@dataclass
class ScratchZones:
    """A copy of the fixture zones on this module's own Knot, edited and reloaded in place."""

    server: KnotServer
    originals: dict[str, str]
    raised: dict[str, int] = field(default_factory=dict)

    def zone_of(self, record: dict[str, str]) -> str | None:
        return _zone_of(_name(record["name"]), list(self.originals))

    def refusal(self, record: dict[str, str]) -> str:
        """Why the zone holding `record` cannot take it: an alias (CNAME) owns the name."""
        zone = self.zone_of(record)
        assert zone is not None
        owner = dns.name.from_text(record["name"])
        cname = _parse_zone(zone, self.originals[zone]).get_rdataset(owner, dns.rdatatype.CNAME)
        if cname is not None and record["type"] != "CNAME":
            return f"{record['name']} is an alias (CNAME): a {record['type']} record cannot join it"
        return ""

    @contextmanager
    def published(self, records: list[dict[str, str]]) -> Iterator[None]:
        """The zones with `records` published, as long as the block runs."""
        by_zone: dict[str, list[dict[str, str]]] = {}
        for record in records:
            zone = self.zone_of(record)
            assert zone is not None, record
            by_zone.setdefault(zone, []).append(record)
        try:
            for zone, zone_records in by_zone.items():
                self._write(zone, zone_records)
            self._check_served(records)
            yield
        finally:
            for zone in by_zone:
                self._write(zone, [])

    def _write(self, zone: str, records: list[dict[str, str]]) -> None:
        """The zone with `records` in place of those of the same kind, reloaded."""
        parsed = _parse_zone(zone, self.originals[zone])
        for record in records:
            owner = dns.name.from_text(record["name"])
            rdtype = dns.rdatatype.from_text(record["type"])
            old = parsed.get_rdataset(owner, rdtype)
            if old is None:
                continue
            parsed.delete_rdataset(owner, rdtype)
            if rdtype != dns.rdatatype.TXT:
                continue
            kind = _version_tag(record["value"])
            others = [rd for rd in old if _version_tag(b"".join(rd.strings).decode()) != kind]
            if others:
                parsed.replace_rdataset(owner, dns.rdataset.from_rdata_list(old.ttl, others))
        # Knot takes a reloaded zone only with a higher serial.
        self.raised[zone] = self.raised.get(zone, 0) + 1
        soa = parsed.find_rdataset(zone + ".", dns.rdatatype.SOA)
        raised = soa[0].replace(serial=soa[0].serial + self.raised[zone])
        parsed.replace_rdataset(zone + ".", dns.rdataset.from_rdata(soa.ttl, raised))
        # The suggested records go in as the very lines the domain page offers to paste.
        pasted = [zone_line(r["name"], r["type"], r["value"]) for r in records]
        text = parsed.to_text(relativize=False) + "".join(f"{line}\n" for line in pasted)
        (self.server.directory / "zones" / f"{zone}.zone").write_text(text)
        reload = subprocess.run(
            ["knotc", "-c", str(self.server.config), "-b", "zone-reload", zone],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert reload.returncode == 0, (zone, reload.stdout, reload.stderr, pasted)

    def _check_served(self, records: list[dict[str, str]]) -> None:
        """Knot loaded the pasted lines and serves each value as it was suggested."""
        resolver = Resolver(nameservers=[parse_nameserver(self.server.nameserver)], timeout=2)
        for record in records:
            lookup = resolver.lookup(record["name"], record["type"])
            assert record["value"] in lookup.records, (record, lookup)


def _batches(runs: dict[str, DomainRun]) -> list[list[str]]:
    """Domains to publish together: none of them changes an answer another one got."""
    batches: list[list[str]] = []
    for domain, run in runs.items():
        if not run.records or run.skipped or run.unpublishable:
            continue
        for batch in batches:
            if not any(
                changes_answers_of(run.records, runs[other].before)
                or changes_answers_of(runs[other].records, run.before)
                for other in batch
            ):
                batch.append(domain)
                break
        else:
            batches.append([domain])
    return batches


@pytest.fixture(scope="module")
def published_runs(
    knot: KnotServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, DomainRun]]:
    """Every fixture domain checked, and checked again with its suggested records published.

    The first run asks the session's Knot; the second a Knot of this module's own, on its own
    address, serving a copy of the fixture zones. `knot` also brings the MTA-STS policy server
    and the settings that let mailsec reach it, which both runs need.
    """
    server = KnotServer(tmp_path_factory.mktemp("knot-suggestions"), address=SCRATCH_ADDRESS)
    server.start()
    scratch = ScratchZones(server, _zone_texts())
    zones = list(scratch.originals)
    domains = [d for d in fixture_domains() if _zone_of(d, zones) is not None]
    contexts = {d: CheckContext(d, report_address(d)) for d in domains}
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:

            def first(domain: str) -> DomainRun:
                return DomainRun(contexts[domain], check(domain, contexts[domain], knot.nameserver))

            runs = dict(zip(domains, pool.map(first, domains), strict=True))
            for run in runs.values():
                outside = [r["name"] for r in run.records if scratch.zone_of(r) is None]
                if outside:
                    run.skipped = f"{', '.join(outside)} is in no fixture zone: cannot publish it"
                run.unpublishable = "; ".join(
                    filter(None, (scratch.refusal(r) for r in run.records if not run.skipped))
                )

            def second(domain: str) -> list[Checked]:
                checked = [check(domain, contexts[domain], server.nameserver)]
                if (target := runs[domain].alias_target) is not None:
                    target_context = CheckContext(target, report_address(target))
                    checked.append(check(target, target_context, server.nameserver))
                return checked

            pending = _batches(runs)
            while pending:
                batch = pending.pop(0)
                with scratch.published([r for d in batch for r in runs[d].records]):
                    again = dict(zip(batch, pool.map(second, batch), strict=True))
                # The second run may ask what the first did not: check the batch again with it.
                clashing = [
                    d for d in batch
                    if any(changes_answers_of(runs[o].records, checked)
                           for o in batch if o != d for checked in again[d])
                ]  # fmt: skip
                for domain in batch:
                    if domain not in clashing:
                        runs[domain].after, *aliased = again[domain]
                        runs[domain].aliased = aliased[0] if aliased else None
                pending += [[domain] for domain in clashing]
        yield runs
    finally:
        server.stop()


def report_address(domain: str) -> str:
    # In the domain itself, as when mailsec has no ingest address: an address elsewhere needs
    # that domain's authorisation (`<domain>._report._dmarc.<elsewhere>`), which is its
    # operator's to publish, not a record of this domain.
    return f"dmarc-reports@{domain}"


RANK = {CheckStatus.OK: 0, CheckStatus.WARNING: 1, CheckStatus.ERROR: 2, CheckStatus.FAIL: 3}


def _published(runs: dict[str, DomainRun], domain: str) -> DomainRun:
    run = runs[domain]
    if run.skipped:
        pytest.skip(run.skipped)
    assert not run.unpublishable, run.unpublishable
    return run


@pytest.mark.knot
@pytest.mark.parametrize("domain", _params())
def test_publishing_every_suggestion_fixes_the_check_that_made_it(
    domain: str, published_runs: dict[str, DomainRun]
) -> None:
    run = _published(published_runs, domain)
    if not run.suggestions:
        return
    assert run.after is not None
    unfixed = {}
    for name, suggestion in run.suggestions.items():
        outcome = run.outcome_after(name)
        status, phrase, _why = ALLOWED_AFTER.get(
            (domain, name), (CheckStatus.OK, "", "no exception")
        )
        if outcome.status is not status or phrase not in outcome.summary:
            unfixed[name] = (str(outcome.status), outcome.summary, suggestion)
    assert not unfixed


@pytest.mark.knot
@pytest.mark.parametrize("domain", _params())
def test_publishing_every_suggestion_leaves_no_check_worse(
    domain: str, published_runs: dict[str, DomainRun]
) -> None:
    run = _published(published_runs, domain)
    if not run.suggestions:
        return
    assert run.after is not None
    worse = {
        name: (str(run.before.outcomes[name].status), str(outcome.status), outcome.summary)
        for name, outcome in run.after.outcomes.items()
        if RANK[outcome.status] > RANK[run.before.outcomes[name].status]
    }
    assert not worse


@pytest.mark.knot
@pytest.mark.parametrize("domain", _params())
def test_every_spf_and_dmarc_fault_comes_with_a_record_to_publish(
    domain: str, published_runs: dict[str, DomainRun]
) -> None:
    # Without this, a check that stops suggesting anything would pass the tests above.
    run = published_runs[domain]
    bare = {
        name: outcome.summary
        for name, outcome in run.before.outcomes.items()
        if name in {"spf", "dmarc"}
        and outcome.status in {CheckStatus.FAIL, CheckStatus.WARNING}
        and "suggested_record" not in outcome.details
        and (domain, name) not in NO_SUGGESTION
        and CUT_SHORT not in outcome.summary
    }
    assert not bare


# The rules above that no fixture reaches, on hand-made lookups.

POLICY_URL = "https://mta-sts.d.test/.well-known/mta-sts.txt"
NO_RECORD = Lookup("_mta-sts.d.test", "TXT", LookupStatus.NODATA)
POLICY_HOST = [Lookup("mta-sts.d.test", "A", LookupStatus.OK, ("192.0.2.80",))]


def test_the_mta_sts_record_is_offered_once_a_usable_policy_is_served():
    testing = Fetch(
        POLICY_URL, status=200, content_type="text/plain",
        body="version: STSv1\nmode: testing\nmx: mx.d.test\nmax_age: 86400\n",
    )  # fmt: skip
    outcome = evaluate_mta_sts(
        "d.test", NO_RECORD, POLICY_HOST, "v=STSv1; id=1", policy=testing, mx_hosts=["mx.d.test"]
    )
    assert outcome.status == CheckStatus.WARNING
    assert outcome.details["suggested_record"] == {
        "name": "_mta-sts.d.test", "type": "TXT", "value": "v=STSv1; id=1",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("host", "policy"),
    [
        ([Lookup("mta-sts.d.test", "A", LookupStatus.NXDOMAIN)], None),
        (POLICY_HOST, Fetch(POLICY_URL, status=404, body="not found", content_type="text/plain")),
        (
            POLICY_HOST,
            Fetch(POLICY_URL, status=200, body="<html></html>", content_type="text/html"),
        ),
    ],
    ids=["no policy host", "no policy", "unusable policy"],
)
def test_without_a_usable_policy_the_mta_sts_record_is_only_named_in_the_hint(host, policy):
    outcome = evaluate_mta_sts("d.test", NO_RECORD, host, "v=STSv1; id=1", policy=policy)
    assert outcome.status == CheckStatus.WARNING
    assert "suggested_record" not in outcome.details
    assert '_mta-sts.d.test "v=STSv1; id=1"' in outcome.details["hint"]
    assert POLICY_URL in outcome.details["hint"]


def test_dmarc_suggestion_leaves_out_report_domains_that_have_not_authorised_it():
    lookups = DmarcLookups(
        "d.test", "_dmarc.d.test",
        Lookup("_dmarc.d.test", "TXT", LookupStatus.OK,
               ("v=DMARC1; p=none; rua=mailto:a@d.test,mailto:r@reports.example",)),
        authorisations={
            "reports.example": Lookup("d.test._report._dmarc.reports.example", "TXT",
                                      LookupStatus.NXDOMAIN),
        },
    )  # fmt: skip
    suggestion = dmarc_verdict(CheckContext("d.test", "m@d.test"), lookups).details[
        "suggested_record"
    ]
    assert suggestion["value"] == "v=DMARC1; p=quarantine; rua=mailto:a@d.test,mailto:m@d.test"
    assert 'd.test._report._dmarc.reports.example TXT "v=DMARC1"' in suggestion["note"]
