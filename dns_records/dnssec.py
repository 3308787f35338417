"""DNSSEC check: is the zone signed, and did the resolver validate the answer? Pure."""

from __future__ import annotations

from dns_records.models import CheckName, CheckStatus
from dns_records.resolver import Lookup
from dns_records.results import CheckOutcome


def evaluate_dnssec(domain: str, dnskey: Lookup) -> CheckOutcome:
    if dnskey.failed:
        return CheckOutcome(
            CheckName.DNSSEC, CheckStatus.ERROR, f"Could not look up DNSKEY: {dnskey.reason}", {}
        )
    if not dnskey.ok:
        return CheckOutcome(
            CheckName.DNSSEC, CheckStatus.WARNING,
            f"{domain} is not signed with DNSSEC: answers about its mail servers can be forged.",
            {"signed": False},
        )  # fmt: skip
    details = {"signed": True, "keys": len(dnskey.records), "validated": dnskey.authenticated}
    if dnskey.authenticated:
        return CheckOutcome(
            CheckName.DNSSEC,
            CheckStatus.OK,
            f"Signed ({len(dnskey.records)} keys) and validated by the resolver.",
            details,
        )
    return CheckOutcome(
        CheckName.DNSSEC, CheckStatus.OK,
        f"Signed ({len(dnskey.records)} keys); the configured resolver does not validate, so the chain was not verified.",
        details,
    )  # fmt: skip
