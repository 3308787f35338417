"""The command line: generate keys, serve the fixtures, measure, write and print the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from throughput.cli import parse_workers
from throughput.mailsec_side import mailsec_resolver
from throughput.network import NetworkGuard

from .fixtures import KeyPools, external_keys, serve_fixtures
from .keygen import ED25519, RSA_2048, measure_keygen
from .report import build_report, print_report
from .run import measure

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "var" / "bench" / "dkim_throughput.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="mailsec's DKIM key generation rates, and its dkim check against dkimpy's"
        " key-record lookup on the same records."
    )
    parser.add_argument("--domains", type=int, default=1000, help="fixture domains (1000)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of key generation and of each side (5)"
    )
    parser.add_argument(
        "--workers", type=parse_workers, default=[1, 4], help="mailsec pool sizes to try (1,4)"
    )
    parser.add_argument("--seed", type=int, default=20261203, help="fixture mix seed")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="JSON report (var/bench/dkim_throughput.json)"
    )
    return parser


def _set_up_django() -> None:
    """Django with the development settings, and the repository importable for `tests.servers`
    (the dev install makes the apps importable, not the tests)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")
    os.environ.setdefault("MAILSEC_DEBUG", "1")
    import django

    django.setup()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when everything agrees, 1 when not, 2 when knotd is missing."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.domains < 1 or args.rounds < 1:
        parser.error("--domains and --rounds must be at least 1")
    if shutil.which("knotd") is None:
        print("dkim_throughput: knotd is not installed (scripts/install-system-deps)")
        return 2

    _set_up_django()
    started = time.perf_counter()
    guard = NetworkGuard()
    sys.addaudithook(guard)
    guard.enabled = True
    try:
        print(f"key generation, {args.rounds} rounds")
        keygen = measure_keygen(args.rounds)
        keys = KeyPools(
            rsa=keygen[RSA_2048.label].keys,
            ed25519=keygen[ED25519.label].keys,
            external=external_keys(),
        )
        with serve_fixtures(args.domains, args.seed, keys) as (records, knot):
            resolver = mailsec_resolver(knot.port)
            measured = measure(
                records, knot, resolver, guard, rounds=args.rounds, workers=args.workers
            )
        report = build_report(keygen, measured, guard, args.seed)
        print_report(report)
    finally:
        guard.enabled = False
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output} ({report['total_seconds']:.0f} s in all)")
    return 0 if report["passed"] else 1
