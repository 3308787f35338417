"""mailsec's side: run_many in this process, and one worker node of forked processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .fixtures import KNOT_ADDRESS
from .network import DNS_TIMEOUT, NetworkGuard

if TYPE_CHECKING:
    from dns_records.resolver import Resolver
    from dns_records.results import CheckOutcome

# dns_records and mailsec are imported inside the functions: only after django.setup().

ONLY = frozenset({"spf", "dmarc", "mx"})

type MailsecResults = dict[str, dict[str, CheckOutcome]]  # domain -> check name -> outcome


def mailsec_resolver(port: int) -> Resolver:
    """mailsec's resolver, asking only the fixtures' knotd, with the same limit as checkdmarc."""
    from dns_records.resolver import Resolver
    from mailsec.env import Nameserver

    return Resolver(nameservers=[Nameserver(KNOT_ADDRESS, port)], timeout=DNS_TIMEOUT)


def production_batch_size() -> int:
    """How many domains beat puts in one `check_domains_batch` task."""
    from dns_records.tasks import BATCH_SIZE

    return BATCH_SIZE


def mailsec_run(
    domains: Sequence[str], resolver: Resolver, workers: int
) -> tuple[float, MailsecResults]:
    """run_many on `domains` with `workers` threads: its wall time, and outcomes by check."""
    from dns_records.runner import run_many

    start = time.perf_counter()
    results = run_many(
        domains,
        resolver,
        report_address=lambda _domain: "reports@mailsec.test",
        only=ONLY,
        max_workers=workers,
    )
    elapsed = time.perf_counter() - start
    return elapsed, {d: {o.name: o for o in outcomes} for d, outcomes in results.items()}


# One worker node: what `celery worker --pool=prefork` does with beat's batches. The pool's
# processes are forked from this one after Django is set up, so each starts with what the
# parent holds: settings, imports, the resolver, the network guard (audit hooks survive fork)
# and, with --rtt-ms, the simulated round trip.
_node_state: dict[str, Any] = {}


@dataclass(frozen=True)
class NodeBatch:
    """What one pool process sends back for one batch."""

    pid: int
    size: int
    seconds: float  # wall time of run_many on this batch
    cpu_seconds: float  # this process's CPU time for the batch
    messages: int  # DNS queries sent (the guard's count in this process)
    violations: list[str]
    results: MailsecResults


@dataclass(frozen=True)
class NodeRun:
    """One timed worker-node run, besides its end-to-end time and results."""

    startup_seconds: float  # creating the pool: forking its processes
    batches: list[NodeBatch]


def _node_init(resolver: Resolver, guard: NetworkGuard, threads: int) -> None:
    _node_state.update(resolver=resolver, guard=guard, threads=threads)


def _node_batch(batch: list[str]) -> NodeBatch:
    """One `check_domains_batch` task, minus the database: run_many on the batch."""
    guard: NetworkGuard = _node_state["guard"]
    messages, violations = guard.messages, len(guard.violations)
    cpu = time.process_time()
    seconds, results = mailsec_run(batch, _node_state["resolver"], _node_state["threads"])
    return NodeBatch(
        pid=os.getpid(),
        size=len(batch),
        seconds=seconds,
        cpu_seconds=time.process_time() - cpu,
        messages=guard.messages - messages,
        violations=guard.violations[violations:],
        results=results,
    )


def mailsec_node_run(
    domains: Sequence[str],
    resolver: Resolver,
    guard: NetworkGuard,
    *,
    processes: int,
    threads: int,
    batch_size: int,
) -> tuple[float, tuple[MailsecResults, NodeRun]]:
    """Check `domains` on a fresh pool of `processes` forked processes, `batch_size` at a time.

    Each process takes the next batch when it is free (chunksize 1), as prefork children take
    tasks, and runs run_many on it with `threads` threads. The time runs from before the pool
    is created until every process has exited: start-up and shut-down are included.
    """
    # Forking while other threads run can copy a lock some thread holds. The only ones left
    # are run_many's finished pools winding down; let them go first.
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(timeout=5)
    batches = [list(domains[i : i + batch_size]) for i in range(0, len(domains), batch_size)]
    context = multiprocessing.get_context("fork")
    results: MailsecResults = {}
    done: list[NodeBatch] = []
    start = time.perf_counter()
    pool = context.Pool(processes, initializer=_node_init, initargs=(resolver, guard, threads))
    startup = time.perf_counter() - start
    try:
        for batch in pool.imap_unordered(_node_batch, batches, chunksize=1):
            results.update(batch.results)
            done.append(batch)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    elapsed = time.perf_counter() - start
    guard.messages += sum(b.messages for b in done)
    guard.violations.extend(v for b in done for v in b.violations)
    return elapsed, (results, NodeRun(startup, done))
