"""One poll: every target on every zone of its kind, all questions at once through the
resolver's fan-out (bounded concurrency, one thread), then the TXT reasons of the listings.

No database here: values in, verdicts out. `services.organisation_poll` stores them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from blocklists.query import InvalidTarget, address_version, probe_name, query_name
from blocklists.verdict import ListingStatus, Verdict, probe_verdict, read_answer
from blocklists.zones import ZoneInfo, ZoneKind
from dns_records.lookups import Lookup
from dns_records.resolver import Resolver


@dataclass(frozen=True)
class PollTarget:
    kind: ZoneKind
    value: str


@dataclass(frozen=True)
class PollResult:
    """One target on one zone (`zone` is the configured zone, also when asked through DQS)."""

    target: PollTarget
    zone: ZoneInfo
    verdict: Verdict

    def as_dict(self) -> PollResultDict:
        return {
            "target": self.target.value,
            "zone": self.zone.name,
            "status": str(self.verdict.status),
            "code": self.verdict.code,
            "reason": self.verdict.reason or self.verdict.meaning,
        }


class PollResultDict(TypedDict):
    """The shape `poll_blacklists --json` prints, one per target and zone."""

    target: str
    zone: str
    status: str
    code: str
    reason: str


def applies(target: PollTarget, zone: ZoneInfo) -> bool:
    """Whether the zone lists this kind of target (an IPv4-only list is not asked about IPv6)."""
    if target.kind is not zone.kind:
        return False
    return zone.kind is ZoneKind.DOMAIN or zone.ipv6 or address_version(target.value) == 4


def asked_zone(zone: ZoneInfo, dqs_key: str) -> tuple[str, str]:
    """The zone the questions go to, and the key in their names: the DQS zone with a key."""
    if dqs_key and zone.dqs_zone:
        return zone.dqs_zone, dqs_key
    return zone.name, ""


def poll(
    targets: Sequence[PollTarget],
    zones: Sequence[ZoneInfo],
    *,
    resolver: Resolver,
    dqs_key: str = "",
    concurrency: int = 256,
    cancelled: threading.Event | None = None,
) -> list[PollResult]:
    """Every applicable (target, zone), in target then zone order."""
    pairs: list[tuple[PollTarget, ZoneInfo, str]] = []
    results: dict[int, Verdict] = {}
    for target in targets:
        for zone in zones:
            if not applies(target, zone):
                continue
            name, key = asked_zone(zone, dqs_key)
            try:
                qname = query_name(target.kind, target.value, name, dqs_key=key)
            except InvalidTarget as exc:
                results[len(pairs)] = Verdict.error(str(exc))
                qname = ""
            pairs.append((target, zone, qname))
    probes = {}
    for zone in zones:
        name, key = asked_zone(zone, dqs_key)
        probes[zone.name, zone.kind] = probe_name(zone.kind, name, dqs_key=key)
    asked = [i for i, (_t, _z, qname) in enumerate(pairs) if qname]
    probe_keys = list(probes)
    questions = [(pairs[i][2], "A") for i in asked] + [(probes[k], "A") for k in probe_keys]
    answers = resolver.lookup_many(questions, concurrency=concurrency, cancelled=cancelled)
    a_answers: dict[int, Lookup] = dict(zip(asked, answers[: len(asked)], strict=True))
    untrusted = {
        key: probe_verdict(next(z for z in zones if (z.name, z.kind) == key), answer)
        for key, answer in zip(probe_keys, answers[len(asked) :], strict=True)
    }
    listed = [
        i
        for i in asked
        if read_answer(pairs[i][1], a_answers[i]).status is ListingStatus.LISTED
        and not untrusted[pairs[i][1].name, pairs[i][1].kind]
    ]
    txts = resolver.lookup_many(
        [(pairs[i][2], "TXT") for i in listed], concurrency=concurrency, cancelled=cancelled
    )
    txt_of = dict(zip(listed, txts, strict=True))
    for i in asked:
        zone = pairs[i][1]
        why = untrusted[zone.name, zone.kind]
        if why:
            results[i] = Verdict.error(why)
        else:
            results[i] = read_answer(zone, a_answers[i], txt_of.get(i))
    return [PollResult(target, zone, results[i]) for i, (target, zone, _q) in enumerate(pairs)]
