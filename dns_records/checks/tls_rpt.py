"""TLS reporting check (RFC 8460): the `_smtp._tls` record and where reports go. Pure."""

from __future__ import annotations

import re

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import Lookup, Net
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus
from dns_records.txt_policy import one_policy_record

NAME = "tls_rpt"
_TLSRPT_URI = re.compile(r"^(mailto:[^@\s]+@[^\s,!]+|https://[^\s,]+)$", re.IGNORECASE)


def evaluate_tls_rpt(domain: str, txt: Lookup, suggestion: str) -> CheckOutcome:
    found = one_policy_record(
        NAME, txt, record_name=f"_smtp._tls.{domain}", version="v=TLSRPTv1",
        label="TLS-RPT", suggestion=suggestion,
        absent=(CheckStatus.WARNING, "No TLS-RPT record: you hear nothing when senders fail to reach you over TLS."),
    )  # fmt: skip
    if isinstance(found, CheckOutcome):
        return found
    uris = [u.strip() for u in found.tags.get("rua", "").split(",") if u.strip()]
    if not uris or not all(_TLSRPT_URI.match(u) for u in uris):
        return CheckOutcome(
            NAME, CheckStatus.FAIL,
            "TLS-RPT record needs rua= with mailto: or https: addresses.", found.details,
        )  # fmt: skip
    found.details["rua"] = uris
    return CheckOutcome(NAME, CheckStatus.OK, f"TLS reports go to {', '.join(uris)}", found.details)


def gather(context: CheckContext, net: Net) -> Lookup:
    return net.resolver.lookup(f"_smtp._tls.{context.domain}", "TXT")


def verdict(context: CheckContext, txt: Lookup) -> CheckOutcome:
    return evaluate_tls_rpt(
        context.domain, txt, suggestion=f"v=TLSRPTv1; rua=mailto:{context.report_address}"
    )


CHECK = Check(name=NAME, label="TLS reporting", order=70, gather=gather, verdict=verdict)
