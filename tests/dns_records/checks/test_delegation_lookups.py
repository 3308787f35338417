"""The delegation check end to end through the resolver adapter, against the fixture zones."""

from __future__ import annotations

import pytest

from dns_records.checks import CheckContext
from dns_records.checks.delegation import CHECK
from dns_records.resolver import Resolver
from dns_records.runner import net_for
from dns_records.status import CheckStatus
from mailsec.env import parse_nameserver

pytestmark = pytest.mark.knot


@pytest.fixture
def resolver(knot):
    return Resolver(nameservers=[parse_nameserver(knot.nameserver)], timeout=2)


def check_delegation(domain, resolver):
    return CHECK.run(CheckContext(domain, "reports@mailsec.example"), net_for(resolver))


@pytest.mark.parametrize(
    ("domain", "status", "phrase"),
    [
        ("good.test", CheckStatus.OK, "Delegated to 2 name servers; SOA serial 2026112801"),
        ("xn--bcher-kva.test", CheckStatus.OK, "Delegated to 2 name servers"),
        ("single-ns.test", CheckStatus.WARNING, "Only one name server"),
        ("shared-addr.test", CheckStatus.WARNING, "share one address"),
        ("lame.test", CheckStatus.FAIL, "ns2.lame.test has no address"),
        ("www.good.test", CheckStatus.OK, "Served by its parent zone good.test. Delegated to 2"),
        ("missing.good.test", CheckStatus.FAIL, "does not exist"),
        ("out-of-zone-ns.test", CheckStatus.ERROR, "ns.unserved.example"),
        ("unserved.example", CheckStatus.ERROR, "REFUSED"),
    ],
)
def test_delegation_verdicts(resolver, domain, status, phrase):
    outcome = check_delegation(domain, resolver)
    assert outcome.status == status, outcome
    assert phrase in outcome.summary


def test_delegation_details_list_name_servers_and_addresses(resolver):
    outcome = check_delegation("good.test", resolver)
    servers = {s["name"]: s["addresses"] for s in outcome.details["nameservers"]}
    assert servers == {"ns1.good.test": ["127.0.0.53"], "ns2.good.test": ["127.0.0.54", "::1"]}
    assert outcome.details["resolvers"]
