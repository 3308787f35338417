"""What a hostile zone can cost one check run: bounded queries, bounded details, bounded time.

The zones are generated here and served by this module's own Knot, so the shared fixtures stay
small: a domain with a thousand MX records, an MX host with fifty addresses, an SPF record with
forty a: terms, an address with fifty PTR names, and names that never answer (through a relay
that drops their questions).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from dns_records.checks import CheckContext
from dns_records.checks.mx import MAX_MX_HOSTS
from dns_records.checks.spf import MAX_SPF_TERM_LOOKUPS
from dns_records.lookups import Lookup
from dns_records.resolver import Resolver
from dns_records.results import MAX_DETAILS_CHARS, CheckOutcome, storable
from dns_records.runner import iter_many, run_domain_checks
from dns_records.status import CheckStatus
from mailsec.env import parse_nameserver
from tests.servers import KnotServer, SilentDnsRelay

pytestmark = pytest.mark.knot

KNOT_ADDRESS = "127.0.0.23"
RELAY_ADDRESS = "127.0.0.24"
SOA = "@ SOA ns1.fan.test. hostmaster.fan.test. 1 7200 3600 1209600 300\n@ NS ns1.fan.test.\n"


def _fan_zone() -> str:
    lines = ["$ORIGIN fan.test.", "$TTL 300", SOA, "ns1 A 127.0.0.23"]
    # A thousand MX records, each host with its own address.
    for n in range(1000):
        lines.append(f"many-mx MX {n} h{n}.fan.test.")
        lines.append(f"h{n} A 198.51.100.{n % 250 + 1}")
    # One MX host with fifty addresses.
    lines.append("wide MX 10 w.fan.test.")
    lines += [f"w A 203.0.113.{n + 1}" for n in range(50)]
    # An SPF record with forty a: terms (split into strings of at most 255 characters).
    terms = " ".join(f"a:h{n}.fan.test" for n in range(40))
    text = f"v=spf1 {terms} -all"
    chunks = " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))
    lines.append(f"spf40 TXT {chunks}")
    lines.append("spf40 MX 10 h1.fan.test.")
    # An MX host whose address has fifty PTR names (in the reverse zone below).
    lines.append("ptrs MX 10 p.fan.test.")
    lines.append("p A 192.0.2.77")
    # A domain whose SPF terms and MX hosts never answer (silent.fan.test is dropped).
    silent_terms = " ".join(f"a:s{n}.silent.fan.test" for n in range(8))
    lines.append(f'slow TXT "v=spf1 {silent_terms} -all"')
    lines.append("slow MX 10 m1.silent.fan.test.")
    lines.append("slow MX 20 m2.silent.fan.test.")
    lines.append("fast MX 10 h1.fan.test.")
    lines.append('fast TXT "v=spf1 mx -all"')
    return "\n".join(lines) + "\n"


def _reverse_zone() -> str:
    lines = ["$ORIGIN 2.0.192.in-addr.arpa.", "$TTL 300", SOA]
    lines += [f"77 PTR n{n}.fan.test." for n in range(50)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fan_knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    source = tmp_path_factory.mktemp("fan-zones")
    (source / "fan.test.zone").write_text(_fan_zone())
    (source / "2.0.192.in-addr.arpa.zone").write_text(_reverse_zone())
    server = KnotServer(tmp_path_factory.mktemp("fan-knot"), address=KNOT_ADDRESS, source=source)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class CountingResolver(Resolver):
    """The real resolver, counting the queries it sends (the runner caches in front of it)."""

    def __init__(self, nameserver: str, timeout: float = 2) -> None:
        super().__init__(nameservers=[parse_nameserver(nameserver)], timeout=timeout)
        self.queries = 0
        self._lock = threading.Lock()

    def lookup(self, name: str, rdtype: str) -> Lookup:
        with self._lock:
            self.queries += 1
        return super().lookup(name, rdtype)


def _run(resolver: Resolver, domain: str, name: str) -> CheckOutcome:
    (outcome,) = run_domain_checks(CheckContext(domain, "r@x.test"), resolver, only={name})
    return outcome


def _messages(outcome: CheckOutcome) -> list[str]:
    return [f["message"] for f in outcome.details.get("findings", [])]


def test_a_thousand_mx_records_cost_a_bounded_number_of_queries(fan_knot: KnotServer) -> None:
    resolver = CountingResolver(fan_knot.nameserver)
    outcome = _run(resolver, "many-mx.fan.test", "mx")
    # The MX lookup, then A and AAAA (and at most a CNAME probe) of the first hosts only.
    assert resolver.queries <= 1 + 3 * MAX_MX_HOSTS
    assert len(outcome.details["hosts"]) == MAX_MX_HOSTS
    assert outcome.details["hosts_not_examined"] == 1000 - MAX_MX_HOSTS
    assert any("1000 MX records: mailsec examined the first 20" in m for m in _messages(outcome))


def test_every_check_of_a_domain_with_a_thousand_mx_records_stays_bounded(
    fan_knot: KnotServer,
) -> None:
    resolver = CountingResolver(fan_knot.nameserver)
    outcomes = run_domain_checks(CheckContext("many-mx.fan.test", "r@x.test"), resolver)
    assert resolver.queries < 300
    for outcome in outcomes:
        assert len(json.dumps(storable(outcome).details)) <= MAX_DETAILS_CHARS


def test_an_mx_host_with_fifty_addresses_is_examined_for_ten(fan_knot: KnotServer) -> None:
    resolver = CountingResolver(fan_knot.nameserver)
    outcome = _run(resolver, "wide.fan.test", "mx")
    (row,) = outcome.details["hosts"]
    assert len(row["addresses"]) == 10
    assert row["addresses_not_examined"] == 40
    rdns = _run(resolver, "wide.fan.test", "rdns")
    assert len(rdns.details["addresses"]) == 10


def test_forty_a_terms_are_all_counted_but_only_twenty_resolved(fan_knot: KnotServer) -> None:
    resolver = CountingResolver(fan_knot.nameserver)
    outcome = _run(resolver, "spf40.fan.test", "spf")
    assert outcome.status is CheckStatus.FAIL
    assert outcome.details["lookups"] == 40
    assert "SPF needs 40 DNS lookups" in outcome.summary
    assert any(
        f"first {MAX_SPF_TERM_LOOKUPS} a/mx/exists terms and left 20 more" in m
        for m in _messages(outcome)
    )
    # The TXT lookup, A and AAAA of twenty terms, the domain's MX and its host's addresses,
    # and what check_host asks (it stops after ten terms).
    assert resolver.queries <= 1 + 2 * MAX_SPF_TERM_LOOKUPS + 4 + 12


def test_fifty_ptr_names_are_followed_for_ten(fan_knot: KnotServer) -> None:
    resolver = CountingResolver(fan_knot.nameserver)
    outcome = _run(resolver, "ptrs.fan.test", "rdns")
    (row,) = outcome.details["addresses"]
    assert len(row["ptr"]) == 10
    assert row["ptr_not_followed"] == 40
    assert any("has 50 PTR names" in m for m in _messages(outcome))
    # MX, the host's A/AAAA (and CNAME probe), the PTR, and A and AAAA of ten names.
    assert resolver.queries <= 1 + 3 + 1 + 2 * 10


@pytest.fixture
def silent_relay(fan_knot: KnotServer) -> Iterator[SilentDnsRelay]:
    relay = SilentDnsRelay(
        (fan_knot.address, fan_knot.port), silent="silent.fan.test", address=RELAY_ADDRESS
    )
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


def test_names_that_never_answer_cost_a_domain_its_budget_not_more(
    silent_relay: SilentDnsRelay,
) -> None:
    timeout, budget = 2.0, 3.0
    resolver = Resolver(nameservers=[parse_nameserver(silent_relay.nameserver)], timeout=timeout)
    started = time.monotonic()
    outcomes = run_domain_checks(CheckContext("slow.fan.test", "r@x.test"), resolver, budget=budget)
    elapsed = time.monotonic() - started
    # Unbounded, the eight silent a: terms alone would take 8 x 2 lookups x 2 s.
    assert elapsed < budget + timeout + 2
    by_name = {o.name: o for o in outcomes}
    assert by_name["spf"].status is CheckStatus.ERROR
    assert by_name["mx"].status is CheckStatus.ERROR
    assert "out of time" in by_name["mx"].summary
    # Out of time is unknown, never wrong: no check fails for what it could not ask.
    assert [o.name for o in outcomes if o.status is CheckStatus.FAIL] == []


def test_the_budget_setting_bounds_each_domain_of_a_batch(silent_relay, settings) -> None:
    settings.MAILSEC_CHECK_DOMAIN_BUDGET_SECONDS = 3
    resolver = Resolver(nameservers=[parse_nameserver(silent_relay.nameserver)], timeout=2)
    names = ("slow.fan.test", "fast.fan.test")
    started = time.monotonic()
    done = {
        name: (time.monotonic() - started, outcomes)
        for name, outcomes in iter_many(
            [(name, CheckContext(name, "r@x.test")) for name in names], resolver, max_workers=2
        )
    }
    assert set(done) == set(names)
    assert done["slow.fan.test"][0] < 3 + 2 + 2
    fast = {o.name: o.status for o in done["fast.fan.test"][1]}
    assert fast["spf"] is CheckStatus.OK
