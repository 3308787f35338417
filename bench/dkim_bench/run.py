"""The timed rounds: a warm-up, then each round both sides, alternating which goes first."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from throughput.fixtures import ServedKnot
from throughput.network import NetworkGuard
from throughput.timing import Meter, Timings

from .dkimpy_side import dkimpy_resolver, dkimpy_run, knot_get_txt, record_names
from .fixtures import FixtureRecord
from .mailsec_side import mailsec_contexts, mailsec_run
from .verdicts import Verdicts, verdict_signature

if TYPE_CHECKING:
    from dns_records.resolver import Resolver

WARM_UP_DOMAINS = 50


@dataclass
class Measurements:
    """What the rounds produced: each side's timings, and the last run's verdicts of each."""

    records: list[FixtureRecord]
    knot: ServedKnot
    workers: list[int]
    mailsec_times: dict[int, Timings]
    dkimpy_times: Timings = field(default_factory=Timings)
    mailsec_results: dict[int, Verdicts] = field(default_factory=dict)
    dkimpy_results: Verdicts = field(default_factory=dict)
    # Each side's verdicts per run: one signature per side when nothing changed between runs.
    signatures: dict[str, set[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(set))


def measure(
    records: Sequence[FixtureRecord],
    knot: ServedKnot,
    resolver: Resolver,
    guard: NetworkGuard,
    *,
    rounds: int,
    workers: list[int],
) -> Measurements:
    """Warm both sides up on a few domains, then time `rounds` rounds of each."""
    contexts = mailsec_contexts(records)
    names = record_names([r.key for r in records])
    get_txt = knot_get_txt(dkimpy_resolver(knot.port))
    warm = {domain for domain, _context in contexts[:WARM_UP_DOMAINS]}
    mailsec_run(contexts[:WARM_UP_DOMAINS], resolver, max(workers))
    dkimpy_run([n for n in names if n[0][0] in warm], get_txt)

    meter = Meter(guard, knot.pid, len(records), unit="record")
    measured = Measurements(
        records=list(records),
        knot=knot,
        workers=workers,
        mailsec_times={w: Timings() for w in workers},
    )

    def run_mailsec() -> None:
        for w in workers:
            verdicts = meter.timed(
                measured.mailsec_times[w],
                f"mailsec dkim check, iter_many, {w} thread{'' if w == 1 else 's'}",
                functools.partial(mailsec_run, contexts, resolver, w),
            )
            measured.mailsec_results[w] = verdicts
            measured.signatures["mailsec"].add(verdict_signature(records, verdicts))

    def run_dkimpy() -> None:
        verdicts = meter.timed(
            measured.dkimpy_times,
            "dkimpy load_pk_from_dns, one record at a time",
            functools.partial(dkimpy_run, names, get_txt),
        )
        measured.dkimpy_results = verdicts
        measured.signatures["dkimpy"].add(verdict_signature(records, verdicts))

    for round_ in range(rounds):
        print(f"round {round_ + 1} of {rounds}, {len(contexts)} domains, {len(records)} records")
        # Alternate which side goes first, so neither always runs on a warmer machine.
        steps = [run_mailsec, run_dkimpy]
        for step in steps if round_ % 2 == 0 else reversed(steps):
            step()
    return measured
