"""BIMI record check (brand logo in mail clients): optional, so its absence is no fault. Pure."""

from __future__ import annotations

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import Lookup, Net
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus
from dns_records.txt_policy import one_policy_record

NAME = "bimi"


def evaluate_bimi(domain: str, txt: Lookup) -> CheckOutcome:
    found = one_policy_record(
        NAME, txt, record_name=f"default._bimi.{domain}", version="v=BIMI1",
        label="BIMI", lower_keys=True,
        absent=(CheckStatus.OK, "No BIMI record (optional: shows your logo in some mail clients)."),
    )  # fmt: skip
    if isinstance(found, CheckOutcome):
        return found
    details = found.details
    logo, authority = found.tags.get("l", ""), found.tags.get("a", "")
    details.update(logo=logo, authority=authority)
    for tag, url, what in (("l", logo, "an SVG logo"), ("a", authority, "a mark certificate")):
        if url and not url.lower().startswith("https://"):
            return CheckOutcome(
                NAME,
                CheckStatus.FAIL,
                f"BIMI {tag}= must be an https:// URL of {what}.",
                details,
            )
    if not logo:
        return CheckOutcome(
            NAME,
            CheckStatus.OK,
            "BIMI record declines to show a logo (empty l=).",
            details,
        )
    return CheckOutcome(NAME, CheckStatus.OK, f"BIMI logo at {logo}", details)


def gather(context: CheckContext, net: Net) -> Lookup:
    return net.resolver.lookup(f"default._bimi.{context.domain}", "TXT")


def verdict(context: CheckContext, txt: Lookup) -> CheckOutcome:
    return evaluate_bimi(context.domain, txt)


CHECK = Check(name=NAME, label="BIMI", order=90, gather=gather, verdict=verdict)
