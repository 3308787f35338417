"""The measurements: throughput in this process, peak memory in a process per side and size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sides import SIDES

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent


@dataclass
class Throughput:
    """One side's rounds over a set of files: the seconds of each round, and what it read."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds of this process, per round
    records: int = 0
    messages: int = 0
    per_file: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def rate(self) -> float:
        return self.records / self.best if self.best > 0 else float("inf")

    @property
    def cpu_rate(self) -> float:
        """Records per CPU second (best round): steadier than wall time on a shared machine."""
        best = min(self.cpu)
        return self.records / best if best > 0 else float("inf")


def throughput(side: str, files: list[Path], rounds: int) -> Throughput:
    """Parse every file `rounds` times; records/s from the best round."""
    parse = SIDES[side]
    result = Throughput()
    parse(files[0])  # warm-up: imports, caches
    for _ in range(rounds):
        records = messages = 0
        started = time.perf_counter()
        cpu = time.process_time()
        for path in files:
            found = parse(path)
            result.per_file[path.name] = found
            records += found[0]
            messages += found[1]
        result.seconds.append(time.perf_counter() - started)
        result.cpu.append(time.process_time() - cpu)
        result.records, result.messages = records, messages
    return result


def peak_memory(
    side: str, path: Path, *, cap_bytes: int, timeout: float, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """One parse of `path` by `side` in a fresh process: its JSON line, or why there is none."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH), str(REPO), environment.get("PYTHONPATH", "")]
    )
    command = [sys.executable, "-m", "report_bench.worker", side, str(path)]
    if cap_bytes:
        command += ["--memory-cap-bytes", str(cap_bytes)]
    command += list(extra)
    started = time.perf_counter()
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=environment, check=False
        )
    except subprocess.TimeoutExpired:
        return {"side": side, "error": f"stopped after {timeout:.0f} s", "seconds": timeout}
    lines = finished.stdout.strip().splitlines()
    if finished.returncode != 0 or not lines:
        tail = (finished.stderr or "").strip().splitlines()[-3:]
        return {
            "side": side,
            "error": f"exit {finished.returncode}: {' | '.join(tail)}",
            "seconds": time.perf_counter() - started,
        }
    return json.loads(lines[-1])  # type: ignore[no-any-return]
