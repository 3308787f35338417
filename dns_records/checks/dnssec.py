"""DNSSEC check: is the zone signed, and did the resolver validate the answer? Pure."""

from __future__ import annotations

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import Lookup, Net
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus

NAME = "dnssec"


def evaluate_dnssec(domain: str, dnskey: Lookup) -> CheckOutcome:
    if dnskey.failed:
        return CheckOutcome(
            NAME, CheckStatus.ERROR, f"Could not look up DNSKEY: {dnskey.reason}", {}
        )
    if not dnskey.ok:
        return CheckOutcome(
            NAME, CheckStatus.WARNING,
            f"{domain} is not signed with DNSSEC: answers about its mail servers can be forged.",
            {"signed": False},
        )  # fmt: skip
    details = {"signed": True, "keys": len(dnskey.records), "validated": dnskey.authenticated}
    if dnskey.authenticated:
        return CheckOutcome(
            NAME,
            CheckStatus.OK,
            f"Signed ({len(dnskey.records)} keys) and validated by the resolver.",
            details,
        )
    return CheckOutcome(
        NAME, CheckStatus.OK,
        f"Signed ({len(dnskey.records)} keys); the configured resolver does not validate, so the chain was not verified.",
        details,
    )  # fmt: skip


def gather(context: CheckContext, net: Net) -> Lookup:
    return net.resolver.lookup(context.domain, "DNSKEY")


def verdict(context: CheckContext, dnskey: Lookup) -> CheckOutcome:
    return evaluate_dnssec(context.domain, dnskey)


CHECK = Check(name=NAME, label="DNSSEC", order=80, gather=gather, verdict=verdict)
