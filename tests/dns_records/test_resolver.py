"""The resolver adapter against a real Knot server: found, missing, and failed lookups differ."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from dns_records.lookups import LookupStatus
from dns_records.resolver import Resolver
from mailsec.env import parse_nameserver

pytestmark = pytest.mark.knot


@pytest.fixture
def resolver(knot):
    return Resolver(nameservers=[parse_nameserver(knot.nameserver)], timeout=2)


def test_found_records_come_back_as_text(resolver):
    lookup = resolver.lookup("good.test", "NS")
    assert lookup.status is LookupStatus.OK
    assert lookup.records == ("ns1.good.test", "ns2.good.test")
    assert lookup.ttl == 300


def test_missing_name_is_nxdomain(resolver):
    assert resolver.lookup("missing.good.test", "A").status is LookupStatus.NXDOMAIN


def test_name_without_that_type_is_nodata(resolver):
    assert resolver.lookup("www.good.test", "MX").status is LookupStatus.NODATA


def test_refused_answer_is_an_error_not_a_missing_record(resolver):
    lookup = resolver.lookup("not-served.example", "A")
    assert lookup.status is LookupStatus.ERROR
    assert "REFUSED" in lookup.reason


def test_silent_server_is_a_timeout_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.11", 0))
        port = sink.getsockname()[1]
        stop = threading.Event()

        def swallow():
            sink.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    sink.recvfrom(4096)

        thread = threading.Thread(target=swallow, daemon=True)
        thread.start()
        try:
            resolver = Resolver(nameservers=[parse_nameserver(f"127.0.0.11:{port}")], timeout=0.5)
            lookup = resolver.lookup("good.test", "NS")
        finally:
            stop.set()
            thread.join()
    assert lookup.status is LookupStatus.ERROR
    assert "timed out" in lookup.reason


def test_a_truncated_answer_is_fetched_again_over_tcp(resolver):
    lookup = resolver.lookup("big.good.test", "TXT")
    assert lookup.status is LookupStatus.OK
    assert len(lookup.records[0]) > 1200
    assert lookup.records[0].startswith("a0xxx")


def test_a_cname_is_followed_to_its_target_within_the_answer(resolver):
    lookup = resolver.lookup("alias.mx.test", "CNAME")
    assert lookup.records == ("mx1.good.test",)


def test_every_thread_gets_its_own_answers(resolver):
    from concurrent.futures import ThreadPoolExecutor

    names = ["good.test", "single-ns.test", "lame.test", "shared-addr.test"] * 25
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: (n, resolver.lookup(n, "SOA")), names))
    primaries = {
        "good.test": "ns1.good.test.",
        "single-ns.test": "ns1.single-ns.test.",
        "lame.test": "ns1.lame.test.",
        "shared-addr.test": "a.shared-addr.test.",
    }
    for name, lookup in results:
        assert lookup.status is LookupStatus.OK
        # Each zone's SOA names its own primary: a crossed answer would show another zone's.
        assert lookup.records[0].split()[0] == primaries[name]


def test_each_query_leaves_from_a_fresh_source_port(knot):
    """RFC 5452: with one reused socket, only the 16-bit query id would stop a forged answer."""
    from tests.servers import SlowDnsRelay

    relay = SlowDnsRelay((knot.address, knot.port), address="127.0.0.16")
    relay.slow.clear()
    ports: list[int] = []
    serve = relay._answer

    def record(query, client):
        ports.append(client[1])
        serve(query, client)

    relay._answer = record  # type: ignore[method-assign]
    relay.start()
    try:
        resolver = Resolver(nameservers=[parse_nameserver(relay.nameserver)], timeout=2)
        for n in range(12):
            assert resolver.lookup(f"q{n}.good.test", "A").status is LookupStatus.NXDOMAIN
    finally:
        relay.stop()
    assert len(ports) == 12
    assert len(set(ports)) == 12, f"source ports reused: {ports}"


def test_a_question_asked_by_many_threads_at_once_goes_out_once(knot):
    from concurrent.futures import ThreadPoolExecutor

    from dns_records.resolver import CachingResolver
    from tests.servers import SlowDnsRelay

    relay = SlowDnsRelay((knot.address, knot.port), address="127.0.0.16")
    relay.delay = 0.3
    relay.slow.set()
    relay.start()
    try:
        inner = Resolver(nameservers=[parse_nameserver(relay.nameserver)], timeout=2)
        cached = CachingResolver(inner)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: cached.lookup("good.test", "MX"), range(8)))
    finally:
        relay.stop()
    assert relay.queries == 1
    assert {a.records for a in answers} == {answers[0].records}
