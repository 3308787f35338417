"""The timed rounds: a warm-up, then each round both sides, alternating which goes first."""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .checkdmarc_side import (
    CheckdmarcResults,
    checkdmarc_domains_run,
    checkdmarc_functions_run,
    checkdmarc_options,
)
from .fixtures import FixtureDomain, ServedKnot
from .mailsec_side import MailsecResults, NodeRun, mailsec_node_run, mailsec_run
from .network import NetworkGuard
from .timing import Meter, Timings
from .verdicts import checkdmarc_verdict, mailsec_verdict, verdict_signature

if TYPE_CHECKING:
    from dns_records.resolver import Resolver


@dataclass(frozen=True)
class BenchArgs:
    """The command line's settings, with the batch size resolved."""

    domains: int
    rounds: int
    workers: list[int]
    node_processes: int
    node_threads: int | None
    batch_size: int
    seed: int
    rtt_ms: float
    output: Path


@dataclass
class Measurements:
    """What the rounds produced: every side's timings and the results the report compares."""

    args: BenchArgs
    fixtures: list[FixtureDomain]
    knot: ServedKnot
    mailsec_times: dict[int, Timings]
    mailsec_results: dict[int, MailsecResults]
    node_times: Timings
    node_runs: list[tuple[MailsecResults, NodeRun]]
    node_threads: int | None
    node_threads_from: str
    domains_times: Timings
    functions_times: Timings
    plain_times: Timings
    domains_results: CheckdmarcResults
    functions_results: CheckdmarcResults
    signatures: dict[str, set[tuple[tuple[str, str, str], ...]]]
    mailsec_errors: Counter[str]


def measure(
    args: BenchArgs,
    fixtures: list[FixtureDomain],
    knot: ServedKnot,
    resolver: Resolver,
    guard: NetworkGuard,
) -> Measurements:
    """Warm both sides up, then run `args.rounds` rounds and a last reference run."""
    names = [f.name for f in fixtures]
    count = len(names)
    meter = Meter(guard, knot.pid, count)
    options = checkdmarc_options(knot.port, prebuilt_resolver=True)
    plain_options = checkdmarc_options(knot.port, prebuilt_resolver=False)

    # Warm up both sides (imports, compiled patterns, the public suffix list).
    warm = names[: min(count, 24)]
    mailsec_run(warm, resolver, max(args.workers))
    checkdmarc_domains_run(warm, options)
    node = functools.partial(
        mailsec_node_run,
        resolver=resolver,
        guard=guard,
        processes=args.node_processes,
        batch_size=args.batch_size,
    )
    node(warm, threads=args.node_threads or 1)
    measured = Measurements(
        args=args,
        fixtures=fixtures,
        knot=knot,
        mailsec_times={w: Timings() for w in args.workers},
        mailsec_results={},
        node_times=Timings(),
        node_runs=[],
        # The worker node's threads per process: --node-threads, or else the single-process
        # pool size that was fastest in round 1, kept for every round so all node runs are alike.
        node_threads=args.node_threads,
        node_threads_from=(
            "--node-threads" if args.node_threads else "fastest single-process pool size in round 1"
        ),
        domains_times=Timings(),
        functions_times=Timings(),
        plain_times=Timings(),
        domains_results={},
        functions_results={},
        signatures=defaultdict(set),
        mailsec_errors=Counter(),
    )

    def note_mailsec(results: MailsecResults) -> None:
        measured.signatures["mailsec"].add(
            tuple(verdict_signature(fixtures, results, mailsec_verdict))
        )
        measured.mailsec_errors.update(
            f"{check}: {outcome.summary}"
            for outcomes in results.values()
            for check, outcome in outcomes.items()
            if str(outcome.status) == "error"
        )

    def run_mailsec() -> None:
        for workers in args.workers:
            results = meter.timed(
                measured.mailsec_times[workers],
                f"mailsec, {workers} workers",
                functools.partial(mailsec_run, names, resolver, workers),
            )
            measured.mailsec_results[workers] = results
            note_mailsec(results)
        if measured.node_threads is None:
            measured.node_threads = min(
                args.workers, key=lambda w: measured.mailsec_times[w].runs[-1]
            )
        results, run = meter.timed(
            measured.node_times,
            f"mailsec worker node, {args.node_processes} processes x {measured.node_threads} threads,"
            f" batches of {args.batch_size}",
            functools.partial(node, names, threads=measured.node_threads),
        )
        measured.node_runs.append((results, run))
        note_mailsec(results)
        print(
            f"    pool start-up {run.startup_seconds:.3f} s; batches:"
            f" {', '.join(f'{b.seconds:.2f} s' for b in run.batches)}"
        )

    def run_checkdmarc() -> None:
        measured.domains_results = meter.timed(
            measured.domains_times,
            "checkdmarc.check_domains",
            lambda: checkdmarc_domains_run(names, options),
        )
        measured.functions_results = meter.timed(
            measured.functions_times,
            "checkdmarc check_mx + check_spf + check_dmarc",
            lambda: checkdmarc_functions_run(names, options),
        )
        for results in (measured.domains_results, measured.functions_results):
            measured.signatures["checkdmarc"].add(
                tuple(verdict_signature(fixtures, results, checkdmarc_verdict))
            )

    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}, {count} domains")
        # Alternate which side goes first, so neither always runs on a warmer machine.
        steps = [run_mailsec, run_checkdmarc]
        for step in steps if round_ % 2 == 0 else reversed(steps):
            step()
    print("reference run")
    meter.timed(
        measured.plain_times,
        "checkdmarc.check_domains with nameservers= only",
        lambda: checkdmarc_domains_run(names, plain_options),
    )
    return measured
