"""The DMARC policy advisor: is it safe to tighten the policy, and what exactly to publish. Pure.

Input is plain data: each source's message counts over the last 30 days (from the rollups), and
the domain's current DMARC record (the DMARC check's text, else the policy receivers reported).
The advisor walks one step at a time, none -> quarantine -> reject, ramping `pct` where the
domain already uses it, and takes a step only while the legitimate mail that would fail stays
under a threshold. It never advises a weaker record than the current one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dns_records.checks.dmarc import DmarcSyntaxError, parse_dmarc
from reports.classify import Classification, SourceClass, SourceCounts, classify

# At most this share of legitimate mail may fail DMARC for the next step to be advised.
QUARANTINE_MAX_FAILING = 0.02
REJECT_MAX_FAILING = 0.005
# Fewer messages than this in the window: too little to judge.
MIN_MESSAGES = 100
# pct values walked through, one step at a time, by a domain that uses pct.
PCT_RAMP = (10, 25, 50, 100)
FIX_FIRST_LIMIT = 10

_STRENGTH = {"none": 0, "quarantine": 1, "reject": 2}


class Step(StrEnum):
    COLLECT = "collect"  # too little data yet
    PUBLISH = "publish"  # no DMARC record known: publish one in monitoring mode
    FIX = "fix"  # legitimate mail fails too often: fix the sources first, keep the record
    QUARANTINE = "quarantine"
    RAMP = "ramp"  # raise pct within the current policy
    REJECT = "reject"
    DONE = "done"  # p=reject on all mail: nothing stronger to publish


@dataclass(frozen=True, slots=True)
class SourceVolume:
    """One sending address and its counts over the window."""

    ip: str
    counts: SourceCounts
    name: str = ""


@dataclass(frozen=True, slots=True)
class SourceToFix:
    ip: str
    name: str
    kind: SourceClass
    messages: int
    failing: int
    explanation: str
    action: str


@dataclass(frozen=True)
class Advice:
    domain: str
    step: Step
    summary: str
    current_record: str
    current_policy: str  # none|quarantine|reject, "" when no record is known
    current_pct: int
    next_record: str  # "" when nothing should be published now
    messages: int
    legitimate_messages: int
    legitimate_failing: int
    spoofing_messages: int
    fail_share_quarantine: float  # of legitimate mail, under the next (or current) quarantine
    fail_share_reject: float  # of legitimate mail, under p=reject on all mail
    fix_first: list[SourceToFix] = field(default_factory=list)
    review: list[SourceToFix] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failing_share(self) -> float:
        if not self.legitimate_messages:
            return 0.0
        return self.legitimate_failing / self.legitimate_messages


def current_tags(
    record: str | None, published: Mapping[str, str | int | None] | None = None
) -> tuple[dict[str, str], str]:
    """The tags of the record to build on, and the record text they came from.

    A valid record from the DMARC check wins; otherwise the policy receivers reported
    (`published`: p, sp, np, pct, adkim, aspf, fo as reports carry them), which lacks rua.
    """
    if record:
        try:
            parsed = parse_dmarc(record.strip())
        except DmarcSyntaxError:
            pass
        else:
            return dict(parsed.tags), record.strip()
    if published and str(published.get("p") or "").lower() in _STRENGTH:
        tags = {"v": "DMARC1"}
        for key in ("p", "sp", "np", "pct", "adkim", "aspf", "fo"):
            value = published.get(key)
            if value not in (None, ""):
                tags[key] = str(value).lower()
        return tags, ""
    return {}, ""


def render_record(tags: Mapping[str, str]) -> str:
    """The TXT value, v and p first, the other tags in their original order."""
    order = ["v", "p", *[k for k in tags if k not in {"v", "p"}]]
    return "; ".join(f"{key}={tags[key]}" for key in order if key in tags)


def _pct(tags: Mapping[str, str]) -> int:
    value = tags.get("pct", "100")
    return int(value) if value.isdigit() else 100


def _next_pct(current: int) -> int:
    return next((p for p in PCT_RAMP if p > current), 100)


def _fix_action(kind: SourceClass, classification: Classification) -> str:
    if kind is SourceClass.OWN:
        return (
            "Make all of its mail pass aligned: sign with the domain's DKIM key and send from an "
            "envelope domain whose SPF lists it"
        )
    if kind is SourceClass.FORWARDER:
        return (
            "Ask the forwarder to keep messages unmodified (so your DKIM signature survives) or "
            "to use ARC; receivers that trust it deliver such mail despite the policy"
        )
    return (
        "If this is a service you use, set it up to sign with your DKIM key or use an aligned "
        "envelope domain; if not, it is abuse the policy will stop"
    )


def _pct_word(pct: int) -> str:
    return "" if pct >= 100 else f" (pct={pct})"


def advise(
    domain: str,
    sources: Sequence[SourceVolume],
    *,
    record: str | None = None,
    published: Mapping[str, str | int | None] | None = None,
    quarantine_max: float = QUARANTINE_MAX_FAILING,
    reject_max: float = REJECT_MAX_FAILING,
    min_messages: int = MIN_MESSAGES,
) -> Advice:
    """The next step for the domain's DMARC policy, from its sources over the window."""
    tags, record_text = current_tags(record, published)
    policy = tags.get("p", "")
    pct = _pct(tags)

    messages = legitimate = legitimate_failing = spoofing = 0
    fix: list[SourceToFix] = []
    review: list[SourceToFix] = []
    for source in sources:
        counts = source.counts
        classification = classify(counts)
        kind = classification.kind
        messages += counts.messages
        if kind.legitimate:
            legitimate += counts.messages
            legitimate_failing += counts.dmarc_fail
        elif kind is SourceClass.SPOOFING:
            spoofing += counts.messages
        if (kind.legitimate and counts.dmarc_fail) or kind is SourceClass.UNAUTHORISED:
            item = SourceToFix(
                ip=source.ip,
                name=source.name,
                kind=kind,
                messages=counts.messages,
                failing=counts.dmarc_fail,
                explanation=classification.explanation,
                action=_fix_action(kind, classification),
            )
            (fix if kind.legitimate else review).append(item)
    fix.sort(key=lambda s: (-s.failing, -s.messages, s.ip))
    review.sort(key=lambda s: (-s.messages, s.ip))
    share = legitimate_failing / legitimate if legitimate else 0.0

    def result(
        step: Step, summary: str, next_tags: dict[str, str] | None, notes: list[str]
    ) -> Advice:
        quarantine_pct = pct if policy == "quarantine" else 100
        if next_tags is not None and next_tags.get("p") == "quarantine":
            quarantine_pct = _pct(next_tags)
        return Advice(
            domain=domain,
            step=step,
            summary=summary,
            current_record=record_text or (render_record(tags) if tags else ""),
            current_policy=policy,
            current_pct=pct,
            next_record=render_record(next_tags) if next_tags is not None else "",
            messages=messages,
            legitimate_messages=legitimate,
            legitimate_failing=legitimate_failing,
            spoofing_messages=spoofing,
            fail_share_quarantine=share * quarantine_pct / 100,
            fail_share_reject=share,
            fix_first=fix[:FIX_FIRST_LIMIT],
            review=review[:FIX_FIRST_LIMIT],
            notes=notes,
        )

    notes: list[str] = []
    if record and not record_text:
        notes.append(
            "The published record is not valid DMARC (receivers ignore it); see the DMARC check."
        )
    if tags and not record_text:
        notes.append(
            "Built from the policy receivers reported: keep your record's rua= and other tags "
            "that reports do not carry."
        )
    if policy == "reject" and pct >= 100:
        return result(
            Step.DONE,
            "The domain already publishes p=reject for all mail: nothing stronger to publish.",
            None,
            notes,
        )
    if not tags:
        monitor = {"v": "DMARC1", "p": "none"}
        return result(
            Step.PUBLISH,
            "No DMARC record is known: publish one in monitoring mode (p=none) and add a rua= "
            "address so receivers send reports.",
            monitor,
            notes,
        )
    if messages < min_messages:
        return result(
            Step.COLLECT,
            f"Only {messages} messages reported in the window: wait for at least {min_messages} "
            "before changing the policy.",
            None,
            notes,
        )
    percent = f"{100 * share:.2f}%"
    next_tags = dict(tags)
    uses_pct = pct < 100
    if policy == "none":
        if share > quarantine_max:
            return result(
                Step.FIX,
                f"{percent} of legitimate mail fails DMARC: fix the sources below until it is "
                f"under {100 * quarantine_max:g}% before moving to quarantine.",
                None,
                notes,
            )
        next_tags["p"] = "quarantine"
        if uses_pct:
            next_tags["pct"] = str(PCT_RAMP[0])
        return result(
            Step.QUARANTINE,
            f"{percent} of legitimate mail fails DMARC: move to p=quarantine"
            f"{_pct_word(_pct(next_tags))}.",
            next_tags,
            notes,
        )
    if policy == "quarantine" and uses_pct:
        if share > quarantine_max:
            return result(
                Step.FIX,
                f"{percent} of legitimate mail fails DMARC: fix the sources below before raising "
                f"pct (keep the current record).",
                None,
                notes,
            )
        next_tags["pct"] = str(_next_pct(pct))
        return result(
            Step.RAMP,
            f"{percent} of legitimate mail fails DMARC: raise quarantine to pct={next_tags['pct']}.",
            next_tags,
            notes,
        )
    # p=quarantine on all mail, or p=reject on part of it: reject needs the stricter threshold.
    if share > reject_max:
        return result(
            Step.FIX,
            f"{percent} of legitimate mail fails DMARC: fix the sources below until it is under "
            f"{100 * reject_max:g}% before moving to reject (keep the current record).",
            None,
            notes,
        )
    next_tags["p"] = "reject"
    if policy == "reject":
        next_tags["pct"] = str(_next_pct(pct))
        step = Step.RAMP
    else:
        step = Step.REJECT
    return result(
        step,
        f"{percent} of legitimate mail fails DMARC: move to p=reject{_pct_word(_pct(next_tags))}.",
        next_tags,
        notes,
    )
