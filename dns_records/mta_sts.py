"""SMTP transport-security records: MTA-STS (RFC 8461) and TLS reporting (RFC 8460). Pure."""

from __future__ import annotations

import re

from dns_records.models import CheckName, CheckStatus
from dns_records.resolver import Lookup
from dns_records.results import CheckOutcome
from dns_records.txt_policy import one_policy_record

_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_TLSRPT_URI = re.compile(r"^(mailto:[^@\s]+@[^\s,!]+|https://[^\s,]+)$", re.IGNORECASE)


def evaluate_mta_sts(
    domain: str, txt: Lookup, policy_host: list[Lookup], suggestion: str
) -> CheckOutcome:
    found = one_policy_record(
        CheckName.MTA_STS, txt, record_name=f"_mta-sts.{domain}", version="v=STSv1",
        label="MTA-STS", suggestion=suggestion,
        absent=(CheckStatus.WARNING, "No MTA-STS record: senders may deliver without TLS when an attacker strips STARTTLS."),
    )  # fmt: skip
    if isinstance(found, CheckOutcome):
        return found
    details = found.details
    if found.tags.get("v") != "STSv1" or not _STS_ID.match(found.tags.get("id", "")):
        return CheckOutcome(
            CheckName.MTA_STS, CheckStatus.FAIL,
            "MTA-STS record needs v=STSv1 and an id of 1 to 32 letters or digits.", details,
        )  # fmt: skip
    host = f"mta-sts.{domain}"
    details["policy_url"] = f"https://{host}/.well-known/mta-sts.txt"
    if any(lk.failed for lk in policy_host) and not any(lk.ok for lk in policy_host):
        return CheckOutcome(
            CheckName.MTA_STS, CheckStatus.ERROR,
            f"Could not resolve {host}: {policy_host[0].reason}", details,
        )  # fmt: skip
    if not any(lk.ok for lk in policy_host):
        return CheckOutcome(
            CheckName.MTA_STS, CheckStatus.FAIL,
            f"{host}, which must serve the policy, has no address.", details,
        )  # fmt: skip
    return CheckOutcome(
        CheckName.MTA_STS, CheckStatus.OK,
        f"MTA-STS record id={found.tags['id']}; policy host {host} resolves.", details,
    )  # fmt: skip


def evaluate_tls_rpt(domain: str, txt: Lookup, suggestion: str) -> CheckOutcome:
    found = one_policy_record(
        CheckName.TLS_RPT, txt, record_name=f"_smtp._tls.{domain}", version="v=TLSRPTv1",
        label="TLS-RPT", suggestion=suggestion,
        absent=(CheckStatus.WARNING, "No TLS-RPT record: you hear nothing when senders fail to reach you over TLS."),
    )  # fmt: skip
    if isinstance(found, CheckOutcome):
        return found
    uris = [u.strip() for u in found.tags.get("rua", "").split(",") if u.strip()]
    if not uris or not all(_TLSRPT_URI.match(u) for u in uris):
        return CheckOutcome(
            CheckName.TLS_RPT, CheckStatus.FAIL,
            "TLS-RPT record needs rua= with mailto: or https: addresses.", found.details,
        )  # fmt: skip
    found.details["rua"] = uris
    return CheckOutcome(
        CheckName.TLS_RPT, CheckStatus.OK, f"TLS reports go to {', '.join(uris)}", found.details
    )
