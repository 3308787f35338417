"""The command line: write the generated reports, measure both sides, print and save the report."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .generate import write_report
from .run import REPO, Throughput, peak_memory, throughput

SAMPLES = REPO / "tests" / "fixtures" / "reports" / "samples"
RESULTS = REPO / "var" / "bench" / "report_parse.json"
GENERATED = REPO / "var" / "bench" / "reports"
GIB = 1024**3
# parsedmarc refuses reports over 100 MiB decompressed (its MAX_DECOMPRESSED_REPORT_SIZE); the
# memory runs raise that to 4 GiB so the 1M-record report (about 700 MB of XML) is measured.
PARSEDMARC_LIMIT = 4 * GIB
# Samples that are not aggregate reports: each side refuses them, so they are not timed.
NOT_AGGREGATE = ("empty.xml", "DMARC Failure Report")


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes are record counts of at least 1")
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="mailsec's report parser against parsedmarc (offline) on the same files:"
        " records per second on the sample corpus and a generated report, and peak memory."
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (3)")
    parser.add_argument(
        "--parsedmarc-rounds",
        type=int,
        default=1,
        help="rounds of parsedmarc on the 100k report (1)",
    )
    parser.add_argument("--records", type=int, default=100_000, help="throughput report size")
    parser.add_argument(
        "--memory-sizes",
        type=_sizes,
        default=[10_000, 100_000, 1_000_000],
        help="10000,100000,1000000",
    )
    parser.add_argument(
        "--parsedmarc-max-records",
        type=int,
        default=1_000_000,
        help="largest report parsedmarc is given in the memory runs (1000000)",
    )
    parser.add_argument(
        "--parsedmarc-memory-gib",
        type=float,
        default=8.0,
        help="address-space cap of parsedmarc's memory runs, GiB (8)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per memory run (900)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON report")
    return parser


def _corpus() -> list[Path]:
    return sorted(
        path
        for path in SAMPLES.rglob("*")
        if path.is_file()
        and path.name != "SOURCES.md"
        and not any(path.name.startswith(skip) for skip in NOT_AGGREGATE)
    )


def _summary(measured: Throughput) -> dict[str, Any]:
    return {
        "records": measured.records,
        "messages": measured.messages,
        "seconds": [round(s, 4) for s in measured.seconds],
        "best_seconds": round(measured.best, 4),
        "records_per_second": round(measured.rate, 1),
        "cpu_seconds": [round(s, 4) for s in measured.cpu],
        "records_per_cpu_second": round(measured.cpu_rate, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    GENERATED.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "report_parse",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("parsedmarc", "lxml", "xmltodict")},
    }
    agree = True

    corpus = _corpus()
    print(f"sample corpus: {len(corpus)} aggregate reports, {args.rounds} rounds per side")
    mine = throughput("mailsec", corpus, args.rounds)
    theirs = throughput("parsedmarc", corpus, args.rounds)
    differ = sorted(n for n in mine.per_file if mine.per_file[n] != theirs.per_file.get(n))
    agree &= not differ
    report["corpus"] = {
        "files": len(corpus),
        "mailsec": _summary(mine),
        "parsedmarc": _summary(theirs),
        "ratio_records_per_second": round(mine.rate / theirs.rate, 1),
        "ratio_records_per_cpu_second": round(mine.cpu_rate / theirs.cpu_rate, 1),
        "files_that_differ": differ,
    }

    print(f"generating reports of {args.records} and {args.memory_sizes} records (cached)")
    big = write_report(GENERATED / f"generated-{args.records}.xml.gz", args.records)
    files = {n: write_report(GENERATED / f"generated-{n}.xml.gz", n) for n in args.memory_sizes}
    print(
        f"generated report of {args.records} records: {args.rounds} + {args.parsedmarc_rounds} rounds"
    )
    mine = throughput("mailsec", [big], args.rounds)
    theirs = throughput("parsedmarc", [big], args.parsedmarc_rounds)
    agree &= (
        (mine.records, mine.messages)
        == (theirs.records, theirs.messages)
        == (
            args.records,
            mine.messages,
        )
    )
    report["generated"] = {
        "records": args.records,
        "file_bytes": big.stat().st_size,
        "mailsec": _summary(mine),
        "parsedmarc": _summary(theirs),
        "ratio_records_per_second": round(mine.rate / theirs.rate, 1),
        "ratio_records_per_cpu_second": round(mine.cpu_rate / theirs.cpu_rate, 1),
    }

    memory: list[dict[str, Any]] = []
    for size, path in files.items():
        row: dict[str, Any] = {"records": size, "file_bytes": path.stat().st_size}
        print(f"peak memory, {size} records: mailsec")
        row["mailsec"] = peak_memory("mailsec", path, cap_bytes=0, timeout=args.timeout)
        if size <= args.parsedmarc_max_records:
            print(f"peak memory, {size} records: parsedmarc")
            row["parsedmarc"] = peak_memory(
                "parsedmarc",
                path,
                cap_bytes=int(args.parsedmarc_memory_gib * GIB),
                timeout=args.timeout,
                extra=["--parsedmarc-limit-bytes", str(PARSEDMARC_LIMIT)],
            )
        else:
            row["parsedmarc"] = {"error": "not run (over --parsedmarc-max-records)"}
        for side in ("mailsec", "parsedmarc"):
            result = row[side]
            if result.get("network_violations"):
                agree = False
            if "records" in result and result["records"] != size:
                agree = False
        if "error" in row["mailsec"]:
            agree = False
        memory.append(row)
    report["memory"] = memory
    report["memory_notes"] = [
        f"parsedmarc's decompressed-report limit raised from 100 MiB to {PARSEDMARC_LIMIT} bytes",
        f"parsedmarc runs under a {args.parsedmarc_memory_gib} GiB address-space cap and a"
        f" {args.timeout:.0f} s timeout; over either, its row says so",
    ]
    report["passed"] = agree
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print_report(report)
    print(f"\nreport written to {args.output}")
    return 0 if agree else 1


def _mib(value: object) -> str:
    return f"{int(value) / 2**20:,.0f} MiB" if isinstance(value, int) else "-"


def _rate(result: dict[str, Any]) -> str:
    if "records" not in result or not result.get("seconds"):
        return "-"
    return f"{result['records'] / result['seconds']:,.0f}"


def print_report(report: dict[str, Any]) -> None:
    versions = report["versions"]
    print(
        f"report_parse: mailsec reports.parse vs parsedmarc {versions['parsedmarc']}"
        f" (offline), same files, same run (Python {report['python']}, lxml {versions['lxml']})"
    )
    print()
    print(
        f"{'records/s (wall; per CPU second)':<44}{'mailsec':>12}{'parsedmarc':>12}{'ratio':>9}"
        f"{'mailsec':>12}{'parsedmarc':>12}{'ratio':>9}"
    )
    corpus = report["corpus"]
    generated = report["generated"]
    for label, section in (
        (
            f"sample corpus ({corpus['files']} files, {corpus['mailsec']['records']:,} records)",
            corpus,
        ),
        (f"generated report ({generated['records']:,} records)", generated),
    ):
        print(
            f"{label:<44}{section['mailsec']['records_per_second']:>12,.0f}"
            f"{section['parsedmarc']['records_per_second']:>12,.0f}"
            f"{section['ratio_records_per_second']:>8.1f}x"
            f"{section['mailsec']['records_per_cpu_second']:>12,.0f}"
            f"{section['parsedmarc']['records_per_cpu_second']:>12,.0f}"
            f"{section['ratio_records_per_cpu_second']:>8.1f}x"
        )
    if corpus["files_that_differ"]:
        print(f"files read differently: {', '.join(corpus['files_that_differ'])}")
    print()
    print("peak memory, each parse in a process of its own: peak RSS, and its growth over the")
    print("process's RSS before the parse (interpreter, libraries, the input file read once)")
    print(
        f"{'records':>10}{'gz size':>10} | {'mailsec peak':>13}{'growth':>10}{'rec/s':>10}"
        f" | {'parsedmarc peak':>16}{'growth':>10}{'rec/s':>9}"
    )
    for row in report["memory"]:
        cells = []
        for side in ("mailsec", "parsedmarc"):
            result = row[side]
            if "error" in result:
                cells.append(
                    f"{result['error'][:40]:>33}"
                    if side == "mailsec"
                    else f"  {result['error'][:50]}"
                )
                continue
            growth = result["peak_rss"] - result["baseline_rss"]
            width = 13 if side == "mailsec" else 16
            cells.append(
                f"{_mib(result['peak_rss']):>{width}}{_mib(growth):>10}{_rate(result):>{10 if side == 'mailsec' else 9}}"
            )
        print(f"{row['records']:>10,}{_mib(row['file_bytes']):>10} | {cells[0]} | {cells[1]}")
    for note in report["memory_notes"]:
        print(f"note: {note}")
    print()
    print(
        "passed"
        if report["passed"]
        else "FAILED: the sides disagree, a run failed, or a socket left loopback"
    )


if __name__ == "__main__":
    sys.exit(main())
