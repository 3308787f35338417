"""pyspf's check_host through our Resolver, against Knot serving the spf-eval.test fixture zone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import spf

from dns_records import spf_eval
from dns_records.lookups import Lookup, SpfResult
from dns_records.resolver import Resolver
from dns_records.spf_eval import evaluate_spf
from mailsec.env import parse_nameserver
from tests.servers import free_port

pytestmark = pytest.mark.knot


class RecordingResolver(Resolver):
    """Our Resolver, noting each query it is asked, optionally slowed down to overlap threads."""

    def __init__(self, *args, delay: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.queries: list[tuple[str, str]] = []

    def lookup(self, name: str, rdtype: str) -> Lookup:
        self.queries.append((name, rdtype))
        if self.delay:
            threading.Event().wait(self.delay)
        return super().lookup(name, rdtype)


@pytest.fixture
def resolver(knot):
    return RecordingResolver(nameservers=[parse_nameserver(knot.nameserver)], timeout=2)


def silent_resolver(timeout: float = 0.3) -> RecordingResolver:
    """A resolver whose name server never answers: every lookup times out."""
    port = free_port("127.0.0.13")
    return RecordingResolver(nameservers=[parse_nameserver(f"127.0.0.13:{port}")], timeout=timeout)


def test_authorised_ip4_passes(resolver):
    evaluation = evaluate_spf("192.0.2.10", "allow.spf-eval.test", resolver=resolver)
    assert evaluation.result is SpfResult.PASS
    assert evaluation.lookups == 1
    assert resolver.queries == [("allow.spf-eval.test", "TXT")]


def test_unauthorised_ip_fails_on_dash_all(resolver):
    evaluation = evaluate_spf("198.51.100.7", "allow.spf-eval.test", resolver=resolver)
    assert evaluation.result == "fail"
    assert evaluate_spf("192.0.2.10", "deny.spf-eval.test", resolver=resolver).result == "fail"


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("soft.spf-eval.test", "softfail"),
        ("neutral.spf-eval.test", "neutral"),
        ("nospf.spf-eval.test", "none"),
        ("missing.spf-eval.test", "none"),
        ("twice.spf-eval.test", "permerror"),
    ],
)
def test_other_results(resolver, domain, expected):
    assert evaluate_spf("192.0.2.1", domain, resolver=resolver).result == expected


def test_txt_strings_are_glued_without_separator(resolver):
    assert evaluate_spf("198.51.100.9", "split.spf-eval.test", resolver=resolver).result == "pass"
    assert evaluate_spf("192.0.2.9", "split.spf-eval.test", resolver=resolver).result == "fail"


def test_mx_addresses_and_includes_are_looked_up_through_the_resolver(resolver):
    for ip in ("203.0.113.25", "2001:db8::25"):
        assert evaluate_spf(ip, "viamx.spf-eval.test", resolver=resolver).result == "pass"
    assert ("viamx.spf-eval.test", "MX") in resolver.queries
    assert ("mail.spf-eval.test", "AAAA") in resolver.queries
    evaluation = evaluate_spf("192.0.2.77", "viamx.spf-eval.test", resolver=resolver)
    assert evaluation.result == "pass"  # by the include
    assert evaluation.lookups == 4  # TXT and MX of viamx, A of mail, TXT of allow
    assert ("allow.spf-eval.test", "TXT") in resolver.queries


def test_helo_identity_and_macro(resolver):
    helo_check = evaluate_spf("203.0.113.25", "mail.spf-eval.test", resolver=resolver)
    assert helo_check.result == "pass"
    evaluation = evaluate_spf(
        "203.0.113.25",
        "helo.spf-eval.test",
        resolver=resolver,
        sender="someone@helo.spf-eval.test",
        helo="mail.spf-eval.test",
    )
    assert evaluation.result == "pass"


def test_redirect(resolver):
    assert evaluate_spf("192.0.2.3", "moved.spf-eval.test", resolver=resolver).result == "pass"


def test_explanation_from_the_domain(resolver):
    evaluation = evaluate_spf(
        "192.0.2.99", "explained.spf-eval.test", resolver=resolver, default_explanation="nope"
    )
    assert evaluation.result == "fail"
    assert evaluation.explanation == "192.0.2.99 may not send for explained.spf-eval.test"
    deny = evaluate_spf("192.0.2.99", "deny.spf-eval.test", resolver=resolver)
    assert deny.explanation == "SPF fail - not authorized"


def test_refused_lookup_is_temperror(resolver):
    evaluation = evaluate_spf("192.0.2.1", "not-served.example", resolver=resolver)
    assert evaluation.result is SpfResult.TEMPERROR
    assert "REFUSED" in evaluation.explanation
    included = evaluate_spf("192.0.2.1", "broken.spf-eval.test", resolver=resolver)
    assert included.result == "temperror"
    assert "not-served.example" in included.explanation


def test_timed_out_lookup_is_temperror():
    evaluation = evaluate_spf("192.0.2.1", "allow.spf-eval.test", resolver=silent_resolver())
    assert evaluation.result == "temperror"
    assert "timed out" in evaluation.explanation


def test_invalid_ip_is_a_caller_error(resolver):
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        evaluate_spf("192.0.2.300", "allow.spf-eval.test", resolver=resolver)
    assert resolver.queries == []


def test_pyspf_never_uses_its_own_resolver():
    assert spf_eval.installed()
    # pyspf used directly, outside evaluate_spf, gets an error rather than the system resolver.
    result, _code, explanation = spf.query(
        i="192.0.2.1", s="a@example.com", h="example.com"
    ).check()
    assert result == "temperror"
    assert "no mailsec resolver" in explanation


def test_hook_is_restored_if_replaced(resolver, monkeypatch):
    def elsewhere(*args, **kwargs):
        raise AssertionError("pyspf's DNS went around the Resolver")

    monkeypatch.setattr(spf, "DNSLookup", elsewhere)
    assert not spf_eval.installed()
    assert evaluate_spf("192.0.2.10", "allow.spf-eval.test", resolver=resolver).result == "pass"
    assert spf_eval.installed()


def test_concurrent_evaluations_each_use_their_own_resolver(knot):
    """Threads evaluate at once, some with a server that never answers; none sees another's."""

    def knot_resolver():
        return RecordingResolver(
            nameservers=[parse_nameserver(knot.nameserver)], timeout=2, delay=0.01
        )

    tasks = [
        ("192.0.2.10", "allow.spf-eval.test", knot_resolver, "pass", 1),
        ("192.0.2.10", "allow.spf-eval.test", silent_resolver, "temperror", 1),
        ("198.51.100.9", "split.spf-eval.test", knot_resolver, "pass", 1),
        ("192.0.2.10", "deny.spf-eval.test", knot_resolver, "fail", 1),
        ("192.0.2.77", "viamx.spf-eval.test", knot_resolver, "pass", 4),
        ("2001:db8::25", "viamx.spf-eval.test", knot_resolver, "pass", 3),
        ("192.0.2.1", "soft.spf-eval.test", knot_resolver, "softfail", 1),
        ("192.0.2.1", "broken.spf-eval.test", knot_resolver, "temperror", 2),
    ] * 3
    start = threading.Barrier(len(tasks))

    def run(task):
        ip, domain, make_resolver, _expected, _lookups = task
        own = make_resolver()
        start.wait(timeout=10)
        evaluation = evaluate_spf(ip, domain, resolver=own)
        return evaluation, own.queries

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        outcomes = list(pool.map(run, tasks))

    for (ip, domain, _make, expected, lookups), (evaluation, queries) in zip(
        tasks, outcomes, strict=True
    ):
        assert (ip, domain, evaluation.result) == (ip, domain, expected)
        assert evaluation.lookups == lookups == len(queries)
        assert queries[0] == (domain, "TXT")
