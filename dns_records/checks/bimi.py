"""BIMI record check (brand logo in mail clients): optional, so its absence is no fault. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import BimiAsset, Lookup, Net
from dns_records.results import CheckOutcome, Finding, outcome_from_findings
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


@dataclass(frozen=True)
class BimiLookups:
    txt: Lookup
    assets: list[BimiAsset] = field(default_factory=list)


def gather(context: CheckContext, net: Net) -> BimiLookups:
    txt = net.resolver.lookup(f"default._bimi.{context.domain}", "TXT")
    record = evaluate_bimi(context.domain, txt)
    if record.status is not CheckStatus.OK or not record.details.get("logo"):
        return BimiLookups(txt)
    details = record.details
    return BimiLookups(txt, net.inspect_bimi(context.domain, details["logo"], details["authority"]))


def verdict(context: CheckContext, found: BimiLookups) -> CheckOutcome:
    """The record's verdict, then what checking its logo and mark certificate found."""
    outcome = evaluate_bimi(context.domain, found.txt)
    if not found.assets:
        return outcome
    findings: list[Finding] = []
    for index, asset in enumerate(found.assets):
        what = "logo" if index == 0 else "mark certificate"  # gather fetches the logo first
        if asset.error:
            findings.append(
                Finding(
                    CheckStatus.ERROR, f"Could not fetch the BIMI {what} {asset.url}: {asset.error}"
                )
            )
        elif asset.fault:
            findings.append(Finding(CheckStatus.FAIL, f"BIMI {what} {asset.url}: {asset.fault}"))
        findings += [
            Finding(
                CheckStatus.FAIL, f"BIMI {what}: {problem.rstrip('.')}; receivers will not show it"
            )
            for problem in asset.problems
        ]
        findings += [
            Finding(CheckStatus.WARNING, f"BIMI {what}: {w.rstrip('.')}") for w in asset.warnings
        ]
    details = {
        **outcome.details,
        "assets": [
            {"url": a.url, "error": a.error, "fault": a.fault, "problems": list(a.problems),
             "warnings": list(a.warnings), **a.details}
            for a in found.assets
        ],
    }  # fmt: skip
    return outcome_from_findings(NAME, findings, outcome.summary, details)


CHECK = Check(name=NAME, label="BIMI", order=90, gather=gather, verdict=verdict)
