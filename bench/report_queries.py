"""Dashboard queries on a big domain: summary and top sources over 90 days, p50/p95 in PostgreSQL.

    .venv/bin/python bench/report_queries.py [--records 1000000] [--days 90] [--sources 20000]
        [--runs 60] [--seed 7] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
        [--keep] [--explain]

It creates its own database (`mailsec_bench_reports_<pid>`) on the server of --database-url
(default: MAILSEC_BENCH_DATABASE_URL, else DATABASE_URL when it is PostgreSQL, else
postgres://postgres@127.0.0.1:5432/postgres), migrates it, and loads one domain's 90 days of
reports: `--records` Record rows in reports of 25 reporters a day, and the DailyRollup and
DailySelector rows those records imply (what the storage pipeline maintains), all by COPY. Source
addresses follow a long-tailed distribution (a few hosts send most mail, thousands send a
little), each with a class (own, forwarder, unauthorised, spoofer) deciding its results.

Then it times, `--runs` times each after a warm-up, what the domain page asks on a 90-day range:
`summary` (reports.selectors.totals_and_days: totals and messages by day in one scan) and `top
sources` (reports.selectors.top_sources, 50 rows with names and classes), each with the rollup
cache emptied before every run, so the target is judged on the queries themselves; for
information also the whole page's `domain_summary` (adds reporters, selectors, TLS, the 30-day
advisor over every source), and all three again served from the rollup cache, as repeated
views of a domain are between two stored reports.
It prints p50 and p95 per query and whether the target (p95 < 150 ms) is met, and checks the
answers against the generated totals. The database is dropped at the end unless --keep.

Exit status: 0 when the answers are right (whether or not the target is met: a shared machine's
times are noise), 1 when a query's answer differs from the generated data, 2 when PostgreSQL
cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_P95_MS = 150.0
# Proposed for DailyRollup.Meta.indexes (the models are the storage engineer's): serves the second
# step of top sources, the chosen addresses' rows, by index instead of another whole scan.
PROPOSED_INDEX = (
    "CREATE INDEX rollup_domain_source ON reports_dailyrollup "
    "(organisation_id, policy_domain, source_ip, day)"
)
DOMAIN = "bench.example"
REPORTERS = [f"reporter{n}.example" for n in range(25)]


def _admin_url(given: str | None) -> str:
    for candidate in (
        given,
        os.environ.get("MAILSEC_BENCH_DATABASE_URL"),
        os.environ.get("DATABASE_URL"),
    ):
        if candidate and candidate.startswith(("postgres://", "postgresql://")):
            return candidate
    return "postgres://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


# --- the generated domain ----------------------------------------------------------------


def _sources(count: int, rng: random.Random) -> list[tuple[str, str, float]]:
    """(address, class, weight): a long tail of senders, the biggest ones the domain's own."""
    sources = []
    for n in range(count):
        address = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        weight = 1.0 / (n + 1) ** 1.1
        if n < 20:
            kind = "own"
        else:
            kind = rng.choices(
                ["own", "forwarder", "unauthorised", "spoofer"], weights=[10, 25, 15, 50]
            )[0]
        sources.append((address, kind, weight))
    return sources


def _results(kind: str, rng: random.Random) -> tuple[str, str, str, bool, bool, list[Any]]:
    """disposition, dkim_aligned, spf_aligned, dkim_pass, spf_pass, dkim results."""
    if kind == "own":
        failing = rng.random() < 0.02
        dkim = "fail" if failing else "pass"
        return "none", dkim, "pass", not failing, True, [(DOMAIN, "s1", dkim)]
    if kind == "forwarder":
        return "none", "pass", "fail", True, False, [(DOMAIN, "s1", "pass")]
    if kind == "unauthorised":
        return "none", "fail", "fail", False, True, []
    return "none", "fail", "fail", False, False, [(DOMAIN, "s1", "fail")]


def generate_and_load(
    connection: Any, *, organisation_id: int, domain_id: int, records: int, days: int,
    source_count: int, seed: int, today: date,
) -> dict[str, int]:  # fmt: skip
    rng = random.Random(seed)  # noqa: S311  (seeded test data, not secrets)
    sources = _sources(source_count, rng)
    addresses = [s[0] for s in sources]
    kinds = {s[0]: s[1] for s in sources}
    weights = [s[2] for s in sources]
    per_day = records // days
    rollups: dict[tuple[Any, ...], int] = defaultdict(int)
    selectors: dict[tuple[Any, ...], int] = defaultdict(int)
    expected = {"records": 0, "messages": 0, "dmarc_pass": 0}
    by_ip: dict[str, int] = defaultdict(int)
    with connection.cursor() as cursor:
        report_rows = []
        for offset in range(days):
            day = today - timedelta(days=days - offset)
            begin = datetime(day.year, day.month, day.day, tzinfo=UTC)
            for n, reporter in enumerate(REPORTERS):
                report_rows.append((organisation_id, domain_id, reporter, f"{day}-{n}", begin))
        with cursor.copy(
            "COPY reports_report (organisation_id, domain_id, org_name, email, "
            "extra_contact_info, report_id, policy_domain, date_begin, date_end, schema, "
            "generator, errors, policy_p, policy_sp, policy_np, policy_adkim, policy_aspf, "
            "policy_fo, policy_testing, policy_discovery_method, record_count, message_count, "
            "dmarc_pass_count, created_at) FROM STDIN"
        ) as copy:
            for org, dom, reporter, report_id, begin in report_rows:
                copy.write_row((
                    org, dom, reporter, f"noreply@{reporter}", "", report_id, DOMAIN, begin,
                    begin + timedelta(days=1, seconds=-1), "rfc7489", "", "[]", "none", "", "",
                    "r", "r", "", "", "", 0, 0, 0, datetime.now(UTC),
                ))  # fmt: skip
        cursor.execute(
            "SELECT id, report_id FROM reports_report WHERE organisation_id = %s",
            [organisation_id],
        )
        report_ids = {report_id: pk for pk, report_id in cursor.fetchall()}
        totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        with cursor.copy(
            "COPY reports_record (report_id, day, source_ip, count, disposition, dkim_aligned, "
            "spf_aligned, header_from, envelope_from, envelope_to, reasons, dkim_results, "
            "spf_results) FROM STDIN"
        ) as copy:
            for offset in range(days):
                day = today - timedelta(days=days - offset)
                picks = rng.choices(addresses, weights=weights, k=per_day)
                for index, address in enumerate(picks):
                    kind = kinds[address]
                    disposition, dkim_al, spf_al, dkim_pass, spf_pass, dkim = _results(kind, rng)
                    count = 1 + int(rng.expovariate(1 / 6))
                    report_pk = report_ids[f"{day}-{index % len(REPORTERS)}"]
                    passed = count if "pass" in (dkim_al, spf_al) else 0
                    sums = totals[report_pk]
                    sums[0] += 1
                    sums[1] += count
                    sums[2] += passed
                    dkim_json = json.dumps([
                        {"domain": d, "selector": s, "result": r, "human_result": ""}
                        for d, s, r in dkim
                    ])  # fmt: skip
                    spf_json = json.dumps([
                        {"domain": DOMAIN, "scope": "mfrom", "result": "pass" if spf_pass else "fail"}
                    ])  # fmt: skip
                    copy.write_row((
                        report_pk, day, address, count, disposition, dkim_al, spf_al, DOMAIN,
                        DOMAIN, "", "[]", dkim_json, spf_json,
                    ))  # fmt: skip
                    rollups[(day, address, disposition, dkim_al, spf_al, dkim_pass, spf_pass)] += (
                        count
                    )
                    for d, s, r in dkim:
                        selectors[(day, d, s, r)] += count
                    expected["records"] += 1
                    expected["messages"] += count
                    expected["dmarc_pass"] += passed
                    by_ip[address] += count
        cursor.executemany(
            "UPDATE reports_report SET record_count = %s, message_count = %s, "
            "dmarc_pass_count = %s WHERE id = %s",
            [(r, m, p, pk) for pk, (r, m, p) in totals.items()],
        )
        with cursor.copy(
            "COPY reports_dailyrollup (organisation_id, policy_domain, day, source_ip, "
            "header_from, disposition, dkim_aligned, spf_aligned, dkim_pass, spf_pass, messages) "
            "FROM STDIN"
        ) as copy:
            for (
                day,
                address,
                disposition,
                dkim_al,
                spf_al,
                dkim_pass,
                spf_pass,
            ), n in rollups.items():
                copy.write_row((
                    organisation_id, DOMAIN, day, address, DOMAIN, disposition, dkim_al, spf_al,
                    dkim_pass, spf_pass, n,
                ))  # fmt: skip
        with cursor.copy(
            "COPY reports_dailyselector (organisation_id, policy_domain, day, dkim_domain, "
            "selector, result, messages) FROM STDIN"
        ) as copy:
            for (day, d, s, r), n in selectors.items():
                copy.write_row((organisation_id, DOMAIN, day, d, s, r, n))
        cursor.execute("ANALYZE")
    expected["rollup_rows"] = len(rollups)
    expected["sources"] = len(by_ip)
    expected["top_messages"] = max(by_ip.values())
    return expected


def _time(runs: int, work: Callable[[], Any]) -> tuple[list[float], Any]:
    for _ in range(3):
        result = work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(1000 * (time.perf_counter() - start))
    return times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url")
    parser.add_argument("--keep", action="store_true", help="do not drop the bench database")
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument(
        "--proposed-index",
        action="store_true",
        help=f"also create the index proposed for the models: {PROPOSED_INDEX}",
    )
    args = parser.parse_args(argv)

    import psycopg

    admin_url = _admin_url(args.database_url)
    name = f"mailsec_bench_reports_{os.getpid()}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True)
    except psycopg.OperationalError as exc:
        print(f"report_queries: cannot reach PostgreSQL at {admin_url}: {exc}", file=sys.stderr)
        return 2
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return _run(args, _with_database(admin_url, name))
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            print(f"kept database {name}")
        else:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _run(args: argparse.Namespace, url: str) -> int:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")
    os.environ.setdefault("MAILSEC_DEBUG", "1")
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Sum
    from django.utils import timezone

    from dns_records.models import Domain
    from mailsec.models import Organisation
    from reports import selectors

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    organisation = Organisation.objects.create(name="Bench", slug="bench")
    domain = Domain.objects.create(organisation=organisation, name=DOMAIN)
    today = timezone.now().date()
    expected = generate_and_load(
        connection, organisation_id=organisation.pk, domain_id=domain.pk, records=args.records,
        days=args.days, source_count=args.sources, seed=args.seed, today=today,
    )  # fmt: skip
    if args.proposed_index:
        with connection.cursor() as cursor:
            cursor.execute(PROPOSED_INDEX)
            cursor.execute("ANALYZE reports_dailyrollup")
        print(f"with the proposed index: {PROPOSED_INDEX}")
    print(
        f"loaded {expected['records']} records ({expected['messages']} messages) in "
        f"{len(REPORTERS) * args.days} reports, {expected['rollup_rows']} rollup rows, "
        f"{expected['sources']} sources, in {time.perf_counter() - started:.0f} s"
    )
    start = selectors.range_start(args.days, today=today)

    def cold(work: Callable[[], Any]) -> Callable[[], Any]:
        """The query itself: the rollup cache emptied before each run."""

        def run() -> Any:
            cache.clear()
            return work()

        return run

    def summary() -> Any:
        return selectors.totals_and_days(organisation, DOMAIN, start=start)

    def top() -> Any:
        return selectors.top_sources(organisation, DOMAIN, start=start)

    def page() -> Any:
        return selectors.domain_summary(organisation, DOMAIN, days=args.days, today=today)

    failures = []
    results = {}
    for label, work, runs in (
        ("summary", cold(summary), args.runs),
        ("top sources", cold(top), args.runs),
        ("whole page (information)", cold(page), max(args.runs // 5, 5)),
        ("summary, cached (info.)", summary, args.runs),
        ("top sources, cached (info.)", top, args.runs),
        ("whole page, cached (info.)", page, args.runs),
    ):
        times, result = _time(runs, work)
        results[label] = (times, result)
    totals, by_day = results["summary"][1]
    if totals.messages != expected["messages"] or totals.dmarc_pass != expected["dmarc_pass"]:
        failures.append(f"summary totals {totals} differ from the generated {expected}")
    if sum(point.messages for point in by_day) != expected["messages"]:
        failures.append("messages by day do not add up to the generated total")
    top_rows = results["top sources"][1]
    if len(top_rows) != 50 or top_rows[0].messages != expected["top_messages"]:
        failures.append("top sources do not start with the generated biggest source")

    load = os.getloadavg()[0]
    print(
        f"\n{'query':<28}{'runs':>6}{'best ms':>9}{'p50 ms':>9}{'p95 ms':>9}  "
        f"target p95 < {TARGET_P95_MS:g} ms (load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    for label, (times, _result) in results.items():
        p50, p95 = statistics.median(times), _percentile(times, 0.95)
        verdict = "" if "info" in label else ("met" if p95 < TARGET_P95_MS else "MISSED")
        print(f"{label:<28}{len(times):>6}{min(times):>9.1f}{p50:>9.1f}{p95:>9.1f}  {verdict}")
    if args.explain:
        rollups = selectors._rollups(organisation, DOMAIN, start)
        print("\ntop sources, first step:")
        print(rollups.values("source_ip").annotate(n_messages=Sum("messages"))
              .order_by(*selectors._BY_VOLUME)[:50].explain(analyze=True))  # fmt: skip
        print("\nsummary:")
        print(rollups.values("day", "disposition", *selectors._FLAGS)
              .annotate(n_messages=Sum("messages")).explain(analyze=True))  # fmt: skip
    for failure in failures:
        print(f"WRONG: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
