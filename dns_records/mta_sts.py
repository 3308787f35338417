"""SMTP transport-security records: MTA-STS (RFC 8461) and TLS reporting (RFC 8460). Pure."""

from __future__ import annotations

import re
from typing import Any

from dns_records.models import CheckName, CheckStatus
from dns_records.resolver import Lookup
from dns_records.results import CheckOutcome

_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_TLSRPT_URI = re.compile(r"^(mailto:[^@\s]+@[^\s,!]+|https://[^\s,]+)$", re.IGNORECASE)


def _fields(text: str) -> dict[str, str]:
    result = {}
    for part in text.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            result[key.strip()] = value.strip()
    return result


def _records(lookup: Lookup, prefix: str) -> list[str]:
    return [r for r in lookup.records if r.startswith(prefix)] if lookup.ok else []


def evaluate_mta_sts(
    domain: str, txt: Lookup, policy_host: list[Lookup], suggestion: str
) -> CheckOutcome:
    name = f"_mta-sts.{domain}"
    details: dict[str, Any] = {"record_name": name}
    if txt.failed:
        return CheckOutcome(
            CheckName.MTA_STS, CheckStatus.ERROR, f"Could not look up {name}: {txt.reason}", details
        )
    records = _records(txt, "v=STSv1")
    if not records:
        details["suggested_record"] = {"name": name, "type": "TXT", "value": suggestion}
        return CheckOutcome(
            CheckName.MTA_STS, CheckStatus.WARNING,
            "No MTA-STS record: senders may deliver without TLS when an attacker strips STARTTLS.",
            details,
        )  # fmt: skip
    if len(records) > 1:
        return CheckOutcome(
            CheckName.MTA_STS,
            CheckStatus.FAIL,
            f"{len(records)} MTA-STS records: senders ignore them all.",
            details,
        )
    details["record"] = records[0]
    fields = _fields(records[0])
    if fields.get("v") != "STSv1" or not _STS_ID.match(fields.get("id", "")):
        return CheckOutcome(
            CheckName.MTA_STS,
            CheckStatus.FAIL,
            "MTA-STS record needs v=STSv1 and an id of 1 to 32 letters or digits.",
            details,
        )
    host = f"mta-sts.{domain}"
    details["policy_url"] = f"https://{host}/.well-known/mta-sts.txt"
    if any(lk.failed for lk in policy_host) and not any(lk.ok for lk in policy_host):
        return CheckOutcome(
            CheckName.MTA_STS,
            CheckStatus.ERROR,
            f"Could not resolve {host}: {policy_host[0].reason}",
            details,
        )
    if not any(lk.ok for lk in policy_host):
        return CheckOutcome(
            CheckName.MTA_STS,
            CheckStatus.FAIL,
            f"{host}, which must serve the policy, has no address.",
            details,
        )
    return CheckOutcome(
        CheckName.MTA_STS,
        CheckStatus.OK,
        f"MTA-STS record id={fields['id']}; policy host {host} resolves.",
        details,
    )


def evaluate_tls_rpt(domain: str, txt: Lookup, suggestion: str) -> CheckOutcome:
    name = f"_smtp._tls.{domain}"
    details: dict[str, Any] = {"record_name": name}
    if txt.failed:
        return CheckOutcome(
            CheckName.TLS_RPT, CheckStatus.ERROR, f"Could not look up {name}: {txt.reason}", details
        )
    records = _records(txt, "v=TLSRPTv1")
    if not records:
        details["suggested_record"] = {"name": name, "type": "TXT", "value": suggestion}
        return CheckOutcome(
            CheckName.TLS_RPT,
            CheckStatus.WARNING,
            "No TLS-RPT record: you hear nothing when senders fail to reach you over TLS.",
            details,
        )
    if len(records) > 1:
        return CheckOutcome(
            CheckName.TLS_RPT,
            CheckStatus.FAIL,
            f"{len(records)} TLS-RPT records: senders ignore them all.",
            details,
        )
    details["record"] = records[0]
    uris = [u.strip() for u in _fields(records[0]).get("rua", "").split(",") if u.strip()]
    bad = [u for u in uris if not _TLSRPT_URI.match(u)]
    if not uris or bad:
        return CheckOutcome(
            CheckName.TLS_RPT,
            CheckStatus.FAIL,
            "TLS-RPT record needs rua= with mailto: or https: addresses.",
            details,
        )
    details["rua"] = uris
    return CheckOutcome(
        CheckName.TLS_RPT, CheckStatus.OK, f"TLS reports go to {', '.join(uris)}", details
    )
