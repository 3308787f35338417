"""The report: best and median times, the ratios, verdict agreement, as JSON and as text."""

from __future__ import annotations

import os
import platform
from collections import Counter, defaultdict
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from .fixtures import VARIANTS
from .mailsec_side import ONLY
from .network import NetworkGuard
from .run import Measurements
from .timing import Timings, time_ratios, timings_summary
from .verdicts import checkdmarc_verdict, compare, compare_mailsec, mailsec_verdict


def build_report(measured: Measurements, guard: NetworkGuard) -> dict[str, Any]:
    """The JSON report of a benchmark run; `passed` is whether the run should exit 0."""
    args, fixtures = measured.args, measured.fixtures
    count = len(fixtures)
    chosen = min(
        args.workers,
        key=lambda w: (measured.mailsec_times[w].median, measured.mailsec_times[w].best),
    )
    ours = measured.mailsec_times[chosen]
    comparison = compare(fixtures, measured.mailsec_results[chosen], measured.domains_results)
    functions_comparison = compare(
        fixtures, measured.mailsec_results[chosen], measured.functions_results
    )
    node_differences = [
        {"run": n + 1, **row}
        for n, (results, _run) in enumerate(measured.node_runs)
        for row in compare_mailsec(fixtures, measured.mailsec_results[chosen], results)
    ]
    stable = {side: len(found) == 1 for side, found in measured.signatures.items()}
    passed = (
        not comparison.unexpected
        and not functions_comparison.unexpected
        and not node_differences
        and not guard.violations
        and not measured.mailsec_errors
        and all(stable.values())
    )

    def side(times: Timings) -> dict[str, Any]:
        return timings_summary(times, count)

    startups = [run.startup_seconds for _results, run in measured.node_runs]
    node_bare = Timings(
        runs=[t - s for t, s in zip(measured.node_times.runs, startups, strict=True)]
    )

    by_variant: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for fixture in fixtures:
        row = by_variant[fixture.variant]
        for check in ("spf", "dmarc"):
            row[f"{check} mailsec"][
                mailsec_verdict(measured.mailsec_results[chosen][fixture.name][check]).label
            ] += 1
            row[f"{check} checkdmarc"][
                checkdmarc_verdict(measured.domains_results[fixture.name][check]).label
            ] += 1

    report: dict[str, Any] = {
        "benchmark": "check_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("checkdmarc", "dnspython", "pyspf", "django")},
        "domains": count,
        "rounds": args.rounds,
        "seed": args.seed,
        "simulated_rtt_ms": args.rtt_ms,
        "checkdmarc_mode": "sequential, one domain after the other, in one process",
        "mailsec": {
            "mode": "single process: run_many on the whole list, on a thread pool",
            "checks": sorted(ONLY),
            "chosen_workers": chosen,
            "by_workers": {str(w): side(t) for w, t in measured.mailsec_times.items()},
            **side(ours),
        },
        "mailsec_worker_node": {
            "mode": (
                "one worker node: a pool of processes forked after Django set-up, each taking"
                " the next batch and running run_many on it; times include pool start-up"
                " and shut-down"
            ),
            "start_method": "fork",
            "processes": args.node_processes,
            "threads_per_process": measured.node_threads,
            "threads_chosen_by": measured.node_threads_from,
            "batch_size": args.batch_size,
            "batches": -(-count // args.batch_size),
            **side(measured.node_times),
            "startup_seconds": [round(s, 4) for s in startups],
            "without_startup": {
                "best_seconds": round(node_bare.best, 3),
                "median_seconds": round(node_bare.median, 3),
            },
            "batches_by_run": [
                [
                    {
                        "pid": b.pid,
                        "domains": b.size,
                        "seconds": round(b.seconds, 3),
                        "cpu_seconds": round(b.cpu_seconds, 3),
                    }
                    for b in run.batches
                ]
                for _results, run in measured.node_runs
            ],
        },
        "checkdmarc_check_domains": side(measured.domains_times),
        "checkdmarc_spf_dmarc_mx": side(measured.functions_times),
        "checkdmarc_check_domains_nameservers_only": side(measured.plain_times),
        # checkdmarc's time over mailsec's, single process (mailsec's fastest pool size).
        "ratio_vs_check_domains": time_ratios(measured.domains_times, ours),
        "ratio_vs_spf_dmarc_mx": time_ratios(measured.functions_times, ours),
        # checkdmarc's time (still one process) over the worker node's, start-up included.
        "ratio_worker_node_vs_check_domains": time_ratios(
            measured.domains_times, measured.node_times
        ),
        "ratio_worker_node_vs_spf_dmarc_mx": time_ratios(
            measured.functions_times, measured.node_times
        ),
        "ratio_worker_node_without_startup_vs_check_domains": time_ratios(
            measured.domains_times, node_bare
        ),
        "worker_node_vs_single_process": {
            "runs_compared": len(measured.node_runs),
            "single_process_workers": chosen,
            "agree": not node_differences,
            "differences": node_differences[:50],
        },
        "agreement": {
            key: {"agree": comparison.agree[key], "total": total}
            for key, total in sorted(comparison.total.items())
        },
        "verdicts_by_variant": {
            v.name: {
                "domains": sum(by_variant[v.name]["spf mailsec"].values()),
                **{k: dict(sorted(c.items())) for k, c in sorted(by_variant[v.name].items())},
            }
            for v in VARIANTS
            if v.name in by_variant
        },
        "expected_differences": {
            key: {"count": len(rows), "why": rows[0]["why"], "example": rows[0]}
            for key, rows in sorted(comparison.expected.items())
        },
        "unexpected_differences": comparison.unexpected,
        "unexpected_differences_spf_dmarc_mx": functions_comparison.unexpected,
        "mailsec_errors": dict(measured.mailsec_errors),
        "verdicts_stable_across_runs": stable,
        "network_guard_violations": guard.violations[:50],
        "passed": passed,
    }
    report["knot_start_seconds"] = round(measured.knot.start_seconds, 2)
    return report


def _labels(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def print_report(report: dict[str, Any]) -> None:
    count = report["domains"]
    ms, node = report["mailsec"], report["mailsec_worker_node"]
    node_label = f"mailsec node ({node['processes']} procs x {node['threads_per_process']} thr)"
    rows = [
        (f"mailsec 1 process ({ms['chosen_workers']} threads)", ms),
        (node_label, node),
        ("checkdmarc.check_domains (1 process)", report["checkdmarc_check_domains"]),
        ("checkdmarc SPF+DMARC+MX functions", report["checkdmarc_spf_dmarc_mx"]),
        ("check_domains, nameservers= only", report["checkdmarc_check_domains_nameservers_only"]),
    ]
    rtt = f", {report['simulated_rtt_ms']:g} ms simulated RTT" if report["simulated_rtt_ms"] else ""
    print(f"\n{count} domains, {report['cpu_count']} cores, {report['rounds']} rounds{rtt}")
    print(
        f"{'side':<38} {'best s':>7} {'dom/s':>7} {'median s':>8} {'dom/s':>7}"
        f" {'CPU s':>6} {'knotd CPU s':>11}"
    )
    for label, data in rows:
        knot = data["median_knotd_cpu_seconds"]
        print(
            f"{label:<38} {data['best_seconds']:>7.2f} {data['best_domains_per_second']:>7.1f}"
            f" {data['median_seconds']:>8.2f} {data['median_domains_per_second']:>7.1f}"
            f" {data['median_cpu_seconds']:>6.2f} {'-' if knot is None else f'{knot:.2f}':>11}"
        )
    for workers, data in ms["by_workers"].items():
        print(f"  mailsec 1 process, {workers:>3} threads: best {data['best_seconds']:.2f} s")
    bare = node["without_startup"]
    print(
        f"  worker node: pool start-up {max(node['startup_seconds']):.3f} s at most;"
        f" without it best {bare['best_seconds']:.2f} s, median {bare['median_seconds']:.2f} s;"
        f" {node['batches']} batches of {node['batch_size']}"
    )
    ratios = [
        ("1 process", "vs check_domains", report["ratio_vs_check_domains"]),
        ("1 process", "vs SPF+DMARC+MX funcs", report["ratio_vs_spf_dmarc_mx"]),
        (f"node, {node['processes']} procs", "vs check_domains", report["ratio_worker_node_vs_check_domains"]),
        (f"node, {node['processes']} procs", "vs SPF+DMARC+MX funcs", report["ratio_worker_node_vs_spf_dmarc_mx"]),
    ]  # fmt: skip
    print("ratio, checkdmarc time (always 1 process) / mailsec time:")
    for mode, against, r in ratios:
        print(
            f"  mailsec {mode:<15} {against:<24} {r['best']:.1f}x best, {r['median']:.1f}x median"
        )
    print("\nSPF and DMARC verdicts by variant (mailsec | checkdmarc.check_domains):")
    print(f"{'variant':<22} {'n':>4}  {'SPF':<36} DMARC")
    for variant, data in report["verdicts_by_variant"].items():
        cells = []
        for check in ("spf", "dmarc"):
            ours = _labels(data[f"{check} mailsec"])
            theirs = _labels(data[f"{check} checkdmarc"])
            cells.append(f"{ours} | {theirs}")
        print(f"{variant:<22} {data['domains']:>4}  {cells[0]:<36} {cells[1]}")
    print("\nverdict agreement (mailsec vs check_domains):")
    for key, data in report["agreement"].items():
        print(f"  {key:<12} {data['agree']:>5} / {data['total']}")
    for key, data in report["expected_differences"].items():
        print(f"  expected: {key}: {data['count']} domains ({data['why']})")
    same = report["worker_node_vs_single_process"]
    print(
        f"worker node vs single process ({same['runs_compared']} runs):"
        f" {'identical outcomes' if same['agree'] else 'DIFFERENT'}"
    )
    for row in same["differences"][:10]:
        print(
            f"  DIFFERENT run {row['run']} {row['domain']} {row['check']}:"
            f" {row['single_process'][:90]} / {row['worker_node'][:90]}"
        )
    unexpected = report["unexpected_differences"] + report["unexpected_differences_spf_dmarc_mx"]
    for row in unexpected[:20]:
        print(
            f"  DIFFERENT {row['domain']} [{row['variant']}] {row['check']} {row['level']}: "
            f"mailsec {row['mailsec']} ({row['mailsec_reason'][:90]}) / "
            f"checkdmarc {row['checkdmarc']} ({row['checkdmarc_reason'][:90]})"
        )
    if len(unexpected) > 20:
        print(f"  ... and {len(unexpected) - 20} more in the JSON")
    if report["mailsec_errors"]:
        print(f"mailsec errors: {report['mailsec_errors']}")
    if not all(report["verdicts_stable_across_runs"].values()):
        print(f"verdicts changed between runs: {report['verdicts_stable_across_runs']}")
    if report["network_guard_violations"]:
        print(f"refused non-loopback network use: {report['network_guard_violations'][:5]}")
    print("PASS" if report["passed"] else "FAIL")
