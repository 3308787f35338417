"""BIMI record check (brand logo in mail clients): optional, so its absence is no fault. Pure."""

from __future__ import annotations

from typing import Any

from dns_records.models import CheckName, CheckStatus
from dns_records.resolver import Lookup
from dns_records.results import CheckOutcome


def evaluate_bimi(domain: str, txt: Lookup) -> CheckOutcome:
    name = f"default._bimi.{domain}"
    details: dict[str, Any] = {"record_name": name}
    if txt.failed:
        return CheckOutcome(
            CheckName.BIMI, CheckStatus.ERROR, f"Could not look up {name}: {txt.reason}", details
        )
    records = [r for r in txt.records if r.startswith("v=BIMI1")] if txt.ok else []
    if not records:
        return CheckOutcome(
            CheckName.BIMI,
            CheckStatus.OK,
            "No BIMI record (optional: shows your logo in some mail clients).",
            details,
        )
    if len(records) > 1:
        return CheckOutcome(
            CheckName.BIMI,
            CheckStatus.FAIL,
            f"{len(records)} BIMI records: clients ignore them all.",
            details,
        )
    details["record"] = records[0]
    fields = {}
    for part in records[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            fields[key.strip().lower()] = value.strip()
    logo, authority = fields.get("l", ""), fields.get("a", "")
    details.update(logo=logo, authority=authority)
    if logo and not logo.lower().startswith("https://"):
        return CheckOutcome(
            CheckName.BIMI,
            CheckStatus.FAIL,
            "BIMI l= must be an https:// URL of an SVG logo.",
            details,
        )
    if authority and not authority.lower().startswith("https://"):
        return CheckOutcome(
            CheckName.BIMI,
            CheckStatus.FAIL,
            "BIMI a= must be an https:// URL of a mark certificate.",
            details,
        )
    if not logo:
        return CheckOutcome(
            CheckName.BIMI,
            CheckStatus.OK,
            "BIMI record declines to show a logo (empty l=).",
            details,
        )
    return CheckOutcome(CheckName.BIMI, CheckStatus.OK, f"BIMI logo at {logo}", details)
