"""The resolver's fan-out against a real Knot: the same answers as one lookup at a time,
failures kept apart from missing records, bounded by its time limit."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from dns_records.lookups import LookupStatus
from dns_records.resolver import FanOut, Resolver
from mailsec.env import parse_nameserver

pytestmark = pytest.mark.knot

QUESTIONS = [
    ("2.0.0.127.zen.spamhaus.org", "A"),
    ("2.0.0.127.zen.spamhaus.org", "TXT"),
    ("1.0.0.127.zen.spamhaus.org", "A"),  # absent: NXDOMAIN
    ("acme.test", "MX"),
    ("acme.test", "TXT"),  # exists, no TXT: NODATA
    ("mx1.acme.test", "AAAA"),
    ("ZEN.Spamhaus.ORG", "SOA"),
    ("elsewhere.example", "A"),  # not served: REFUSED
    ("big.bl.test", "TXT"),  # truncated over UDP: asked again over TCP
    ("alias.acme.test", "A"),  # a CNAME chain
]


def test_fan_out_gives_the_same_answers_as_one_lookup_at_a_time(knot_resolver):
    many = knot_resolver.lookup_many(QUESTIONS, concurrency=4)
    one_by_one = [knot_resolver.lookup(name, rdtype) for name, rdtype in QUESTIONS]
    assert many == one_by_one
    statuses = [lookup.status for lookup in many]
    assert statuses == [
        LookupStatus.OK, LookupStatus.OK, LookupStatus.NXDOMAIN, LookupStatus.OK,
        LookupStatus.NODATA, LookupStatus.OK, LookupStatus.OK, LookupStatus.ERROR,
        LookupStatus.OK, LookupStatus.OK,
    ]  # fmt: skip
    assert "REFUSED" in many[7].reason
    assert len(many[8].records[0]) == 720
    assert (many[9].records, many[9].canonical_name) == (("192.0.2.25",), "mx1.acme.test")


def test_thousands_of_questions_in_order_with_bounded_concurrency(knot_resolver):
    questions = [(f"{i % 256}.{i // 256}.0.127.zen.spamhaus.org", "A") for i in range(3000)]
    fan = FanOut(knot_resolver, concurrency=50)
    answers = fan.run(questions)
    assert [a.name for a in answers] == [q for q, _ in questions]
    assert answers[2].records == ("127.0.0.10", "127.0.0.2")
    assert sum(a.status is LookupStatus.NXDOMAIN for a in answers) == 2999
    assert fan.queries_sent >= 3000


def test_a_silent_server_is_a_timeout_error_within_the_limit(bl_relay):
    bl_relay.silent = "zen.spamhaus.org"
    try:
        resolver = Resolver(nameservers=[parse_nameserver(bl_relay.nameserver)], timeout=0.5)
        started = time.monotonic()
        answers = resolver.lookup_many(
            [(f"{i}.2.0.192.zen.spamhaus.org", "A") for i in range(100)] + [("acme.test", "MX")]
        )
        elapsed = time.monotonic() - started
    finally:
        bl_relay.silent = "nothing-is-silenced.invalid"
    assert all(a.failed and "timed out" in a.reason for a in answers[:100])
    assert answers[100].ok
    assert elapsed < 2


def test_the_next_server_is_asked_when_the_first_refuses_to_listen(bl_knot):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.33", 0))
        dead = f"127.0.0.33:{closed.getsockname()[1]}"
    resolver = Resolver(
        nameservers=[parse_nameserver(dead), parse_nameserver(bl_knot.nameserver)], timeout=1
    )
    [answer] = resolver.lookup_many([("2.0.0.127.zen.spamhaus.org", "A")])
    assert answer.ok
    alone = Resolver(nameservers=[parse_nameserver(dead)], timeout=1)
    [failed] = alone.lookup_many([("2.0.0.127.zen.spamhaus.org", "A")])
    assert failed.failed and "refused" in failed.reason.lower()


def test_a_forged_reply_with_another_question_is_ignored(bl_knot):
    """A reply repeating another question (or id) is not taken as the answer."""
    forged_seen = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.33", 0))
        server.settimeout(0.2)
        port = server.getsockname()[1]
        stop = threading.Event()

        def answer_wrong_then_right():
            import dns.message
            import dns.rcode

            while not stop.is_set():
                try:
                    data, client = server.recvfrom(4096)
                except OSError:
                    continue
                query = dns.message.from_wire(data)
                wrong = dns.message.make_query("1.0.0.127.zen.spamhaus.org", "A")
                wrong.id = query.id
                forged = dns.message.make_response(wrong)
                forged.set_rcode(dns.rcode.NXDOMAIN)
                server.sendto(forged.to_wire(), client)
                forged_seen.append(True)
                right = dns.message.make_response(query)
                right.set_rcode(dns.rcode.NXDOMAIN)
                server.sendto(right.to_wire(), client)

        thread = threading.Thread(target=answer_wrong_then_right, daemon=True)
        thread.start()
        try:
            resolver = Resolver(nameservers=[parse_nameserver(f"127.0.0.33:{port}")], timeout=1)
            [answer] = resolver.lookup_many([("2.0.0.127.zen.spamhaus.org", "A")])
        finally:
            stop.set()
            thread.join()
    assert forged_seen
    assert answer.status is LookupStatus.NXDOMAIN  # the right reply, after the forged one


def test_cancelled_fan_out_answers_errors_at_once(bl_relay):
    bl_relay.silent = "zen.spamhaus.org"
    cancelled = threading.Event()
    timer = threading.Timer(0.2, cancelled.set)
    timer.start()
    try:
        resolver = Resolver(nameservers=[parse_nameserver(bl_relay.nameserver)], timeout=5)
        started = time.monotonic()
        answers = resolver.lookup_many(
            [(f"{i}.2.0.192.zen.spamhaus.org", "A") for i in range(20)], cancelled=cancelled
        )
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        bl_relay.silent = "nothing-is-silenced.invalid"
    assert elapsed < 2
    assert all(a.failed and "cancelled" in a.reason for a in answers)


def test_a_malformed_name_is_an_error_not_a_crash(knot_resolver):
    answers = knot_resolver.lookup_many([("a..b.test", "A"), ("x" * 64 + ".test", "A")])
    assert all(a.failed for a in answers)


def test_a_lost_datagram_is_sent_again_before_the_time_limit(bl_knot):
    """A server that drops the first copy of every query: the resend gets the answer."""
    seen: set[bytes] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.33", 0))
        server.settimeout(0.2)
        port = server.getsockname()[1]
        stop = threading.Event()

        def drop_first_copies():
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.settimeout(1)
            while not stop.is_set():
                try:
                    data, client = server.recvfrom(4096)
                except OSError:
                    continue
                if data not in seen:
                    seen.add(data)
                    continue
                upstream.sendto(data, (bl_knot.address, bl_knot.port))
                reply, _ = upstream.recvfrom(4096)
                server.sendto(reply, client)
            upstream.close()

        thread = threading.Thread(target=drop_first_copies, daemon=True)
        thread.start()
        try:
            resolver = Resolver(nameservers=[parse_nameserver(f"127.0.0.33:{port}")], timeout=2)
            started = time.monotonic()
            answers = resolver.lookup_many(
                [("2.0.0.127.zen.spamhaus.org", "A"), ("1.0.0.127.zen.spamhaus.org", "A")]
            )
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join()
    assert answers[0].ok and answers[1].status is LookupStatus.NXDOMAIN
    assert 0.4 < elapsed < 1.5
