"""checkdmarc as the cross-check oracle: on the fixture zones, mailsec and checkdmarc agree on
which SPF and DMARC records receivers can use, except where mailsec is knowingly stricter."""

from __future__ import annotations

import dns.nameserver
import pytest

from dns_records.checks import CheckContext
from dns_records.resolver import Resolver
from dns_records.runner import run_domain_checks
from mailsec.env import parse_nameserver

pytestmark = pytest.mark.knot

# Domains whose records both must call usable, and both must call unusable.
SPF_VALID = ["good.test", "softfail.spf.test", "redirect.spf.test", "ignoredredirect.spf.test"]
SPF_INVALID = [
    "two.spf.test", "badip.spf.test", "badterm.spf.test", "toomany.spf.test",
    "chain.spf.test", "loop.spf.test", "void.spf.test",
]  # fmt: skip
DMARC_VALID = ["good.test", "strict.dmarc.test", "none.dmarc.test", "pct.dmarc.test"]
DMARC_INVALID = ["badp.dmarc.test", "two.dmarc.test", "missing.dmarc.test"]
# Where mailsec is stricter on purpose, and why.
STRICTER = {
    # RFC 7489 6.6.3: with a valid rua=, receivers act as if p=none. checkdmarc calls the record
    # valid; mailsec calls it a fault, since whoever wrote it meant some policy and gets none.
    "nop.dmarc.test": "dmarc",
}


@pytest.fixture(scope="module")
def options(knot):
    server = dns.nameserver.Do53Nameserver(knot.address, knot.port)
    return {"nameservers": [server], "timeout": 2.0, "retries": 0}


@pytest.fixture(scope="module")
def resolver(knot):
    return Resolver(nameservers=[parse_nameserver(knot.nameserver)], timeout=2)


def mailsec(resolver, domain, name):
    context = CheckContext(domain, "reports@mailsec.example")
    return run_domain_checks(context, resolver, only={name})[0]


@pytest.mark.parametrize("domain", SPF_VALID + SPF_INVALID)
def test_spf_usability_agrees_with_checkdmarc(resolver, options, domain):
    from checkdmarc.spf import check_spf

    theirs = check_spf(domain, **options)
    ours = mailsec(resolver, domain, "spf")
    usable = domain in SPF_VALID
    assert theirs["valid"] is usable, theirs
    assert (ours.status != "fail") is usable, ours.summary


@pytest.mark.parametrize("domain", DMARC_VALID + DMARC_INVALID)
def test_dmarc_usability_agrees_with_checkdmarc(resolver, options, domain):
    from checkdmarc.dmarc import check_dmarc

    theirs = check_dmarc(domain, **options)
    ours = mailsec(resolver, domain, "dmarc")
    usable = domain in DMARC_VALID
    assert theirs["valid"] is usable, theirs
    assert (ours.status != "fail") is usable, ours.summary


@pytest.mark.parametrize(("domain", "check"), sorted(STRICTER.items()))
def test_where_mailsec_is_stricter_checkdmarc_accepts_and_mailsec_fails(
    resolver, options, domain, check
):
    from checkdmarc.dmarc import check_dmarc
    from checkdmarc.spf import check_spf

    theirs = (check_dmarc if check == "dmarc" else check_spf)(domain, **options)
    assert theirs["valid"] is True
    assert mailsec(resolver, domain, check).status == "fail"
