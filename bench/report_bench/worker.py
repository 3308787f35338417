"""One side parsing one file in a process of its own, for its peak memory.

`python -m report_bench.worker SIDE PATH [--memory-cap-bytes N]` prints one JSON line:
records, messages, wall and CPU seconds, the resident set before the parse (interpreter,
imports, the input file read) and its peak (VmHWM), or the error that stopped it (a
MemoryError under the cap). The network guard refuses any non-loopback socket use.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from throughput.network import NetworkGuard

from .sides import SIDES


def _rss_peak_bytes() -> int:
    """This process's peak resident set (VmHWM).

    Not ru_maxrss: Linux carries that over exec from the parent, so a child of a process that
    grew large would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=sorted(SIDES))
    parser.add_argument("path", type=Path)
    parser.add_argument("--memory-cap-bytes", type=int, default=0)
    parser.add_argument(
        "--parsedmarc-limit-bytes",
        type=int,
        default=0,
        help="raise parsedmarc's decompressed-report limit (100 MiB) to measure larger reports",
    )
    args = parser.parse_args()
    guard = NetworkGuard()
    sys.addaudithook(guard)
    guard.enabled = True
    parse = SIDES[args.side]
    # Import the side's code and read the file once outside the measurement, so the baseline
    # holds the interpreter, the libraries and the input.
    if args.side == "mailsec":
        import reports.parse  # noqa: F401
    else:
        import parsedmarc  # type: ignore[import-untyped]

        if args.parsedmarc_limit_bytes:
            # A module global parsedmarc reads on every call, there to be raised.
            parsedmarc.MAX_DECOMPRESSED_REPORT_SIZE = args.parsedmarc_limit_bytes
    args.path.read_bytes()
    baseline = _rss_peak_bytes()
    if args.memory_cap_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_cap_bytes, args.memory_cap_bytes))
    result: dict[str, object] = {"side": args.side, "baseline_rss": baseline}
    started = time.perf_counter()
    cpu = time.process_time()
    try:
        records, messages = parse(args.path)
    except MemoryError:
        result["error"] = f"MemoryError under a {args.memory_cap_bytes} byte address-space cap"
    else:
        result.update(records=records, messages=messages)
    result["seconds"] = time.perf_counter() - started
    result["cpu"] = time.process_time() - cpu
    result["peak_rss"] = _rss_peak_bytes()
    result["network_violations"] = guard.violations
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
