"""Timing a run of either side: wall time, DNS queries sent, and CPU time of it and of knotd."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .network import NetworkGuard


@dataclass
class Timings:
    """One side's timed runs, and what each cost."""

    runs: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)  # DNS queries sent, per run
    cpu: list[float] = field(default_factory=list)  # CPU seconds of the side (and its children)
    knot_cpu: list[float] = field(default_factory=list)  # knotd's CPU seconds in the same run

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def rate(count: int, seconds: float) -> float:
    """Items per second."""
    return count / seconds if seconds > 0 else float("inf")


def timings_summary(times: Timings, count: int, unit: str = "domain") -> dict[str, Any]:
    """A side's runs of `count` items (each a `unit`) for the JSON report."""
    return {
        "runs_seconds": [round(t, 3) for t in times.runs],
        "best_seconds": round(times.best, 3),
        "median_seconds": round(times.median, 3),
        f"best_{unit}s_per_second": round(rate(count, times.best), 1),
        f"median_{unit}s_per_second": round(rate(count, times.median), 1),
        f"dns_queries_per_{unit}": round(statistics.median(times.messages) / count, 1),
        "median_cpu_seconds": round(statistics.median(times.cpu), 2),
        "median_knotd_cpu_seconds": (
            round(statistics.median(times.knot_cpu), 2) if times.knot_cpu else None
        ),
    }


def time_ratios(theirs: Timings, mine: Timings) -> dict[str, float]:
    """Their time over mine: best run over best run, median over median."""
    return {
        "best": round(theirs.best / mine.best, 2),
        "median": round(theirs.median / mine.median, 2),
    }


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process (all its threads), from /proc; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, fields start at state
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its exited, reaped children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class Meter:
    """Times runs of `domains` items (each a `unit`), counting queries with `guard` and knotd's CPU."""

    guard: NetworkGuard
    knot_pid: int
    domains: int
    unit: str = "domain"

    def timed[R](self, timings: Timings, label: str, run: Callable[[], tuple[float, R]]) -> R:
        """Call `run`, record its time and costs in `timings`, print them; return its results."""
        before = self.guard.messages
        cpu = own_cpu_seconds()
        knot_cpu = process_cpu_seconds(self.knot_pid)
        seconds, results = run()
        knot_after = process_cpu_seconds(self.knot_pid)
        timings.runs.append(seconds)
        timings.messages.append(self.guard.messages - before)
        timings.cpu.append(own_cpu_seconds() - cpu)
        if knot_cpu is not None and knot_after is not None:
            timings.knot_cpu.append(knot_after - knot_cpu)
        knot = f", knotd {timings.knot_cpu[-1]:.2f} s" if timings.knot_cpu else ""
        print(
            f"  {label}: {seconds:.2f} s, {timings.messages[-1] / self.domains:.1f} DNS queries/{self.unit},"
            f" CPU {timings.cpu[-1]:.2f} s{knot}"
        )
        return results
