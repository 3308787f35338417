"""Which kind of sender a source address is, the way admins think of it. Pure.

A source is judged on all its messages in a period (a report's record, or a source's daily
rollups summed), from what DMARC already measured:

- own: one of the domain's hosts or authorised senders. Most of its mail passes aligned SPF
  (the address is in the domain's SPF record), or passes aligned DKIM while SPF passes for its
  own envelope domain (a mail service signing with the domain's key);
- forwarder: a server passing mail on. The domain's DKIM signature survived but SPF fails (the
  forwarder is not in the domain's SPF), or only another domain's signature passes (a mailing
  list that re-signs), or the receiver applied a `forwarded`/`mailing_list` override;
- unauthorised: DMARC fails, but SPF passes for the sender's own envelope domain: a service
  sending as the domain without being set up for it (yours to align, or someone else's abuse);
- spoofing: nothing passes at all: mail forged in the domain's name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class SourceClass(StrEnum):
    OWN = "own"
    FORWARDER = "forwarder"
    UNAUTHORISED = "unauthorised"
    SPOOFING = "spoofing"

    @property
    def label(self) -> str:
        return CLASS_LABELS[self]

    @property
    def legitimate(self) -> bool:
        """Mail the domain's owner wants delivered: its own and what forwarders pass on."""
        return self in {SourceClass.OWN, SourceClass.FORWARDER}


CLASS_LABELS = {
    SourceClass.OWN: "Own / authorised",
    SourceClass.FORWARDER: "Forwarder",
    SourceClass.UNAUTHORISED: "Unauthorised",
    SourceClass.SPOOFING: "Spoofing",
}

# Policy override types (RFC 7489 section 6.6.2 reasons) that say a receiver saw forwarding.
FORWARDING_OVERRIDES = frozenset({"forwarded", "mailing_list", "trusted_forwarder"})


@dataclass(frozen=True, slots=True)
class SourceCounts:
    """How a source's messages fared. Every field counts messages, not records or rows.

    `dkim_pass` and `spf_pass` count messages where any DKIM signature (or SPF) passed, aligned
    or not; `forwarded` those a receiver marked with a forwarding override.
    """

    messages: int
    dmarc_pass: int = 0
    spf_aligned_pass: int = 0
    dkim_aligned_pass: int = 0
    spf_pass: int = 0
    dkim_pass: int = 0
    forwarded: int = 0

    @property
    def dmarc_fail(self) -> int:
        return max(self.messages - self.dmarc_pass, 0)

    def __add__(self, other: SourceCounts) -> SourceCounts:
        return SourceCounts(
            messages=self.messages + other.messages,
            dmarc_pass=self.dmarc_pass + other.dmarc_pass,
            spf_aligned_pass=self.spf_aligned_pass + other.spf_aligned_pass,
            dkim_aligned_pass=self.dkim_aligned_pass + other.dkim_aligned_pass,
            spf_pass=self.spf_pass + other.spf_pass,
            dkim_pass=self.dkim_pass + other.dkim_pass,
            forwarded=self.forwarded + other.forwarded,
        )


@dataclass(frozen=True, slots=True)
class Classification:
    kind: SourceClass
    explanation: str

    @property
    def label(self) -> str:
        return self.kind.label


def record_counts(
    *,
    count: int,
    dkim_aligned: str,
    spf_aligned: str,
    dkim_results: Iterable[str] = (),
    spf_results: Iterable[str] = (),
    override_types: Iterable[str] = (),
) -> SourceCounts:
    """The counts of one report record: `count` messages, all judged the same way."""
    dkim_aligned_pass = dkim_aligned.lower() == "pass"
    spf_aligned_pass = spf_aligned.lower() == "pass"
    dkim_pass = dkim_aligned_pass or any(r.lower() == "pass" for r in dkim_results)
    spf_pass = spf_aligned_pass or any(r.lower() == "pass" for r in spf_results)
    forwarded = any(t.lower() in FORWARDING_OVERRIDES for t in override_types)
    return SourceCounts(
        messages=count,
        dmarc_pass=count if (dkim_aligned_pass or spf_aligned_pass) else 0,
        spf_aligned_pass=count if spf_aligned_pass else 0,
        dkim_aligned_pass=count if dkim_aligned_pass else 0,
        spf_pass=count if spf_pass else 0,
        dkim_pass=count if dkim_pass else 0,
        forwarded=count if forwarded else 0,
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


def classify(counts: SourceCounts) -> Classification:
    """The class that describes most of the source's mail, and why, in one sentence."""
    total = counts.messages
    if total <= 0:
        return Classification(SourceClass.SPOOFING, "No messages reported.")

    def most(part: int) -> bool:
        return 2 * part >= total

    failing = counts.dmarc_fail
    tail = f"; {_share(failing, total)} of its mail fails DMARC" if failing else ""
    if most(counts.forwarded):
        return Classification(
            SourceClass.FORWARDER,
            f"Receivers marked {_share(counts.forwarded, total)} of its mail as forwarded or "
            "from a mailing list",
        )
    if most(counts.spf_aligned_pass):
        return Classification(
            SourceClass.OWN,
            f"In the domain's SPF record: {_share(counts.spf_aligned_pass, total)} of its mail "
            f"passes aligned SPF{tail}",
        )
    if most(counts.dkim_aligned_pass):
        if most(counts.spf_pass):
            return Classification(
                SourceClass.OWN,
                f"Signs with the domain's DKIM key ({_share(counts.dkim_aligned_pass, total)} "
                f"aligned DKIM pass) and passes SPF for its own envelope domain{tail}",
            )
        return Classification(
            SourceClass.FORWARDER,
            "The domain's DKIM signature survives but SPF fails: mail passed on by a "
            f"forwarder ({_share(counts.dkim_aligned_pass, total)} aligned DKIM pass){tail}",
        )
    if most(counts.dkim_pass):
        return Classification(
            SourceClass.FORWARDER,
            "Only another domain's DKIM signature passes and SPF is not aligned: typically a "
            f"mailing list that re-signs{tail}",
        )
    if most(counts.spf_pass):
        return Classification(
            SourceClass.UNAUTHORISED,
            "Passes SPF for its own envelope domain but neither SPF nor DKIM aligns with the "
            f"domain: a service not set up to send as it{tail}",
        )
    return Classification(
        SourceClass.SPOOFING,
        f"Neither SPF nor DKIM passes: mail forged in the domain's name{tail}",
    )
