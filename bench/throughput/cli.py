"""The command line: parse the options, serve the fixtures, measure, write and print the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .fixtures import serve_fixtures
from .mailsec_side import mailsec_resolver, production_batch_size
from .network import NetworkGuard, simulate_round_trip
from .report import build_report, print_report
from .run import BenchArgs, measure

RESULTS = Path(__file__).resolve().parents[2] / "var" / "bench" / "check_throughput.json"


def parse_workers(text: str) -> list[int]:
    workers = [int(w) for w in text.split(",") if w.strip()]
    if not workers or min(workers) < 1:
        raise argparse.ArgumentTypeError("--workers takes positive integers, e.g. 16,32,64")
    return workers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Throughput of mailsec's SPF + DMARC + MX checks against checkdmarc,"
        " on the same domains."
    )
    parser.add_argument("--domains", type=int, default=1000, help="fixture domains (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each side (3)")
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=[1, 4, 16, 32, 64],
        help="mailsec pool sizes to try (1,4,16,32,64)",
    )
    parser.add_argument(
        "--node-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker node: pool processes (os.cpu_count(), as celery worker's default)",
    )
    parser.add_argument(
        "--node-threads",
        type=int,
        default=None,
        help="worker node: run_many threads in each process (the fastest --workers of round 1)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="worker node: domains per batch (dns_records.tasks.BATCH_SIZE, 200)",
    )
    parser.add_argument("--seed", type=int, default=20240611, help="fixture mix seed")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="JSON report (var/bench/check_throughput.json)"
    )
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="add this round trip to every DNS query of both sides (default 0: loopback only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when everything agrees, 1 when not, 2 when knotd is missing."""
    parser = _parser()
    parsed = parser.parse_args(argv)
    if parsed.domains < 1 or parsed.rounds < 1 or parsed.rtt_ms < 0:
        parser.error("--domains and --rounds must be at least 1, --rtt-ms not negative")
    if parsed.node_processes < 1 or (parsed.node_threads or 1) < 1 or (parsed.batch_size or 1) < 1:
        parser.error("--node-processes, --node-threads and --batch-size must be at least 1")
    if shutil.which("knotd") is None:
        print("check_throughput: knotd is not installed (scripts/install-system-deps)")
        return 2

    import django

    django.setup()
    args = BenchArgs(
        domains=parsed.domains,
        rounds=parsed.rounds,
        workers=parsed.workers,
        node_processes=parsed.node_processes,
        node_threads=parsed.node_threads,
        batch_size=production_batch_size() if parsed.batch_size is None else parsed.batch_size,
        seed=parsed.seed,
        rtt_ms=parsed.rtt_ms,
        output=parsed.output,
    )
    guard = NetworkGuard()
    sys.addaudithook(guard)
    # The deprecation of skip_tls, and any others, are not what this measures.
    warnings.simplefilter("ignore", DeprecationWarning)

    with serve_fixtures(args.domains, args.seed) as (fixtures, knot):
        resolver = mailsec_resolver(knot.port)
        if args.rtt_ms:
            simulate_round_trip(args.rtt_ms / 1000)
        guard.enabled = True
        try:
            measured = measure(args, fixtures, knot, resolver, guard)
            report = build_report(measured, guard)
            print_report(report)
        finally:
            guard.enabled = False
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0 if report["passed"] else 1
