"""One poll: every target on every zone of its kind, all questions at once through the
resolver's fan-out (bounded concurrency, one thread), then the TXT reasons of the listings.

No database here: values in, verdicts out. `services.organisation_poll` stores them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from blocklists.query import MAX_NAME, InvalidTarget, address_version, probe_name, target_label
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
    # Each target's label (reversed address, or the domain) and each zone's suffix once: a
    # poll is targets x zones names, and parsing an address costs more than asking about it.
    suffixes = {}
    for zone in zones:
        name, key = asked_zone(zone, dqs_key)
        suffixes[zone.name, zone.kind] = f"{key}.{name}" if key else name
    for target in targets:
        try:
            label = target_label(target.kind, target.value)
            ipv4 = target.kind is ZoneKind.IP and address_version(target.value) == 4
        except InvalidTarget as exc:
            label, ipv4, problem = "", False, str(exc)
        for zone in zones:
            if target.kind is not zone.kind or (
                zone.kind is ZoneKind.IP and not zone.ipv6 and not ipv4
            ):
                continue
            qname = f"{label}.{suffixes[zone.name, zone.kind]}" if label else ""
            if not label:
                results[len(pairs)] = Verdict.error(problem)
            elif len(qname) > MAX_NAME:
                results[len(pairs)] = Verdict.error(
                    f"{target.value} under {zone.name} makes a name longer than DNS allows."
                )
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
    for i in asked:
        zone = pairs[i][1]
        why = untrusted[zone.name, zone.kind]
        results[i] = Verdict.error(why) if why else read_answer(zone, a_answers[i])
    listed = [i for i in asked if results[i].status is ListingStatus.LISTED]
    txts = resolver.lookup_many(
        [(pairs[i][2], "TXT") for i in listed], concurrency=concurrency, cancelled=cancelled
    )
    txt_of = dict(zip(listed, txts, strict=True))
    for i in listed:  # read again with the list's reason
        results[i] = read_answer(pairs[i][1], a_answers[i], txt_of[i])
    return [PollResult(target, zone, results[i]) for i, (target, zone, _q) in enumerate(pairs)]
