"""The report: key generation rates, records per second and ratios, agreement, as JSON and text."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from throughput.network import NetworkGuard
from throughput.timing import Timings, time_ratios, timings_summary

from .fixtures import SLOTS, VARIANTS
from .keygen import KindTimings, keygen_ratios
from .run import Measurements
from .verdicts import by_variant, compare

PACKAGES = ("dkimpy", "dnspython", "cryptography", "pynacl", "django")
ORDER = {name: n for n, name in enumerate(VARIANTS)}  # slot by slot, as the fixtures list them


def build_report(
    keygen: dict[str, KindTimings], measured: Measurements, guard: NetworkGuard, seed: int
) -> dict[str, Any]:
    """The JSON report of a benchmark run; `passed` is whether the run should exit 0."""
    records = measured.records
    count = len(records)
    chosen = min(
        measured.workers,
        key=lambda w: (measured.mailsec_times[w].median, measured.mailsec_times[w].best),
    )
    mailsec = measured.mailsec_results[chosen]
    comparison = compare(records, mailsec, measured.dkimpy_results)
    stable = {side: len(found) == 1 for side, found in measured.signatures.items()}
    passed = (
        not comparison.unexpected
        and not comparison.off_intent
        and not guard.violations
        and all(stable.values())
    )
    table = by_variant(records, mailsec, measured.dkimpy_results)
    return {
        "benchmark": "dkim_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in PACKAGES},
        "domains": len({r.domain for r in records}),
        "records": count,
        "selectors": [selector for selector, _algorithm, _variants in SLOTS],
        "rounds": len(measured.dkimpy_times.runs),
        "seed": seed,
        "key_generation": {
            "mode": "one process, one key after another, as one worker pool process makes them",
            "by_kind": {label: t.summary() for label, t in keygen.items()},
            # How many times longer an RSA 2048 key takes than an Ed25519 key.
            "ratio_rsa2048_vs_ed25519": keygen_ratios(keygen),
        },
        "mailsec": {
            "mode": "iter_many(only={'dkim'}) on every domain's context, on a thread pool",
            "chosen_workers": chosen,
            "by_workers": {
                str(w): timings_summary(t, count, "record")
                for w, t in measured.mailsec_times.items()
            },
            **timings_summary(measured.mailsec_times[chosen], count, "record"),
        },
        "dkimpy": {
            "mode": "dkim.load_pk_from_dns, one record after the other, in this process",
            **timings_summary(measured.dkimpy_times, count, "record"),
        },
        # dkimpy's time over mailsec's: mailsec's records per second over dkimpy's.
        "ratio_mailsec_vs_dkimpy": time_ratios(
            measured.dkimpy_times, measured.mailsec_times[chosen]
        ),
        "ratio_mailsec_vs_dkimpy_by_workers": {
            str(w): time_ratios(measured.dkimpy_times, t) for w, t in measured.mailsec_times.items()
        },
        # The same from each run's CPU seconds: steadier than wall time when others share the cores.
        "cpu_ratio_mailsec_vs_dkimpy_by_workers": {
            str(w): time_ratios(Timings(runs=measured.dkimpy_times.cpu), Timings(runs=t.cpu))
            for w, t in measured.mailsec_times.items()
        },
        "agreement": {"agree": comparison.agree, "total": comparison.total},
        "verdicts_by_variant": {
            name: {
                "description": VARIANTS[name].description,
                "records": sum(sides["dkimpy"].values()),
                "mailsec": dict(sorted(sides["mailsec"].items())),
                "dkimpy": dict(sorted(sides["dkimpy"].items())),
            }
            for name, sides in sorted(table.items(), key=lambda item: ORDER[item[0]])
        },
        "expected_differences": {
            name: {"count": len(rows), "why": rows[0]["why"], "example": rows[0]}
            for name, rows in sorted(comparison.expected.items())
        },
        "unexpected_count": len(comparison.unexpected),
        "unexpected_differences": comparison.unexpected[:100],
        "not_as_built_count": len(comparison.off_intent),
        "not_as_built": comparison.off_intent[:100],
        "verdicts_stable_across_runs": stable,
        "network_guard_violations": guard.violations[:50],
        "knot_start_seconds": round(measured.knot.start_seconds, 2),
        "passed": passed,
    }


def _threads(workers: str) -> str:
    return f"{workers} thread" + ("" if workers == "1" else "s")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def print_report(report: dict[str, Any]) -> None:
    generation = report["key_generation"]
    print(f"\nkey generation, one process, {report['cpu_count']} cores:")
    print(f"{'kind':<10} {'keys':>5} {'keys/s':>8} {'ms/key':>8} {'median':>8} {'slowest':>8}")
    for label, data in generation["by_kind"].items():
        print(
            f"{label:<10} {data['keys']:>5} {data['keys_per_second']:>8.1f}"
            f" {data['mean_ms_per_key']:>8.2f} {data['median_ms_per_key']:>8.2f}"
            f" {data['slowest_ms_per_key']:>8.1f}"
        )
    ratio = generation["ratio_rsa2048_vs_ed25519"]
    print(
        f"an RSA 2048 key takes {ratio['mean']:.0f}x an Ed25519 key's time"
        f" (best rounds {ratio['best']:.0f}x, median rounds {ratio['median']:.0f}x)"
    )

    ms, theirs = report["mailsec"], report["dkimpy"]
    print(
        f"\ndkim records: {report['records']} ({report['domains']} domains x"
        f" {len(report['selectors'])} selectors), {report['rounds']} rounds"
    )
    print(
        f"{'side':<36} {'best s':>7} {'rec/s':>7} {'median s':>8} {'rec/s':>7}"
        f" {'q/rec':>5} {'CPU s':>6} {'knotd CPU s':>11}"
    )
    rows = [(f"mailsec dkim check, {_threads(w)}", d) for w, d in ms["by_workers"].items()]
    for label, data in [*rows, ("dkimpy load_pk_from_dns, sequential", theirs)]:
        knot = data["median_knotd_cpu_seconds"]
        print(
            f"{label:<36} {data['best_seconds']:>7.2f} {data['best_records_per_second']:>7.0f}"
            f" {data['median_seconds']:>8.2f} {data['median_records_per_second']:>7.0f}"
            f" {data['dns_queries_per_record']:>5.1f} {data['median_cpu_seconds']:>6.2f}"
            f" {'-' if knot is None else f'{knot:.2f}':>11}"
        )
    print("ratio, mailsec records/s / dkimpy records/s (dkimpy's time / mailsec's):")
    cpu = report["cpu_ratio_mailsec_vs_dkimpy_by_workers"]
    for workers, r in report["ratio_mailsec_vs_dkimpy_by_workers"].items():
        mark = "  (fastest)" if int(workers) == ms["chosen_workers"] else ""
        print(
            f"  {_threads(workers):>11}: {r['best']:.2f}x best, {r['median']:.2f}x median;"
            f" by CPU time {cpu[workers]['best']:.2f}x best, {cpu[workers]['median']:.2f}x median"
            f"{mark}"
        )

    print("\nverdicts by variant (mailsec check status | dkimpy):")
    for name, data in report["verdicts_by_variant"].items():
        print(
            f"  {name:<22} {data['records']:>5}  {_counts(data['mailsec']):<22}"
            f" | {_counts(data['dkimpy'])}"
        )
    agreement = report["agreement"]
    print(f"usable or not, both sides agree on {agreement['agree']} / {agreement['total']}")
    for name, data in report["expected_differences"].items():
        print(f"  by design: {name}: {data['count']} records ({data['why']})")
    for row in report["unexpected_differences"][:20]:
        print(
            f"  DIFFERENT {row['domain']} {row['selector']} [{row['variant']}]:"
            f" mailsec {row['mailsec'][:80]} / dkimpy {row['dkimpy'][:80]}"
        )
    for row in report["not_as_built"][:20]:
        print(
            f"  NOT AS BUILT {row['domain']} {row['selector']} [{row['variant']}]:"
            f" wanted {row['intended']}; mailsec {row['mailsec'][:70]} / dkimpy {row['dkimpy'][:70]}"
        )
    shown = min(20, len(report["unexpected_differences"])) + min(20, len(report["not_as_built"]))
    if report["unexpected_count"] + report["not_as_built_count"] > shown:
        print("  ... and more in the JSON")
    if not all(report["verdicts_stable_across_runs"].values()):
        print(f"verdicts changed between runs: {report['verdicts_stable_across_runs']}")
    if report["network_guard_violations"]:
        print(f"refused non-loopback network use: {report['network_guard_violations'][:5]}")
    print("PASS" if report["passed"] else "FAIL")
