"""Verdicts: what each tool says of SPF and DMARC, and where the two, or two mailsec runs, differ."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .fixtures import FixtureDomain
from .mailsec_side import ONLY

if TYPE_CHECKING:
    from dns_records.results import CheckOutcome


@dataclass(frozen=True)
class Verdict:
    valid: bool  # a receiver can use the record (no permerror, no missing/ignored record)
    clean: bool  # and the tool reports no problem at all
    reason: str  # one line: what the tool said

    @property
    def label(self) -> str:
        return "ok" if self.clean else ("problems" if self.valid else "invalid")


# mailsec fails these SPF records on policy although receivers can evaluate them.
SPF_POLICY_FAILS = ("SPF ends in +all", "SPF ends in ?all", "SPF has no 'all' term")


def mailsec_verdict(outcome: CheckOutcome) -> Verdict:
    status = str(outcome.status)
    reason = f"{status}: {outcome.summary}"
    if status == "error":
        return Verdict(valid=False, clean=False, reason=reason)
    if outcome.name == "spf" and status == "fail":
        fails = [
            str(f["message"])
            for f in outcome.details.get("findings", [])
            if f.get("status") == "fail"
        ]
        policy_only = bool(fails) and all(m.startswith(SPF_POLICY_FAILS) for m in fails)
        return Verdict(valid=policy_only, clean=False, reason=reason)
    return Verdict(valid=status != "fail", clean=status == "ok", reason=reason)


def checkdmarc_verdict(result: dict[str, Any]) -> Verdict:
    valid = bool(result.get("valid"))
    problems = [str(w) for w in result.get("warnings") or []]
    if not valid:
        reason = f"invalid: {result.get('error', '')}"
    elif problems:
        reason = f"warning: {problems[0]}" + (
            f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        )
    else:
        reason = "ok"
    return Verdict(valid=valid, clean=valid and not problems, reason=" ".join(reason.split()))


# (variant, check, level) -> why the two tools differ there by design. level: valid | clean.
EXPECTED_DIFFERENCES: dict[tuple[str, str, str], str] = {
    ("softfail", "spf", "clean"): "mailsec warns that ~all only softfails; checkdmarc accepts it",
    ("plus_all", "spf", "clean"): (
        "mailsec fails +all (it authorises every sender); checkdmarc reports nothing"
    ),
    ("mx_without_address", "spf", "clean"): (
        "checkdmarc's SPF check warns that an MX host behind `mx` has no address; "
        "mailsec reports that host in its MX check, not under SPF"
    ),
}


@dataclass
class Comparison:
    agree: Counter[str] = field(default_factory=Counter)  # "spf valid", "dmarc clean", ...
    total: Counter[str] = field(default_factory=Counter)
    expected: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[dict[str, str]] = field(default_factory=list)


def compare(
    domains: Sequence[FixtureDomain],
    mailsec: dict[str, dict[str, CheckOutcome]],
    other: dict[str, dict[str, Any]],
) -> Comparison:
    comparison = Comparison()
    for fixture in domains:
        for check in ("spf", "dmarc"):
            ours = mailsec_verdict(mailsec[fixture.name][check])
            theirs = checkdmarc_verdict(other[fixture.name][check])
            for level in ("valid", "clean"):
                key = f"{check} {level}"
                comparison.total[key] += 1
                if getattr(ours, level) == getattr(theirs, level):
                    comparison.agree[key] += 1
                    continue
                row = {
                    "domain": fixture.name,
                    "variant": fixture.variant,
                    "check": check,
                    "level": level,
                    "mailsec": ours.label,
                    "checkdmarc": theirs.label,
                    "mailsec_reason": ours.reason,
                    "checkdmarc_reason": theirs.reason,
                }
                why = EXPECTED_DIFFERENCES.get((fixture.variant, check, level))
                if why is None:
                    comparison.unexpected.append(row)
                else:
                    comparison.expected[f"{fixture.variant} / {check} {level}"].append(
                        {**row, "why": why}
                    )
    return comparison


def compare_mailsec(
    domains: Sequence[FixtureDomain],
    reference: dict[str, dict[str, CheckOutcome]],
    other: dict[str, dict[str, CheckOutcome]],
) -> list[dict[str, str]]:
    """Where two mailsec runs differ: a domain missing, or any check's outcome (status,
    summary, details with every finding). Equal outcomes give equal SPF and DMARC verdicts."""
    differences: list[dict[str, str]] = []
    for fixture in domains:
        ours, theirs = reference.get(fixture.name), other.get(fixture.name)
        if ours is None or theirs is None:
            differences.append(
                {
                    "domain": fixture.name,
                    "variant": fixture.variant,
                    "check": "*",
                    "single_process": "present" if ours else "missing",
                    "worker_node": "present" if theirs else "missing",
                }
            )
            continue
        for check in sorted(ONLY):
            a, b = ours[check], theirs[check]
            if a != b:
                differences.append(
                    {
                        "domain": fixture.name,
                        "variant": fixture.variant,
                        "check": check,
                        "single_process": f"{a.status}: {a.summary}",
                        "worker_node": f"{b.status}: {b.summary}",
                    }
                )
    return differences


def verdict_signature(
    domains: Sequence[FixtureDomain],
    results: dict[str, dict[str, Any]],
    judge: Callable[..., Verdict],
) -> list[tuple[str, str, str]]:
    """Each domain's SPF and DMARC labels: equal across runs when nothing flaked."""
    return [
        (d.name, judge(results[d.name]["spf"]).label, judge(results[d.name]["dmarc"]).label)
        for d in domains
    ]
