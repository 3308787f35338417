"""Blocklist lookups per second: mailsec's poll (the resolver's fan-out) against the same lookups
made one at a time with dnspython's synchronous resolver, on a private Knot on 127.0.0.34.

`make bench` runs this with no arguments: 1,000 targets (900 IPv4, 100 IPv6) on 20 IP
blocklists, 5% of the pairs listed (an A record and a TXT reason). Both sides ask exactly the
same questions: one A query per (target, list), each list's RFC 5782 negative test point, and
the TXT reason of every listing, and must reach the same verdicts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")

import django  # noqa: E402

django.setup()

import dns.exception  # noqa: E402
import dns.resolver  # noqa: E402
from throughput.network import NetworkGuard  # noqa: E402
from throughput.timing import process_cpu_seconds  # noqa: E402

from blocklists.poll import PollResult, PollTarget, poll  # noqa: E402
from blocklists.query import probe_name, query_name  # noqa: E402
from blocklists.verdict import ListingStatus, read_answer  # noqa: E402
from blocklists.zones import ZoneInfo, ZoneKind, zone_info  # noqa: E402
from dns_records.lookups import Lookup, LookupStatus  # noqa: E402
from dns_records.resolver import Resolver  # noqa: E402
from mailsec.env import Nameserver  # noqa: E402
from tests.servers import KnotServer  # noqa: E402

ADDRESS = "127.0.0.34"
TIMEOUT = 2.0
RESULTS = REPO / "var" / "bench" / "blocklist_throughput.json"
TARGET_RATIO = 20.0

Verdicts = dict[tuple[str, str], tuple[str, str]]


def make_targets(count: int, rng: random.Random) -> list[str]:
    v6 = count // 10
    v4: set[str] = set()
    while len(v4) < count - v6:
        v4.add(str(ipaddress.IPv4Address(0x0A000000 + rng.randrange(1 << 24))))
    v6s = {
        str(ipaddress.IPv6Address((0x20010DB8 << 96) + rng.randrange(1 << 64))) for _ in range(v6)
    }
    return sorted(v4) + sorted(v6s)


def write_zones(
    directory: Path, targets: Sequence[str], zones: Sequence[str], share: float, rng: random.Random
) -> int:
    listed = 0
    for zone in zones:
        lines = [
            f"$ORIGIN {zone}.", "$TTL 300",
            f"@ SOA ns.{zone}. hostmaster.{zone}. 2026120301 3600 600 86400 300",
            f"@ NS ns.{zone}.", f"ns A {ADDRESS}",
        ]  # fmt: skip
        for target in targets:
            if rng.random() < share:
                name = query_name(ZoneKind.IP, target, zone).removesuffix(f".{zone}")
                code = rng.choice(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
                lines += [f"{name} A {code}", f'{name} TXT "listed on {zone}: {target}"']
                listed += 1
        (directory / f"{zone}.zone").write_text("\n".join(lines) + "\n")
    return listed


def mailsec_side(
    targets: Sequence[str], zones: Sequence[ZoneInfo], server: Nameserver, concurrency: int
) -> Verdicts:
    resolver = Resolver([server], timeout=TIMEOUT)
    results: list[PollResult] = poll(
        [PollTarget(ZoneKind.IP, t) for t in targets], zones, resolver=resolver,
        concurrency=concurrency,
    )  # fmt: skip
    return {(r.target.value, r.zone.name): (r.verdict.status, r.verdict.code) for r in results}


def _sync_lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> Lookup:
    try:
        answer = resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return Lookup(name, rdtype, LookupStatus.NXDOMAIN)
    except dns.resolver.NoAnswer:
        return Lookup(name, rdtype, LookupStatus.NODATA)
    except dns.exception.DNSException as exc:
        return Lookup(name, rdtype, LookupStatus.ERROR, reason=str(exc))
    if rdtype == "TXT":
        records = tuple(b"".join(r.strings).decode() for r in answer)
    else:
        records = tuple(r.to_text() for r in answer)
    return Lookup(name, rdtype, LookupStatus.OK, records=records)


def dnspython_side(
    targets: Sequence[str], zones: Sequence[ZoneInfo], server: Nameserver, concurrency: int
) -> Verdicts:
    """The same questions, one at a time, through dnspython's stub resolver (no cache)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    resolver.timeout = TIMEOUT
    resolver.lifetime = TIMEOUT
    resolver.retry_servfail = False
    verdicts: Verdicts = {}
    for zone in zones:
        _sync_lookup(resolver, probe_name(ZoneKind.IP, zone.name), "A")
    for target in targets:
        for zone in zones:
            name = query_name(ZoneKind.IP, target, zone.name)
            a = _sync_lookup(resolver, name, "A")
            verdict = read_answer(zone, a)
            if verdict.status is ListingStatus.LISTED:
                verdict = read_answer(zone, a, _sync_lookup(resolver, name, "TXT"))
            verdicts[target, zone.name] = (verdict.status, verdict.code)
    return verdicts


Side = Callable[[Sequence[str], Sequence[ZoneInfo], Nameserver, int], Verdicts]


def timed(side: Side, *args: Any) -> tuple[float, float, Verdicts]:
    cpu = time.process_time()
    start = time.perf_counter()
    verdicts = side(*args)
    return time.perf_counter() - start, time.process_time() - cpu, verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--zones", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="64,256", help="fan-out sizes to try (64,256)")
    parser.add_argument("--listed", type=float, default=0.05, help="share of pairs listed (0.05)")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if shutil.which("knotd") is None:
        print("knotd is not installed (scripts/install-system-deps)", file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.concurrency.split(",")]
    rng = random.Random(args.seed)  # noqa: S311  (fixtures, not secrets)
    targets = make_targets(args.targets, rng)
    zone_names = [f"l{i:02d}.bench-bl.test" for i in range(1, args.zones + 1)]
    zones = [zone_info(name, ZoneKind.IP) for name in zone_names]
    with tempfile.TemporaryDirectory(prefix="bl-bench-") as tmp:
        source = Path(tmp) / "zones"
        source.mkdir()
        listed = write_zones(source, targets, zone_names, args.listed, rng)
        knot = KnotServer(Path(tmp) / "knot", address=ADDRESS, source=source)
        knot.start()
        guard = NetworkGuard()
        sys.addaudithook(guard)
        guard.enabled = True
        try:
            server = Nameserver(ADDRESS, knot.port)
            pid = knot.process.pid if knot.process else 0
            questions = len(targets) * len(zones) + len(zones) + listed
            warm = targets[:50]
            mailsec_side(warm, zones, server, sizes[0])
            dnspython_side(warm, zones, server, 1)
            runs: dict[str, list[dict[str, float]]] = {"dnspython": []}
            runs.update({f"mailsec_{n}": [] for n in sizes})
            reference: Verdicts | None = None
            disagreements = 0
            differing: list[str] = []
            for round_no in range(args.rounds):
                order: list[tuple[str, Side, int]] = [
                    *((f"mailsec_{n}", mailsec_side, n) for n in sizes),
                    ("dnspython", dnspython_side, 1),
                ]
                if round_no % 2:
                    order.reverse()
                for name, side, size in order:
                    knot_cpu = process_cpu_seconds(pid) or 0.0
                    wall, cpu, verdicts = timed(side, targets, zones, server, size)
                    knot_cpu = (process_cpu_seconds(pid) or 0.0) - knot_cpu
                    runs[name].append(
                        {"seconds": wall, "cpu_seconds": cpu, "knotd_cpu_seconds": knot_cpu}
                    )
                    if reference is None:
                        reference = verdicts
                    elif verdicts != reference:
                        disagreements += 1
                        differing += [
                            f"{name}: {key}: {verdicts.get(key)} != {value}"
                            for key, value in reference.items()
                            if verdicts.get(key) != value
                        ][:10]
                    print(
                        f"  round {round_no + 1} {name:<14} {wall:7.3f} s  {questions / wall:9.0f} lookups/s",
                        flush=True,
                    )
        finally:
            guard.enabled = False
            knot.stop()
    assert reference is not None
    counts: dict[str, int] = {}
    for status, _code in reference.values():
        counts[str(status)] = counts.get(str(status), 0) + 1
    summary = {
        name: {
            "best_seconds": min(r["seconds"] for r in rows),
            "median_seconds": median(r["seconds"] for r in rows),
            "best_lookups_per_second": questions / min(r["seconds"] for r in rows),
            "median_lookups_per_second": questions / median(r["seconds"] for r in rows),
            "median_cpu_seconds": median(r["cpu_seconds"] for r in rows),
            "median_knotd_cpu_seconds": median(r["knotd_cpu_seconds"] for r in rows),
        }
        for name, rows in runs.items()
    }
    best_mailsec = min(
        (k for k in summary if k.startswith("mailsec_")), key=lambda k: summary[k]["median_seconds"]
    )
    ratio_median = summary["dnspython"]["median_seconds"] / summary[best_mailsec]["median_seconds"]
    ratio_best = summary["dnspython"]["best_seconds"] / summary[best_mailsec]["best_seconds"]
    ratio_cpu = (
        summary["dnspython"]["median_cpu_seconds"] / summary[best_mailsec]["median_cpu_seconds"]
    )
    report = {
        "targets": len(targets), "zones": len(zones), "questions_per_run": questions,
        "listed_pairs": listed, "verdicts": counts, "rounds": args.rounds, "runs": runs,
        "summary": summary, "fastest_mailsec": best_mailsec,
        "ratio_median": ratio_median, "ratio_best": ratio_best, "ratio_cpu": ratio_cpu, "target_ratio": TARGET_RATIO,
        "verdict_disagreements": disagreements, "differing": differing, "network_violations": guard.violations,
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "dnspython": dns.version.version,
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{len(targets)} targets x {len(zones)} zones: {questions} lookups a run ({listed} listed pairs, verdicts {counts})"
    )
    for name, row in summary.items():
        print(
            f"  {name:<14} best {row['best_seconds']:7.3f} s ({row['best_lookups_per_second']:8.0f}/s)  median {row['median_seconds']:7.3f} s ({row['median_lookups_per_second']:8.0f}/s)  CPU {row['median_cpu_seconds']:.2f} s  knotd CPU {row['median_knotd_cpu_seconds']:.2f} s"
        )
    print(
        f"ratio ({best_mailsec} over dnspython one at a time): {ratio_median:.1f}x median, {ratio_best:.1f}x best (target {TARGET_RATIO:g}x)"
    )
    print(f"report: {args.output}")
    if disagreements or guard.violations:
        print(
            f"FAILED: {disagreements} runs disagreed on verdicts; network violations {guard.violations}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
