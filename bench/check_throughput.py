"""Throughput of mailsec's SPF + DMARC + MX checks against checkdmarc, on the same domains.

Generates N fixture domains (a seeded, realistic mix of good and broken set-ups), serves them
from a private knotd on 127.0.0.20, then times, in the same process and run:

- mailsec, single process: `dns_records.checks.run_many(..., only={"spf", "dmarc", "mx"})` on
  a thread pool;
- mailsec, one worker node: as a Celery prefork worker runs beat's batches, a pool of
  os.cpu_count() processes forked from this one, each taking the next batch of 200 domains and
  running run_many on it; timed from before the pool starts until its processes have exited;
- checkdmarc: `checkdmarc.check_domains` on every domain, one after the other in this one
  process, as it runs;
- checkdmarc's own SPF, DMARC and MX functions (`check_spf`, `check_dmarc`, `check_mx`), one
  domain after the other, because `check_domains` also does DNSSEC, SOA, NS, MTA-STS,
  TLS-RPT and BIMI.

Neither side keeps DNS answers from one domain for the next: mailsec's answer cache lives for
one domain's checks, and checkdmarc's module caches are cleared before each domain (so it too
reuses answers only within a domain). A network guard (an audit hook) refuses any socket use
beyond 127.0.0.0/8 and fails the run if anything tried.

Then it checks that both reach the same SPF and DMARC verdicts, at two levels: valid or
invalid, and clean or with problems. The few differences that follow from what each tool
reports on purpose are listed in EXPECTED_DIFFERENCES; any other difference exits 1.

    .venv/bin/python bench/check_throughput.py [--domains 1000] [--rounds 3]
        [--workers 1,4,16,32,64] [--node-processes CPUS] [--node-threads N]
        [--batch-size 200] [--rtt-ms 0] [--seed N] [--output PATH]

mailsec's single-process pool size is the fastest of --workers (by median); the worker node's
threads per process are --node-threads, or the fastest of --workers in round 1. The worker
node's outcomes must equal the single-process run's, check by check. --rtt-ms adds a simulated
round trip to every query of both sides, to see the ratio against a distant resolver.

Writes var/bench/check_throughput.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")
os.environ.setdefault("MAILSEC_DEBUG", "1")

if TYPE_CHECKING:
    from dns_records.resolver import Resolver
    from dns_records.results import CheckOutcome

KNOT_ADDRESS = "127.0.0.20"  # the test suite's Knot instances use 127.0.0.10
DNS_TIMEOUT = 2.0
ONLY = frozenset({"spf", "dmarc", "mx"})
RESULTS = REPO / "var" / "bench" / "check_throughput.json"
TLD = "test"
SPF_PROVIDER = "spf-provider.test"
MAIL_PROVIDER = "mail-provider.test"
DMARC_PROVIDER = "dmarc-provider.test"
DNS_HOST = "dns-host.test"
HOSTING = "hosting.test"
SOA = f"@ SOA ns1.{DNS_HOST}. hostmaster.{DNS_HOST}. 1 7200 3600 1209600 300"
SPF_INCLUDE = f"include:_spf.{SPF_PROVIDER}"
CHAIN_LENGTH = 10  # include chain01 .. chain10: with the record's own `mx`, 11 lookups


# --------------------------------------------------------------------------------------------
# Fixture domains


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int  # relative share of the generated domains
    description: str


VARIANTS = [
    Variant("good_mx", 18, "two own MX with A records, v=spf1 mx -all, DMARC p=reject + rua"),
    Variant("good_include", 18, "provider MX (A+AAAA), SPF include with nested include, -all"),
    Variant("softfail", 8, "SPF ends in ~all"),
    Variant("plus_all", 3, "SPF ends in +all"),
    Variant("no_spf", 8, "no SPF record (other TXT records only)"),
    Variant("two_spf", 3, "two SPF records"),
    Variant("spf_too_many_lookups", 3, "SPF include chain needing 11 lookups"),
    Variant("dmarc_none", 10, "DMARC p=none"),
    Variant("no_dmarc", 10, "no DMARC record"),
    Variant("dmarc_syntax_error", 4, "DMARC record that does not parse"),
    Variant("single_mx", 10, "a single MX host"),
    Variant("mx_without_address", 5, "second MX host has no address record"),
]


@dataclass(frozen=True)
class FixtureDomain:
    name: str
    variant: str


def _txt(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _zone(origin: str, lines: Iterable[str]) -> str:
    head = [f"$ORIGIN {origin}.", "$TTL 300", SOA, f"@ NS ns1.{DNS_HOST}.", f"@ NS ns2.{DNS_HOST}."]
    return "\n".join([*head, *lines]) + "\n"


def _host_name(address: str) -> str:
    return f"host-{address.replace('.', '-')}.{HOSTING}"


def _domain_zone(name: str, variant: str, index: int, rng: random.Random) -> str:
    """The zone of one fixture domain of the given variant."""
    provider_mx = variant == "good_include" or (
        variant not in {"good_mx", "single_mx", "mx_without_address"} and rng.random() < 0.4
    )
    lines: list[str] = []
    mx1, mx2 = f"192.0.2.{1 + index % 250}", f"198.51.100.{130 + index % 120}"
    if provider_mx:
        lines += [f"@ MX 10 mx1.{MAIL_PROVIDER}.", f"@ MX 20 mx2.{MAIL_PROVIDER}."]
    elif variant == "single_mx":
        lines += ["@ MX 10 mx1", f"mx1 A {mx1}"]
    elif variant == "mx_without_address":
        lines += ["@ MX 10 mx1", "@ MX 20 backup-mx", f"mx1 A {mx1}", 'backup-mx TXT "retired"']
    else:
        lines += ["@ MX 10 mx1", "@ MX 20 mx2", f"mx1 A {mx1}", f"mx2 A {mx2}"]
    lines += [f"@ A {mx1}", f"www CNAME {name}."]

    good_spf = f"v=spf1 {SPF_INCLUDE} -all" if provider_mx else "v=spf1 mx -all"
    spf: list[str] = {
        "softfail": [good_spf.replace("-all", "~all")],
        "plus_all": [good_spf.replace("-all", "+all")],
        "no_spf": [],
        "two_spf": ["v=spf1 mx -all", f"v=spf1 {SPF_INCLUDE} -all"],
        "spf_too_many_lookups": [f"v=spf1 mx include:chain01.{SPF_PROVIDER} -all"],
    }.get(variant, [good_spf])
    other_txt = [f"site-verification={rng.getrandbits(64):016x}"] if rng.random() < 0.6 else []
    lines += [f"@ TXT {_txt(text)}" for text in [*spf, *other_txt]]

    external_rua = variant == "good_include" or rng.random() < 0.3
    rua = f"mailto:agg@reports.{DMARC_PROVIDER}" if external_rua else f"mailto:dmarc@{name}"
    dmarc: str | None = {
        "dmarc_none": f"v=DMARC1; p=none; rua={rua}",
        "no_dmarc": None,
        "dmarc_syntax_error": rng.choice(
            [f"v=DMARC1; p=rejected; rua={rua}", f"v=DMARC1; p=reject; rua=dmarc@{name}"]
        ),
    }.get(variant, f"v=DMARC1; p=reject; rua={rua}")
    if dmarc is not None:
        lines.append(f"_dmarc TXT {_txt(dmarc)}")
    return _zone(name, lines)


def _shared_zones(domains: Sequence[str]) -> dict[str, str]:
    """The zones every fixture domain leans on: the TLD, providers, reverse DNS."""
    v4 = [f"192.0.2.{n}" for n in range(1, 255)] + [f"198.51.100.{n}" for n in range(1, 255)]
    chain = [
        f"chain{n:02d} TXT {_txt(f'v=spf1 include:chain{n + 1:02d}.{SPF_PROVIDER} -all')}"
        for n in range(1, CHAIN_LENGTH)
    ]
    chain.append(f"chain{CHAIN_LENGTH:02d} TXT {_txt('v=spf1 ip4:198.51.100.0/24 -all')}")
    ip6_reverse = "5.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"  # 2001:db8:25::/48
    delegated = [*domains, SPF_PROVIDER, MAIL_PROVIDER, DMARC_PROVIDER, DNS_HOST, HOSTING]
    return {
        TLD: _zone(
            TLD,
            [
                f"{d.removesuffix('.' + TLD)} NS ns{k}.{DNS_HOST}."
                for d in delegated
                for k in (1, 2)
            ],
        ),
        DNS_HOST: _zone(DNS_HOST, ["ns1 A 192.0.2.253", "ns2 A 198.51.100.253"]),
        SPF_PROVIDER: _zone(
            SPF_PROVIDER,
            [
                f"_spf TXT {_txt(f'v=spf1 ip4:198.51.100.0/25 include:_netblocks.{SPF_PROVIDER} -all')}",
                f"_netblocks TXT {_txt('v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:25::/48 -all')}",
                *chain,
            ],
        ),
        MAIL_PROVIDER: _zone(
            MAIL_PROVIDER,
            [
                "mx1 A 198.51.100.25",
                "mx1 AAAA 2001:db8:25::1",
                "mx2 A 198.51.100.26",
                "mx2 AAAA 2001:db8:25::2",
            ],
        ),
        DMARC_PROVIDER: _zone(
            DMARC_PROVIDER,
            [
                f"reports MX 10 mx1.{MAIL_PROVIDER}.",
                f"*._report._dmarc.reports TXT {_txt('v=DMARC1')}",
            ],
        ),
        HOSTING: _zone(HOSTING, [f"{_host_name(a).split('.')[0]} A {a}" for a in v4]),
        "2.0.192.in-addr.arpa": _zone(
            "2.0.192.in-addr.arpa",
            [f"{n} PTR {_host_name(f'192.0.2.{n}')}." for n in range(1, 255)],
        ),
        "100.51.198.in-addr.arpa": _zone(
            "100.51.198.in-addr.arpa",
            [f"{n} PTR {_host_name(f'198.51.100.{n}')}." for n in range(1, 255)],
        ),
        ip6_reverse: _zone(
            ip6_reverse,
            [
                f"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mx1.{MAIL_PROVIDER}.",
                f"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mx2.{MAIL_PROVIDER}.",
            ],
        ),
    }


def write_fixtures(directory: Path, count: int, seed: int) -> list[FixtureDomain]:
    """Write one zone file per domain (and the shared zones); return the domains, in order."""
    rng = random.Random(seed)  # noqa: S311  (fixture data, not security)
    names = [f"d{n:04d}.{TLD}" for n in range(count)]
    # Every variant at least once (when there are enough domains), then by weight.
    chosen = [v.name for v in VARIANTS][:count]
    chosen += rng.choices(
        [v.name for v in VARIANTS], weights=[v.weight for v in VARIANTS], k=count - len(chosen)
    )
    rng.shuffle(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    domains = []
    for index, (name, variant) in enumerate(zip(names, chosen, strict=True)):
        (directory / f"{name}.zone").write_text(_domain_zone(name, variant, index, rng))
        domains.append(FixtureDomain(name, variant))
    for zone, text in _shared_zones(names).items():
        (directory / f"{zone}.zone").write_text(text)
    return domains


# --------------------------------------------------------------------------------------------
# Keep everything on loopback


class NetworkGuard:
    """An audit hook that refuses any socket use beyond 127.0.0.0/8 and remembers each try.

    The fixture names resolve only through our Knot; a lookup through the system's resolver,
    an SMTP or HTTPS connection to a fixture address, would leave the machine.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.enabled = False
        self.messages = 0  # UDP datagrams sent and TCP connections made: DNS queries, here

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.enabled or not event.startswith("socket."):
            return
        if event in {"socket.sendto", "socket.connect"}:
            self.messages += 1
        host: object
        if event in {"socket.connect", "socket.sendto", "socket.sendmsg"}:
            address = args[1]
            if not isinstance(address, tuple):  # AF_UNIX path, or None for sendmsg
                return
            host = address[0]
        elif event in {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"}:
            host = args[0]
            if host is None:
                return
        else:
            return
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        try:
            loopback = ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            loopback = False  # a name: would go to the system's resolver
        if not loopback:
            self.violations.append(f"{event} {host}")
            raise PermissionError(f"bench network guard: {event} to {host} refused")


def simulate_round_trip(seconds: float) -> None:
    """Make every query to a Do53 name server, from either side, wait `seconds` first.

    Both sides send each query through `dns.nameserver.Do53Nameserver.query`. The wait is a
    sleep, which like a network wait releases the GIL: this models a resolver that far away
    (one round trip per query, TCP's handshake not counted), at no CPU cost.
    """
    import dns.nameserver

    original = dns.nameserver.Do53Nameserver.query

    @functools.wraps(original)
    def query(self: dns.nameserver.Do53Nameserver, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return original(self, *args, **kwargs)

    dns.nameserver.Do53Nameserver.query = query  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# The two sides


def mailsec_run(
    domains: Sequence[str], resolver: Resolver, workers: int
) -> tuple[float, dict[str, dict[str, CheckOutcome]]]:
    from dns_records.checks import run_many

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
    results: dict[str, dict[str, CheckOutcome]]


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
) -> tuple[float, tuple[dict[str, dict[str, CheckOutcome]], NodeRun]]:
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
    results: dict[str, dict[str, CheckOutcome]] = {}
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


def clear_checkdmarc_caches() -> None:
    """Forget every answer checkdmarc keeps between calls (30 minutes by default)."""
    import checkdmarc.dnssec
    import checkdmarc.smtp
    import checkdmarc.utils

    for cache in (
        checkdmarc.utils.DNS_CACHE,
        checkdmarc.utils._NAMESERVER_FAILURES,
        checkdmarc.dnssec.DNSSEC_CACHE,
        checkdmarc.dnssec.DNSKEY_CACHE,
        checkdmarc.dnssec.TLSA_CACHE,
        checkdmarc.smtp.TLS_CACHE,
        checkdmarc.smtp.STARTTLS_CACHE,
    ):
        cache.clear()


def checkdmarc_options(port: int, *, prebuilt_resolver: bool) -> dict[str, Any]:
    """DNS options for every checkdmarc call: only our Knot, 2 s, no retries.

    `nameservers` alone is how the docs say to point checkdmarc at a server; it then builds a
    `dns.resolver.Resolver()` per query (reading /etc/resolv.conf each time). A prebuilt
    `resolver` skips that; the DNSSEC checks take `nameservers` only, so both are passed.
    """
    import dns.nameserver
    import dns.resolver

    nameserver = dns.nameserver.Do53Nameserver(KNOT_ADDRESS, port)
    options: dict[str, Any] = {"nameservers": [nameserver], "timeout": DNS_TIMEOUT, "retries": 0}
    if prebuilt_resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [nameserver]
        resolver.timeout = min(1.0, DNS_TIMEOUT)  # as checkdmarc sets its own
        resolver.lifetime = DNS_TIMEOUT
        resolver.cache = None
        options["resolver"] = resolver
    return options


def checkdmarc_domains_run(
    domains: Sequence[str], options: dict[str, Any]
) -> tuple[float, dict[str, dict[str, Any]]]:
    """`checkdmarc.check_domains`, one domain at a time, its caches cleared before each."""
    import checkdmarc

    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for domain in domains:
        clear_checkdmarc_caches()
        # check_mx_tls=False: no SMTP connections (skip_tls is a deprecated no-op in 6.x).
        result = checkdmarc.check_domains([domain], check_mx_tls=False, **options)
        assert isinstance(result, dict)
        results[domain] = {"spf": result["spf"], "dmarc": result["dmarc"], "mx": result["mx"]}
    return time.perf_counter() - start, results


def checkdmarc_functions_run(
    domains: Sequence[str], options: dict[str, Any]
) -> tuple[float, dict[str, dict[str, Any]]]:
    """checkdmarc's own SPF, DMARC and MX checks only, one domain at a time."""
    from checkdmarc.dmarc import check_dmarc
    from checkdmarc.smtp import check_mx
    from checkdmarc.spf import check_spf

    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for domain in domains:
        clear_checkdmarc_caches()
        results[domain] = {
            "mx": check_mx(domain, check_mx_tls=False, **options),
            "spf": check_spf(domain, **options),
            "dmarc": check_dmarc(domain, **options),
        }
    return time.perf_counter() - start, results


# --------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Verdict:
    valid: bool  # a receiver can use the record (no permerror, no missing/ignored record)
    clean: bool  # and the tool reports no problem at all
    reason: str  # one line: what the tool said

    @property
    def label(self) -> str:
        return "ok" if self.clean else ("problems" if self.valid else "invalid")


# mailsec fails these SPF records on policy although receivers can evaluate them.
SPF_POLICY_FAILS = ("SPF ends in +all", "SPF ends in ?all", "SPF has no 'all' term")


def mailsec_verdict(outcome: CheckOutcome) -> Verdict:
    status = str(outcome.status)
    reason = f"{status}: {outcome.summary}"
    if status == "error":
        return Verdict(valid=False, clean=False, reason=reason)
    if outcome.name == "spf" and status == "fail":
        fails = [
            str(f["message"])
            for f in outcome.details.get("findings", [])
            if f.get("status") == "fail"
        ]
        policy_only = bool(fails) and all(m.startswith(SPF_POLICY_FAILS) for m in fails)
        return Verdict(valid=policy_only, clean=False, reason=reason)
    return Verdict(valid=status != "fail", clean=status == "ok", reason=reason)


def checkdmarc_verdict(result: dict[str, Any]) -> Verdict:
    valid = bool(result.get("valid"))
    problems = [str(w) for w in result.get("warnings") or []]
    if not valid:
        reason = f"invalid: {result.get('error', '')}"
    elif problems:
        reason = f"warning: {problems[0]}" + (
            f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        )
    else:
        reason = "ok"
    return Verdict(valid=valid, clean=valid and not problems, reason=" ".join(reason.split()))


# (variant, check, level) -> why the two tools differ there by design. level: valid | clean.
EXPECTED_DIFFERENCES: dict[tuple[str, str, str], str] = {
    ("softfail", "spf", "clean"): "mailsec warns that ~all only softfails; checkdmarc accepts it",
    ("plus_all", "spf", "clean"): (
        "mailsec fails +all (it authorises every sender); checkdmarc reports nothing"
    ),
    ("mx_without_address", "spf", "clean"): (
        "checkdmarc's SPF check warns that an MX host behind `mx` has no address; "
        "mailsec reports that host in its MX check, not under SPF"
    ),
}


@dataclass
class Comparison:
    agree: Counter[str] = field(default_factory=Counter)  # "spf valid", "dmarc clean", ...
    total: Counter[str] = field(default_factory=Counter)
    expected: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[dict[str, str]] = field(default_factory=list)


def compare(
    domains: Sequence[FixtureDomain],
    mailsec: dict[str, dict[str, CheckOutcome]],
    other: dict[str, dict[str, Any]],
) -> Comparison:
    comparison = Comparison()
    for fixture in domains:
        for check in ("spf", "dmarc"):
            ours = mailsec_verdict(mailsec[fixture.name][check])
            theirs = checkdmarc_verdict(other[fixture.name][check])
            for level in ("valid", "clean"):
                key = f"{check} {level}"
                comparison.total[key] += 1
                if getattr(ours, level) == getattr(theirs, level):
                    comparison.agree[key] += 1
                    continue
                row = {
                    "domain": fixture.name,
                    "variant": fixture.variant,
                    "check": check,
                    "level": level,
                    "mailsec": ours.label,
                    "checkdmarc": theirs.label,
                    "mailsec_reason": ours.reason,
                    "checkdmarc_reason": theirs.reason,
                }
                why = EXPECTED_DIFFERENCES.get((fixture.variant, check, level))
                if why is None:
                    comparison.unexpected.append(row)
                else:
                    comparison.expected[f"{fixture.variant} / {check} {level}"].append(
                        {**row, "why": why}
                    )
    return comparison


def compare_mailsec(
    domains: Sequence[FixtureDomain],
    reference: dict[str, dict[str, CheckOutcome]],
    other: dict[str, dict[str, CheckOutcome]],
) -> list[dict[str, str]]:
    """Where two mailsec runs differ: a domain missing, or any check's outcome (status,
    summary, details with every finding). Equal outcomes give equal SPF and DMARC verdicts."""
    differences: list[dict[str, str]] = []
    for fixture in domains:
        ours, theirs = reference.get(fixture.name), other.get(fixture.name)
        if ours is None or theirs is None:
            differences.append(
                {
                    "domain": fixture.name,
                    "variant": fixture.variant,
                    "check": "*",
                    "single_process": "present" if ours else "missing",
                    "worker_node": "present" if theirs else "missing",
                }
            )
            continue
        for check in sorted(ONLY):
            a, b = ours[check], theirs[check]
            if a != b:
                differences.append(
                    {
                        "domain": fixture.name,
                        "variant": fixture.variant,
                        "check": check,
                        "single_process": f"{a.status}: {a.summary}",
                        "worker_node": f"{b.status}: {b.summary}",
                    }
                )
    return differences


def verdict_signature(
    domains: Sequence[FixtureDomain],
    results: dict[str, dict[str, Any]],
    judge: Callable[..., Verdict],
) -> list[tuple[str, str, str]]:
    """Each domain's SPF and DMARC labels: equal across runs when nothing flaked."""
    return [
        (d.name, judge(results[d.name]["spf"]).label, judge(results[d.name]["dmarc"]).label)
        for d in domains
    ]


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Timings:
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


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _parse_workers(text: str) -> list[int]:
    workers = [int(w) for w in text.split(",") if w.strip()]
    if not workers or min(workers) < 1:
        raise argparse.ArgumentTypeError("--workers takes positive integers, e.g. 16,32,64")
    return workers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=1000, help="fixture domains (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each side (3)")
    parser.add_argument(
        "--workers",
        type=_parse_workers,
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
    args = parser.parse_args(argv)
    if args.domains < 1 or args.rounds < 1 or args.rtt_ms < 0:
        parser.error("--domains and --rounds must be at least 1, --rtt-ms not negative")
    if args.node_processes < 1 or (args.node_threads or 1) < 1 or (args.batch_size or 1) < 1:
        parser.error("--node-processes, --node-threads and --batch-size must be at least 1")
    if shutil.which("knotd") is None:
        print("check_throughput: knotd is not installed (scripts/install-system-deps)")
        return 2

    import django

    django.setup()
    from dns_records.resolver import Resolver
    from dns_records.tasks import BATCH_SIZE
    from mailsec.env import Nameserver
    from tests.servers import KnotServer

    if args.batch_size is None:
        args.batch_size = BATCH_SIZE
    guard = NetworkGuard()
    sys.addaudithook(guard)
    # The deprecation of skip_tls, and any others, are not what this measures.
    warnings.simplefilter("ignore", DeprecationWarning)

    with tempfile.TemporaryDirectory(prefix="mailsec-bench-") as tmp:
        fixtures = write_fixtures(Path(tmp) / "fixtures", args.domains, args.seed)
        knot_dir = Path(tmp) / "knot"
        knot_dir.mkdir()
        knot = KnotServer(knot_dir, address=KNOT_ADDRESS, source=Path(tmp) / "fixtures")
        started = time.perf_counter()
        try:
            knot.start()
            knot_start = time.perf_counter() - started
            print(
                f"knotd serving {len(knot.zones)} zones on {knot.nameserver} ({knot_start:.1f} s)"
            )
            resolver = Resolver(
                nameservers=[Nameserver(KNOT_ADDRESS, knot.port)], timeout=DNS_TIMEOUT
            )
            if args.rtt_ms:
                simulate_round_trip(args.rtt_ms / 1000)
            guard.enabled = True
            assert knot.process is not None
            report = measure(args, fixtures, knot.port, knot.process.pid, resolver, guard)
        finally:
            guard.enabled = False
            knot.stop()
    report["knot_start_seconds"] = round(knot_start, 2)
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output}")
    return 0 if report["passed"] else 1


def measure(
    args: argparse.Namespace,
    fixtures: list[FixtureDomain],
    port: int,
    knot_pid: int,
    resolver: Resolver,
    guard: NetworkGuard,
) -> dict[str, Any]:
    names = [f.name for f in fixtures]
    count = len(names)
    options = checkdmarc_options(port, prebuilt_resolver=True)
    plain_options = checkdmarc_options(port, prebuilt_resolver=False)

    # Warm up both sides (imports, compiled patterns, the public suffix list).
    warm = names[: min(count, 24)]
    mailsec_run(warm, resolver, max(args.workers))
    checkdmarc_domains_run(warm, options)
    node = functools.partial(
        mailsec_node_run,
        resolver=resolver,
        guard=guard,
        processes=args.node_processes,
        batch_size=args.batch_size,
    )
    node(warm, threads=args.node_threads or 1)
    # The worker node's threads per process: --node-threads, or else the single-process pool
    # size that was fastest in round 1, kept for every round so all node runs are alike.
    node_threads: int | None = args.node_threads
    node_threads_from = (
        "--node-threads" if node_threads else "fastest single-process pool size in round 1"
    )

    mailsec_times = {w: Timings() for w in args.workers}
    domains_times, functions_times, plain_times = Timings(), Timings(), Timings()
    mailsec_results: dict[int, dict[str, dict[str, CheckOutcome]]] = {}
    node_times = Timings()
    node_runs: list[tuple[dict[str, dict[str, CheckOutcome]], NodeRun]] = []
    domains_results: dict[str, dict[str, Any]] = {}
    functions_results: dict[str, dict[str, Any]] = {}
    signatures: dict[str, set[tuple[tuple[str, str, str], ...]]] = defaultdict(set)
    mailsec_errors: Counter[str] = Counter()

    def timed[R](timings: Timings, label: str, run: Callable[[], tuple[float, R]]) -> R:
        before, cpu, knot_cpu = guard.messages, own_cpu_seconds(), process_cpu_seconds(knot_pid)
        seconds, results = run()
        knot_after = process_cpu_seconds(knot_pid)
        timings.runs.append(seconds)
        timings.messages.append(guard.messages - before)
        timings.cpu.append(own_cpu_seconds() - cpu)
        if knot_cpu is not None and knot_after is not None:
            timings.knot_cpu.append(knot_after - knot_cpu)
        knot = f", knotd {timings.knot_cpu[-1]:.2f} s" if timings.knot_cpu else ""
        print(
            f"  {label}: {seconds:.2f} s, {timings.messages[-1] / count:.1f} DNS queries/domain,"
            f" CPU {timings.cpu[-1]:.2f} s{knot}"
        )
        return results

    def note_mailsec(results: dict[str, dict[str, CheckOutcome]]) -> None:
        signatures["mailsec"].add(tuple(verdict_signature(fixtures, results, mailsec_verdict)))
        mailsec_errors.update(
            f"{check}: {outcome.summary}"
            for outcomes in results.values()
            for check, outcome in outcomes.items()
            if str(outcome.status) == "error"
        )

    def run_mailsec() -> None:
        nonlocal node_threads
        for workers in args.workers:
            results = timed(
                mailsec_times[workers],
                f"mailsec, {workers} workers",
                functools.partial(mailsec_run, names, resolver, workers),
            )
            mailsec_results[workers] = results
            note_mailsec(results)
        if node_threads is None:
            node_threads = min(args.workers, key=lambda w: mailsec_times[w].runs[-1])
        results, run = timed(
            node_times,
            f"mailsec worker node, {args.node_processes} processes x {node_threads} threads,"
            f" batches of {args.batch_size}",
            functools.partial(node, names, threads=node_threads),
        )
        node_runs.append((results, run))
        note_mailsec(results)
        print(
            f"    pool start-up {run.startup_seconds:.3f} s; batches:"
            f" {', '.join(f'{b.seconds:.2f} s' for b in run.batches)}"
        )

    def run_checkdmarc() -> None:
        nonlocal domains_results, functions_results
        domains_results = timed(
            domains_times,
            "checkdmarc.check_domains",
            lambda: checkdmarc_domains_run(names, options),
        )
        functions_results = timed(
            functions_times,
            "checkdmarc check_mx + check_spf + check_dmarc",
            lambda: checkdmarc_functions_run(names, options),
        )
        for results in (domains_results, functions_results):
            signatures["checkdmarc"].add(
                tuple(verdict_signature(fixtures, results, checkdmarc_verdict))
            )

    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}, {count} domains")
        # Alternate which side goes first, so neither always runs on a warmer machine.
        steps = [run_mailsec, run_checkdmarc]
        for step in steps if round_ % 2 == 0 else reversed(steps):
            step()
    print("reference run")
    timed(
        plain_times,
        "checkdmarc.check_domains with nameservers= only",
        lambda: checkdmarc_domains_run(names, plain_options),
    )

    chosen = min(args.workers, key=lambda w: (mailsec_times[w].median, mailsec_times[w].best))
    ours = mailsec_times[chosen]
    comparison = compare(fixtures, mailsec_results[chosen], domains_results)
    functions_comparison = compare(fixtures, mailsec_results[chosen], functions_results)
    node_differences = [
        {"run": n + 1, **row}
        for n, (results, _run) in enumerate(node_runs)
        for row in compare_mailsec(fixtures, mailsec_results[chosen], results)
    ]
    stable = {side: len(found) == 1 for side, found in signatures.items()}
    passed = (
        not comparison.unexpected
        and not functions_comparison.unexpected
        and not node_differences
        and not guard.violations
        and not mailsec_errors
        and all(stable.values())
    )

    def side(times: Timings) -> dict[str, Any]:
        return {
            "runs_seconds": [round(t, 3) for t in times.runs],
            "best_seconds": round(times.best, 3),
            "median_seconds": round(times.median, 3),
            "best_domains_per_second": round(_rate(count, times.best), 1),
            "median_domains_per_second": round(_rate(count, times.median), 1),
            "dns_queries_per_domain": round(statistics.median(times.messages) / count, 1),
            "median_cpu_seconds": round(statistics.median(times.cpu), 2),
            "median_knotd_cpu_seconds": (
                round(statistics.median(times.knot_cpu), 2) if times.knot_cpu else None
            ),
        }

    startups = [run.startup_seconds for _results, run in node_runs]
    node_bare = Timings(runs=[t - s for t, s in zip(node_times.runs, startups, strict=True)])

    def ratios(theirs: Timings, mine: Timings) -> dict[str, float]:
        return {
            "best": round(theirs.best / mine.best, 2),
            "median": round(theirs.median / mine.median, 2),
        }

    by_variant: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for fixture in fixtures:
        row = by_variant[fixture.variant]
        for check in ("spf", "dmarc"):
            row[f"{check} mailsec"][
                mailsec_verdict(mailsec_results[chosen][fixture.name][check]).label
            ] += 1
            row[f"{check} checkdmarc"][
                checkdmarc_verdict(domains_results[fixture.name][check]).label
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
            "by_workers": {str(w): side(t) for w, t in mailsec_times.items()},
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
            "threads_per_process": node_threads,
            "threads_chosen_by": node_threads_from,
            "batch_size": args.batch_size,
            "batches": -(-count // args.batch_size),
            **side(node_times),
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
                for _results, run in node_runs
            ],
        },
        "checkdmarc_check_domains": side(domains_times),
        "checkdmarc_spf_dmarc_mx": side(functions_times),
        "checkdmarc_check_domains_nameservers_only": side(plain_times),
        # checkdmarc's time over mailsec's, single process (mailsec's fastest pool size).
        "ratio_vs_check_domains": ratios(domains_times, ours),
        "ratio_vs_spf_dmarc_mx": ratios(functions_times, ours),
        # checkdmarc's time (still one process) over the worker node's, start-up included.
        "ratio_worker_node_vs_check_domains": ratios(domains_times, node_times),
        "ratio_worker_node_vs_spf_dmarc_mx": ratios(functions_times, node_times),
        "ratio_worker_node_without_startup_vs_check_domains": ratios(domains_times, node_bare),
        "worker_node_vs_single_process": {
            "runs_compared": len(node_runs),
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
        "mailsec_errors": dict(mailsec_errors),
        "verdicts_stable_across_runs": stable,
        "network_guard_violations": guard.violations[:50],
        "passed": passed,
    }
    print_report(report)
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


if __name__ == "__main__":
    sys.exit(main())
