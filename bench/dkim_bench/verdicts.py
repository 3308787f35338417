"""Verdicts: what each side says of each selector's record, and where they differ."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .fixtures import FixtureRecord

USABLE = "usable"
NOT_USABLE = "not usable"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """One side's word on one record: `status` is mailsec's check status or dkimpy's outcome."""

    label: str  # usable | not usable | unknown
    status: str
    reason: str


type Verdicts = dict[tuple[str, str], Verdict]  # (domain, selector) -> verdict


def mailsec_label(status: str) -> str:
    """ok and warning: the record serves the selector; fail: it does not; error: cannot tell."""
    if status == "error":
        return UNKNOWN
    return NOT_USABLE if status == "fail" else USABLE


@dataclass
class Comparison:
    """Both sides over every record: agreement, differences by design, and the rest."""

    total: int = 0
    agree: int = 0
    expected: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[dict[str, str]] = field(default_factory=list)
    # A side whose verdict is not the one its variant is built to get (even where both agree).
    off_intent: list[dict[str, str]] = field(default_factory=list)


def _row(record: FixtureRecord, ours: Verdict, theirs: Verdict) -> dict[str, str]:
    return {
        "domain": record.domain,
        "selector": record.selector,
        "variant": record.variant.name,
        "mailsec": f"{ours.status}: {ours.reason}",
        "dkimpy": f"{theirs.status}: {theirs.reason}",
    }


def compare(records: Sequence[FixtureRecord], mailsec: Verdicts, dkimpy: Verdicts) -> Comparison:
    comparison = Comparison()
    for record in records:
        ours, theirs = mailsec[record.key], dkimpy[record.key]
        variant = record.variant
        comparison.total += 1
        row = _row(record, ours, theirs)
        built = ours.status == variant.mailsec and (theirs.label == USABLE) == variant.dkimpy
        if not built:
            wanted = USABLE if variant.dkimpy else NOT_USABLE
            comparison.off_intent.append(
                {**row, "intended": f"mailsec {variant.mailsec}, dkimpy {wanted}"}
            )
        if ours.label == theirs.label:
            comparison.agree += 1
        elif built and variant.why:
            comparison.expected[variant.name].append({**row, "why": variant.why})
        else:
            comparison.unexpected.append(row)
    return comparison


def verdict_signature(records: Sequence[FixtureRecord], verdicts: Verdicts) -> tuple[str, ...]:
    """Every record's status, in order: equal across runs when nothing flaked."""
    return tuple(verdicts[record.key].status for record in records)


def by_variant(
    records: Sequence[FixtureRecord], mailsec: Verdicts, dkimpy: Verdicts
) -> dict[str, dict[str, Counter[str]]]:
    """Per variant, how often each side said what: mailsec by status, dkimpy by label."""
    table: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {"mailsec": Counter(), "dkimpy": Counter()}
    )
    for record in records:
        table[record.variant.name]["mailsec"][mailsec[record.key].status] += 1
        table[record.variant.name]["dkimpy"][dkimpy[record.key].label] += 1
    return table
