"""What a blocklist's answer means: listed, clean, or error, never two states. Pure.

- `listed`: the A lookup answered addresses in 127.0.0.0/8 that are not the list's own error
  codes; with the codes, their meaning on this list, and the TXT reason when the list gives one.
- `clean`: NXDOMAIN (or a name with no address: RFC 5782 lists with A records only).
- `error`: mailsec could not tell: a timeout, SERVFAIL or REFUSED, the list's error replies
  (Spamhaus 127.255.255.252/254/255, URIBL's and SURBL's 127.0.0.1), any answer outside
  127.0.0.0/8 (a resolver that rewrites NXDOMAIN to an advertising page, a lapsed list domain),
  or a list that lists its own RFC 5782 negative test point (so it lists everything).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from blocklists.zones import ZoneInfo
from dns_records.lookups import Lookup, LookupStatus

MAX_REASON = 500
LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")


class ListingStatus(StrEnum):
    LISTED = "listed"
    CLEAN = "clean"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    """One target on one list. `code`: the answers, comma-separated; `meaning`: what they mean
    on this list; `reason`: the list's TXT text when listed, why mailsec could not tell when error."""

    status: ListingStatus
    code: str = ""
    meaning: str = ""
    reason: str = ""

    @classmethod
    def error(cls, reason: str, code: str = "") -> Verdict:
        return cls(ListingStatus.ERROR, code=code, reason=printable(reason))


CLEAN = Verdict(ListingStatus.CLEAN)


def printable(text: str, limit: int = MAX_REASON) -> str:
    """Text from a stranger's DNS, as it may be stored and shown: no control characters, one line."""
    if text.isprintable():
        return text[:limit]
    cleaned = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    cleaned = cleaned.encode("utf-8", errors="replace").decode("utf-8")
    return cleaned[:limit]


def _is_answer_in_loopback(answer: str) -> bool:
    try:
        return ipaddress.IPv4Address(answer) in LOOPBACK_V4
    except ValueError:
        return False


def read_answer(zone: ZoneInfo, a: Lookup, txt: Lookup | None = None) -> Verdict:
    """The verdict of one A lookup (and, when listed, its TXT lookup) on `zone`."""
    if a.status is LookupStatus.ERROR:
        return Verdict.error(a.reason or "the lookup failed")
    if a.status in (LookupStatus.NXDOMAIN, LookupStatus.NODATA):
        return CLEAN
    answers = sorted(set(a.records), key=_sort_key)
    code = ", ".join(answers)
    outside = [answer for answer in answers if not _is_answer_in_loopback(answer)]
    if outside or not answers:
        return Verdict.error(
            f"the answer {code or '(empty)'} is outside 127.0.0.0/8, so it is no blocklist "
            "answer: a resolver rewriting NXDOMAIN, or a list domain that changed hands",
            code=code,
        )
    for answer in answers:
        why = zone.error_meaning(answer)
        if why is not None:
            return Verdict.error(why, code=code)
    meanings = [m for m in (zone.meaning(answer) for answer in answers) if m]
    reason = ""
    if txt is not None and txt.ok:
        reason = printable(" ".join(txt.records))
    return Verdict(
        ListingStatus.LISTED, code=code, meaning=printable("; ".join(meanings)), reason=reason
    )


def probe_verdict(zone: ZoneInfo, probe: Lookup) -> str:
    """Why none of the zone's answers may be trusted, or "" when its negative test point is absent
    as it must be (a failed probe says nothing: the real lookups carry their own errors)."""
    if read_answer(zone, probe).status is ListingStatus.LISTED:
        return (
            f"{zone.name} lists its RFC 5782 negative test point ({probe.name}), so it answers "
            "for everything; its answers are not read as listings"
        )
    return ""


def _sort_key(answer: str) -> tuple[int, str]:
    try:
        return int(ipaddress.ip_address(answer)), answer
    except ValueError:
        return -1, answer
