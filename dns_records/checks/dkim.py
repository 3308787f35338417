"""DKIM key records (RFC 6376 3.6, RFC 8463): every key the domain depends on, published right.

The keys come from the context: those mailsec holds (pending, published, active, retiring,
retired), each with the exact value it should publish, and selectors other senders sign with
("external"), whose records are only read. Pure: the lookups are made by `gather`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from dns_records.checks.base import Check, CheckContext, DkimExpectation
from dns_records.dkim import (
    DkimRecord,
    DkimRecordError,
    parse_dkim_record,
    public_keys_equal,
    record_name,
)
from dns_records.lookups import Lookup, Net
from dns_records.results import CheckOutcome, Finding, outcome_from_findings, worst
from dns_records.status import CheckStatus

NAME = "dkim"
EXTERNAL = "external"
PENDING = "pending"
RETIRED = "retired"
WEAK_RSA_BITS = 1024  # below: receivers refuse the key (RFC 8301 3.2); at it: breakable


class KeyRow(TypedDict):
    """One selector's line in `details["keys"]`: what the UI's table shows."""

    selector: str
    state: str
    algorithm: str
    record_name: str
    status: str
    message: str
    bits: int | None


class SuggestedRecord(TypedDict):
    name: str
    type: str
    value: str


@dataclass(frozen=True)
class DkimLookups:
    """The TXT lookup at each expected key's name, in the context's order.

    `node` is the `_domainkey.<domain>` lookup made when no key is expected: it tells a
    domain whose DNS answers from one that mailsec cannot reach.
    """

    keys: tuple[tuple[DkimExpectation, Lookup], ...] = ()
    node: Lookup | None = None
    node_name: str = ""


@dataclass
class _Row:
    expectation: DkimExpectation
    name: str
    status: CheckStatus = CheckStatus.OK
    message: str = ""
    algorithm: str = ""
    bits: int | None = None
    suggest: bool = False
    findings: list[Finding] = field(default_factory=list)

    def flag(self, status: CheckStatus, message: str) -> None:
        self.findings.append(Finding(status, message))


def gather(context: CheckContext, net: Net) -> DkimLookups:
    if not context.dkim:
        name = f"_domainkey.{context.domain}"
        return DkimLookups(node=net.resolver.lookup(name, "TXT"), node_name=name)
    return DkimLookups(
        keys=tuple(
            (e, net.resolver.lookup(record_name(e.selector, context.domain), "TXT"))
            for e in context.dkim
        )
    )


def _expected(expectation: DkimExpectation) -> DkimRecord | None:
    try:
        return parse_dkim_record(expectation.value) if expectation.value else None
    except DkimRecordError:
        return None


def _published(row: _Row, lookup: Lookup) -> DkimRecord | None:
    """The one record at the name, parsed; None (with the row's finding) when there is none."""
    e, name = row.expectation, row.name
    if lookup.failed:
        row.flag(CheckStatus.ERROR, f"Could not look up {name}: {lookup.reason}")
        return None
    records = list(lookup.records) if lookup.ok else []
    if len(records) > 1:
        row.flag(
            CheckStatus.FAIL,
            f"{len(records)} TXT records at {name}: receivers may verify with any of them "
            "(RFC 6376 3.6.2.2), publish one.",
        )
        row.suggest = e.state != EXTERNAL
        return None
    if not records:
        if e.state == EXTERNAL:
            row.flag(
                CheckStatus.FAIL,
                f"No DKIM record at {name}: mail signed with selector {e.selector} fails DKIM.",
            )
        elif e.state == PENDING:
            row.flag(
                CheckStatus.WARNING, f"Key {e.selector} is waiting for {name} to be published."
            )
            row.suggest = True
        elif e.state == RETIRED:
            row.message = "Retired; its record is removed."
        else:
            row.flag(
                CheckStatus.FAIL,
                f"No DKIM record at {name}, but key {e.selector} is {e.state}: "
                "mail signed with it fails DKIM.",
            )
            row.suggest = True
        return None
    try:
        return parse_dkim_record(records[0])
    except DkimRecordError as exc:
        row.flag(CheckStatus.FAIL, f"{name} is not a usable DKIM record: {exc}.")
        row.suggest = e.state != EXTERNAL
        return None


def _judge_managed(row: _Row, found: DkimRecord) -> None:
    e, name = row.expectation, row.name
    expected = _expected(e)
    if found.revoked:
        if e.state != RETIRED:
            row.flag(
                CheckStatus.FAIL,
                f"{name} revokes the key (empty p=), but key {e.selector} is {e.state}: "
                "mail signed with it fails DKIM.",
            )
            row.suggest = True
        else:
            row.message = "Retired and revoked in DNS."
        return
    if e.state == RETIRED:
        row.message = "Retired; its record is still published and may be removed."
        return
    if expected is not None and not public_keys_equal(found.public_b64, expected.public_b64):
        row.flag(
            CheckStatus.FAIL,
            f"The key published at {name} differs from the one mailsec stores for "
            f"{e.selector}: mail signed with it fails DKIM.",
        )
        row.suggest = True
        return
    if expected is not None and found.key_type != expected.key_type:
        row.flag(
            CheckStatus.FAIL,
            f"{name} says k={found.key_type}, but the key is {expected.key_type}: "
            "receivers cannot use it.",
        )
        row.suggest = True
        return
    if found.testing and e.state == "active":
        row.flag(
            CheckStatus.WARNING,
            f"{name} has t=y (testing): receivers may treat mail failing DKIM as unsigned.",
        )
        return
    row.message = "Published as stored."


def _judge_external(row: _Row, found: DkimRecord) -> None:
    e, name = row.expectation, row.name
    if found.revoked:
        row.flag(
            CheckStatus.WARNING,
            f"{name} is revoked (empty p=): the sender retired selector {e.selector}; "
            "stop watching it.",
        )
        return
    bits = found.rsa_bits()
    if bits is not None and bits < WEAK_RSA_BITS:
        row.flag(
            CheckStatus.FAIL,
            f"{name} is a {bits}-bit RSA key: receivers refuse keys under {WEAK_RSA_BITS} bits.",
        )
    elif bits == WEAK_RSA_BITS:
        row.flag(
            CheckStatus.WARNING,
            f"{name} is a 1024-bit RSA key: ask the sender for a 2048-bit one.",
        )
    elif found.testing:
        row.flag(
            CheckStatus.WARNING,
            f"{name} has t=y (testing): receivers may treat mail failing DKIM as unsigned.",
        )
    else:
        row.message = "Published."


def _evaluate(context: CheckContext, e: DkimExpectation, lookup: Lookup) -> _Row:
    row = _Row(e, record_name(e.selector, context.domain), algorithm=e.algorithm)
    found = _published(row, lookup)
    if found is not None:
        row.algorithm = row.algorithm or found.key_type
        row.bits = found.rsa_bits()
        if e.state == EXTERNAL:
            _judge_external(row, found)
        else:
            _judge_managed(row, found)
    if e.state == PENDING:
        row.suggest = True
    if row.findings:
        row.status = worst([f.status for f in row.findings])
        row.message = next(f.message for f in row.findings if f.status is row.status)
    return row


def verdict(context: CheckContext, lookups: DkimLookups) -> CheckOutcome:
    if not lookups.keys:
        return _no_keys(lookups)
    rows = [_evaluate(context, e, lookup) for e, lookup in lookups.keys]
    keys: list[KeyRow] = [
        {
            "selector": r.expectation.selector,
            "state": r.expectation.state,
            "algorithm": r.algorithm,
            "record_name": r.name,
            "status": str(r.status),
            "message": r.message,
            "bits": r.bits,
        }
        for r in rows
    ]
    suggested: list[SuggestedRecord] = [
        {"name": r.name, "type": "TXT", "value": r.expectation.value}
        for r in rows
        if r.suggest and r.expectation.value
    ]
    details: dict[str, Any] = {"keys": keys, "suggested_records": suggested}
    if suggested:
        details["suggested_record"] = dict(suggested[0])
    findings = [f for r in rows for f in r.findings]
    live = [r.expectation for r in rows if r.expectation.state != RETIRED]
    if not live:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                "No DKIM key in use: every key mailsec holds is retired. Generate a key, or add "
                "the selectors your senders use.",
            )
        )
    summary = "DKIM records published: " + ", ".join(f"{e.selector} ({e.state})" for e in live)
    return outcome_from_findings(NAME, findings, summary, details)


def _no_keys(lookups: DkimLookups) -> CheckOutcome:
    details: dict[str, Any] = {"keys": [], "suggested_records": []}
    node = lookups.node
    if node is not None and node.failed:
        return CheckOutcome(
            NAME,
            CheckStatus.ERROR,
            f"Could not look up {lookups.node_name}: {node.reason}",
            details,
        )
    finding = Finding(
        CheckStatus.WARNING,
        "No DKIM key managed or selector watched: generate a key, or add the selectors your "
        "senders use.",
    )
    return outcome_from_findings(NAME, [finding], "", details)


CHECK = Check(name=NAME, label="DKIM", order=35, gather=gather, verdict=verdict)
