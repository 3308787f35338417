"""Read queries of the reports app, for the dashboards and the API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from django.core.cache import cache
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from dns_records.models import CheckState
from mailsec.models import Organisation
from mailsec.selectors import User, organisations_visible
from reports.advisor import Advice, SourceToFix, SourceVolume, advise
from reports.classify import Classification, SourceCounts, classify
from reports.models import (
    DailyRollup,
    DailySelector,
    RawMessage,
    RawMessageState,
    Record,
    Report,
    SourceInfo,
    TlsFailure,
    TlsPolicy,
    TlsReport,
)

# --- dashboards and API: reports, rollups, sources (read side) --------------------------------
# Per-domain summaries read the daily rollups (DailyRollup, DailySelector), never Record rows;
# only a single report's drill-down reads its records.

RANGES = (7, 30, 90)
MAX_RANGE_DAYS = 400
TOP_SOURCES = 50


def range_start(days: int, *, today: dt.date | None = None) -> dt.date:
    """The first day of a range of `days` whole days before today (UTC).

    Receivers report a day after it ends, so the range is the last `days` complete days; a
    report already in about today still counts.
    """
    today = today or timezone.now().date()
    days = min(max(days, 1), MAX_RANGE_DAYS)
    return today - dt.timedelta(days=days)


def _rollups(organisation: Organisation, domain: str, start: dt.date) -> QuerySet[DailyRollup]:
    # Served by rollup_domain_day (organisation, policy_domain, day).
    return DailyRollup.objects.filter(
        organisation=organisation, policy_domain=domain, day__gte=start
    )


# A big domain's rollup scans take tens of milliseconds, and their answers change only when a
# report about the domain is stored or pruned: they are kept in Django's cache under a key that
# names the domain's reports (how many, and when the newest was stored), so a stored or pruned
# report makes a new key, and kept at most this long.
ROLLUP_CACHE_SECONDS = 600


def rollup_version(organisation: Organisation, domain: str) -> str:
    """Changes whenever a report of the domain is stored or deleted (and its rollups with it)."""
    # Served by report_org_domain (organisation, policy_domain, ...).
    found = Report.objects.filter(organisation=organisation, policy_domain=domain).aggregate(
        n=Count("pk"), newest=Max("created_at")
    )
    newest = found["newest"].timestamp() if found["newest"] else 0
    return f"{found['n']}:{newest:.6f}"


def _cached[T](
    kind: str, organisation: Organisation, domain: str, start: dt.date, compute: Callable[[], T]
) -> T:
    version = rollup_version(organisation, domain)
    text = f"{kind}|{organisation.pk}|{domain}|{start.isoformat()}|{version}"
    key = "reports:rollups:" + hashlib.sha256(text.encode()).hexdigest()
    found = cache.get(key)
    if found is not None:
        return cast(T, found)
    value = compute()
    cache.set(key, value, ROLLUP_CACHE_SECONDS)
    return value


def _rows(queryset: Any) -> list[dict[str, Any]]:
    """A values() query's rows as plain dicts (their keys come from annotate's names)."""
    return list(queryset)


# The result columns of a rollup. Queries group by them and sum `messages` only: one SUM per
# group costs far less than a SUM ... FILTER per measure, and Python folds the few groups.
_FLAGS = ("dkim_aligned", "spf_aligned", "dkim_pass", "spf_pass")
# Annotation names differ from the model's fields (an annotation may not shadow `messages`).
_BY_VOLUME = ("-n_messages", "source_ip")


def _flag_counts(row: dict[str, Any]) -> SourceCounts:
    """The counts of one group of rollup rows sharing the same results."""
    n = int(row["n_messages"])
    dkim_aligned = row["dkim_aligned"] == "pass"
    spf_aligned = row["spf_aligned"] == "pass"
    return SourceCounts(
        messages=n,
        dmarc_pass=n if (dkim_aligned or spf_aligned) else 0,
        spf_aligned_pass=n if spf_aligned else 0,
        dkim_aligned_pass=n if dkim_aligned else 0,
        spf_pass=n if (spf_aligned or row["spf_pass"]) else 0,
        dkim_pass=n if (dkim_aligned or row["dkim_pass"]) else 0,
    )


@dataclass(frozen=True)
class Totals:
    """Messages of a domain over a range, by result."""

    messages: int = 0
    dmarc_pass: int = 0
    spf_aligned_pass: int = 0
    dkim_aligned_pass: int = 0
    spf_pass: int = 0
    dkim_pass: int = 0
    dispositions: dict[str, int] = field(default_factory=dict)

    @property
    def dmarc_fail(self) -> int:
        return max(self.messages - self.dmarc_pass, 0)

    def share(self, part: int) -> float:
        return part / self.messages if self.messages else 0.0

    @property
    def dmarc_pass_share(self) -> float:
        return self.share(self.dmarc_pass)

    @property
    def spf_aligned_share(self) -> float:
        return self.share(self.spf_aligned_pass)

    @property
    def dkim_aligned_share(self) -> float:
        return self.share(self.dkim_aligned_pass)


@dataclass(frozen=True)
class DayPoint:
    day: dt.date
    dmarc_pass: int
    dmarc_fail: int

    @property
    def messages(self) -> int:
        return self.dmarc_pass + self.dmarc_fail


def totals_and_days(
    organisation: Organisation, domain: str, *, start: dt.date
) -> tuple[Totals, list[DayPoint]]:
    """The range's totals and one point per day, from one scan of the rollups (cached).

    Days run up to yesterday (today too once it has reports), days without reports as zero.
    """
    return _cached(
        "totals", organisation, domain, start, lambda: _totals_and_days(organisation, domain, start)
    )


def _totals_and_days(
    organisation: Organisation, domain: str, start: dt.date
) -> tuple[Totals, list[DayPoint]]:
    rows = _rows(
        _rollups(organisation, domain, start)
        .values("day", "disposition", *_FLAGS)
        .annotate(n_messages=Sum("messages"))
    )
    total = SourceCounts(messages=0)
    dispositions: dict[str, int] = {}
    days: dict[dt.date, list[int]] = {}
    for row in rows:
        counts = _flag_counts(row)
        total = total + counts
        dispositions[row["disposition"]] = dispositions.get(row["disposition"], 0) + counts.messages
        sums = days.setdefault(row["day"], [0, 0])
        sums[0] += counts.dmarc_pass
        sums[1] += counts.dmarc_fail
    totals = Totals(
        messages=total.messages,
        dmarc_pass=total.dmarc_pass,
        spf_aligned_pass=total.spf_aligned_pass,
        dkim_aligned_pass=total.dkim_aligned_pass,
        spf_pass=total.spf_pass,
        dkim_pass=total.dkim_pass,
        dispositions={d: n for d, n in sorted(dispositions.items()) if n},
    )
    end = max([timezone.now().date() - dt.timedelta(days=1), *days])
    points = []
    day = start
    while day <= end:
        passed, failed = days.get(day, [0, 0])
        points.append(DayPoint(day, passed, failed))
        day += dt.timedelta(days=1)
    return totals, points


def report_totals(organisation: Organisation, domain: str, *, start: dt.date) -> Totals:
    return totals_and_days(organisation, domain, start=start)[0]


def messages_by_day(organisation: Organisation, domain: str, *, start: dt.date) -> list[DayPoint]:
    return totals_and_days(organisation, domain, start=start)[1]


@dataclass(frozen=True)
class SourceRow:
    """A sending address over a range: its counts, what is known about it, and its class."""

    ip: str
    counts: SourceCounts
    classification: Classification
    ptr: str = ""
    ptr_status: str = ""
    asn: int | None = None
    as_org: str = ""
    country: str = ""

    @property
    def messages(self) -> int:
        return self.counts.messages

    @property
    def pass_share(self) -> float:
        return self.counts.dmarc_pass / self.counts.messages if self.counts.messages else 0.0

    @property
    def name(self) -> str:
        return self.ptr


def source_infos(addresses: list[str]) -> dict[str, SourceInfo]:
    return {info.ip: info for info in SourceInfo.objects.filter(ip__in=addresses)}


def _source_rows(counted: dict[str, SourceCounts], *, named: bool = True) -> list[SourceRow]:
    """Rows by volume, each with its class, and what is known about it when `named`."""
    ordered = sorted(counted.items(), key=lambda item: (-item[1].messages, item[0]))
    infos = source_infos([ip for ip, _ in ordered]) if named else {}
    result = []
    for ip, counts in ordered:
        info = infos.get(ip)
        result.append(
            SourceRow(
                ip=ip,
                counts=counts,
                classification=classify(counts),
                ptr=info.ptr if info else "",
                ptr_status=info.ptr_status if info else "",
                asn=info.asn if info else None,
                as_org=info.as_org if info else "",
                country=info.country if info else "",
            )
        )
    return result


def _fold_by_source(queryset: QuerySet[DailyRollup]) -> dict[str, SourceCounts]:
    counted: dict[str, SourceCounts] = {}
    for row in _rows(queryset.values("source_ip", *_FLAGS).annotate(n_messages=Sum("messages"))):
        ip = row["source_ip"]
        counts = _flag_counts(row)
        counted[ip] = counted[ip] + counts if ip in counted else counts
    return counted


def _top_addresses(
    organisation: Organisation, domain: str, start: dt.date, limit: int | None
) -> list[dict[str, Any]]:
    query = (
        _rollups(organisation, domain, start)
        .values("source_ip")
        .annotate(n_messages=Sum("messages"))
        .order_by(*_BY_VOLUME)
    )
    return _rows(query[:limit] if limit is not None else query)


def _top_counts(
    organisation: Organisation, domain: str, start: dt.date, limit: int
) -> tuple[list[tuple[str, SourceCounts]], int]:
    """The biggest addresses with their counts, and how many addresses the range has.

    Two steps: every address's volume by a single SUM, then the results of the biggest only.
    """
    everyone = _top_addresses(organisation, domain, start, None)
    top = [row["source_ip"] for row in everyone[:limit]]
    if not top:
        return [], len(everyone)
    counted = _fold_by_source(_rollups(organisation, domain, start).filter(source_ip__in=top))
    ordered = sorted(counted.items(), key=lambda item: (-item[1].messages, item[0]))
    return ordered, len(everyone)


def top_sources_counted(
    organisation: Organisation, domain: str, *, start: dt.date, limit: int = TOP_SOURCES
) -> tuple[list[SourceRow], int]:
    """The addresses that sent the most mail as the domain, with names and classes, and how
    many sources the range has. The counts are cached; names are read fresh."""
    ordered, count = _cached(
        f"top{limit}",
        organisation,
        domain,
        start,
        lambda: _top_counts(organisation, domain, start, limit),
    )
    return _source_rows(dict(ordered)), count


def top_sources(
    organisation: Organisation, domain: str, *, start: dt.date, limit: int = TOP_SOURCES
) -> list[SourceRow]:
    return top_sources_counted(organisation, domain, start=start, limit=limit)[0]


def all_sources(
    organisation: Organisation, domain: str, *, start: dt.date, named: bool = True
) -> list[SourceRow]:
    """Every source of the range by volume (the advisor's input); names only when `named`."""
    counted = _cached(
        "all",
        organisation,
        domain,
        start,
        lambda: _fold_by_source(_rollups(organisation, domain, start)),
    )
    return _source_rows(counted, named=named)


@dataclass(frozen=True)
class ReporterRow:
    org_name: str
    reports: int
    messages: int
    last_report: dt.datetime | None


def _reports_of(organisation: Organisation, domain: str, start: dt.date) -> QuerySet[Report]:
    begin = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    # Served by report_org_domain (organisation, policy_domain, -date_begin).
    return Report.objects.filter(
        organisation=organisation, policy_domain=domain, date_begin__gte=begin
    )


def reporters(organisation: Organisation, domain: str, *, start: dt.date) -> list[ReporterRow]:
    rows = (
        _reports_of(organisation, domain, start)
        .values("org_name")
        .annotate(
            reports=Count("pk"),
            messages=Coalesce(Sum("message_count"), 0),
            last_report=Max("date_end"),
        )
        .order_by("-messages", "org_name")
    )
    return [
        ReporterRow(r["org_name"], int(r["reports"]), int(r["messages"]), r["last_report"])
        for r in rows
    ]


@dataclass(frozen=True)
class SelectorRow:
    dkim_domain: str
    selector: str
    results: dict[str, int]

    @property
    def messages(self) -> int:
        return sum(self.results.values())

    @property
    def passed(self) -> int:
        return self.results.get("pass", 0)


def dkim_selectors_seen(
    organisation: Organisation, domain: str, *, start: dt.date
) -> list[SelectorRow]:
    """Each DKIM signing domain and selector seen on the domain's mail, with results."""
    rows = (
        DailySelector.objects.filter(
            organisation=organisation, policy_domain=domain, day__gte=start
        )
        .values("dkim_domain", "selector", "result")
        .annotate(n_messages=Coalesce(Sum("messages"), 0))
    )
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        key = (row["dkim_domain"], row["selector"])
        results = grouped.setdefault(key, {})
        results[row["result"]] = results.get(row["result"], 0) + int(row["n_messages"])
    selectors = [SelectorRow(d, s, r) for (d, s), r in grouped.items()]
    return sorted(selectors, key=lambda s: (-s.messages, s.dkim_domain, s.selector))


@dataclass(frozen=True)
class TlsMxRow:
    mx: str
    result_type: str
    failed_sessions: int


@dataclass(frozen=True)
class TlsPolicyRow:
    policy_type: str
    policy_domain: str
    mx_hosts: tuple[str, ...]
    successful_sessions: int
    failed_sessions: int


@dataclass(frozen=True)
class TlsSummary:
    reports: int = 0
    successful_sessions: int = 0
    failed_sessions: int = 0
    policies: list[TlsPolicyRow] = field(default_factory=list)
    failures: list[TlsMxRow] = field(default_factory=list)

    @property
    def sessions(self) -> int:
        return self.successful_sessions + self.failed_sessions


def _tls_reports_of(organisation: Organisation, domain: str, start: dt.date) -> QuerySet[TlsReport]:
    begin = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    return TlsReport.objects.filter(
        organisation=organisation, policy_domain=domain, date_begin__gte=begin
    )


def tls_summary(organisation: Organisation, domain: str, *, start: dt.date) -> TlsSummary:
    """SMTP TLS reports about mail sent to the domain: sessions by policy, failures by MX."""
    reports = _tls_reports_of(organisation, domain, start)
    totals = reports.aggregate(
        n=Count("pk"),
        ok=Coalesce(Sum("successful_sessions"), 0),
        failed=Coalesce(Sum("failed_sessions"), 0),
    )
    policies: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}
    for policy in TlsPolicy.objects.filter(report__in=reports).values(
        "policy_type", "policy_domain", "mx_hosts", "successful_sessions", "failed_sessions"
    ):
        mx = tuple(sorted(str(h) for h in policy["mx_hosts"] or []))
        sums = policies.setdefault((policy["policy_type"], policy["policy_domain"], mx), [0, 0])
        sums[0] += int(policy["successful_sessions"])
        sums[1] += int(policy["failed_sessions"])
    failures = (
        TlsFailure.objects.filter(policy__report__in=reports)
        .values("receiving_mx_hostname", "result_type")
        .annotate(failed=Coalesce(Sum("failed_session_count"), 0))
        .order_by("-failed", "receiving_mx_hostname", "result_type")
    )
    return TlsSummary(
        reports=int(totals["n"]),
        successful_sessions=int(totals["ok"]),
        failed_sessions=int(totals["failed"]),
        policies=[
            TlsPolicyRow(t, d, mx, ok, failed)
            for (t, d, mx), (ok, failed) in sorted(policies.items(), key=lambda i: -sum(i[1]))
        ],
        failures=[
            TlsMxRow(
                f["receiving_mx_hostname"] or "(not given)", f["result_type"], int(f["failed"])
            )
            for f in failures
        ],
    )


# --- single reports, raw messages, quarantine -----------------------------------------------


def reports_visible(
    user: User,
    *,
    domain: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> QuerySet[Report]:
    """The DMARC reports of the user's organisations, newest first."""
    queryset = Report.objects.filter(organisation__in=organisations_visible(user)).select_related(
        "organisation"
    )
    if domain:
        queryset = queryset.filter(policy_domain=domain.strip().lower().rstrip("."))
    if since is not None:
        queryset = queryset.filter(
            date_end__gte=dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC)
        )
    if until is not None:
        queryset = queryset.filter(
            date_begin__lt=dt.datetime.combine(
                until + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC
            )
        )
    return queryset.order_by("-date_begin", "-id")


def recent_reports(
    organisation: Organisation, domain: str, *, start: dt.date, limit: int = 20
) -> list[Report]:
    """The domain's newest reports that begin in the range, for the dashboard's drill-down."""
    return list(_reports_of(organisation, domain, start).order_by("-date_begin", "-id")[:limit])


def report_visible(user: User, pk: int) -> Report | None:
    return reports_visible(user).select_related("raw_message", "domain").filter(pk=pk).first()


def report_records(report: Report) -> QuerySet[Record]:
    """A report's records, most messages first (a drill-down pages through them)."""
    return report.records.order_by("-count", "id")


def tls_reports_visible(
    user: User,
    *,
    domain: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> QuerySet[TlsReport]:
    queryset = TlsReport.objects.filter(organisation__in=organisations_visible(user))
    if domain:
        queryset = queryset.filter(policy_domain=domain.strip().lower().rstrip("."))
    if since is not None:
        queryset = queryset.filter(
            date_end__gte=dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC)
        )
    if until is not None:
        queryset = queryset.filter(
            date_begin__lt=dt.datetime.combine(
                until + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC
            )
        )
    return queryset.select_related("organisation").order_by("-date_begin", "-id")


def tls_report_visible(user: User, pk: int) -> TlsReport | None:
    return tls_reports_visible(user).filter(pk=pk).first()


def tls_report_policies(report: TlsReport) -> QuerySet[TlsPolicy]:
    return report.policies.prefetch_related("failures").order_by("id")


def _staff(user: User) -> bool:
    """Who may see messages of no organisation: superusers, as the services let them act."""
    return bool(user.is_authenticated and user.is_superuser)


def _raw_messages_visible(user: User) -> QuerySet[RawMessage]:
    """Raw messages of the user's organisations: received for one, or holding one's report."""
    visible = organisations_visible(user)
    return RawMessage.objects.filter(
        Q(organisation__in=visible)
        | Q(reports__organisation__in=visible)
        | Q(tls_reports__organisation__in=visible)
    ).distinct()


def raw_message_visible(user: User, pk: int) -> RawMessage | None:
    """A raw message the user may read: its organisation's, or (superusers) one of none."""
    found = _raw_messages_visible(user).filter(pk=pk).first()
    if found is None and _staff(user):
        found = RawMessage.objects.filter(pk=pk, organisation__isnull=True).first()
    return found


def quarantine_visible(user: User) -> QuerySet[RawMessage]:
    """Quarantined messages of the user's organisations, newest first, without their content.

    A message that arrived by a way in that knows no organisation (the SMTP listener, the pipe)
    and was never parsed into a report belongs to none, and is listed for superusers only.
    """
    queryset = RawMessage.objects.filter(state=RawMessageState.QUARANTINED)
    if _staff(user):
        scoped = queryset.filter(
            Q(organisation__in=organisations_visible(user)) | Q(organisation__isnull=True)
        )
    else:
        scoped = queryset.filter(organisation__in=organisations_visible(user))
    return scoped.defer("content").select_related("organisation").order_by("-received_at", "-id")


# --- the per-domain summary: what the dashboard page and `reports/summary/` show --------------

ADVISOR_DAYS = 30


def dmarc_record_checked(organisation: Organisation, domain: str) -> str | None:
    """The domain's own DMARC record as the last DMARC check found it (None: none known)."""
    state = CheckState.objects.filter(
        domain__organisation=organisation, domain__name=domain, name="dmarc"
    ).first()
    if state is None or not isinstance(state.details, dict):
        return None
    record = state.details.get("record")
    if not isinstance(record, str) or state.details.get("inherited_from"):
        return None
    return record


def policy_reported(organisation: Organisation, domain: str) -> dict[str, str | int | None] | None:
    """The policy receivers saw published, from the newest report about the domain."""
    report = (
        Report.objects.filter(organisation=organisation, policy_domain=domain)
        .order_by("-date_begin", "-id")
        .only("policy_p", "policy_sp", "policy_np", "policy_pct", "policy_adkim", "policy_aspf")
        .first()
    )
    if report is None:
        return None
    return {
        "p": report.policy_p,
        "sp": report.policy_sp,
        "np": report.policy_np,
        "pct": report.policy_pct,
        "adkim": report.policy_adkim,
        "aspf": report.policy_aspf,
    }


def policy_advice(
    organisation: Organisation, domain: str, *, today: dt.date | None = None
) -> Advice:
    """The advisor on the last 30 days of the domain's rollups and its current record.

    Every source goes in unnamed (a domain may have tens of thousands); only the few the
    advice lists are looked up for their names.
    """
    start = range_start(ADVISOR_DAYS, today=today)
    record = dmarc_record_checked(organisation, domain)
    published = policy_reported(organisation, domain)

    def compute() -> Advice:
        counted = _fold_by_source(_rollups(organisation, domain, start))
        sources = [SourceVolume(ip, counts) for ip, counts in counted.items()]
        return advise(domain, sources, record=record, published=published)

    # The advice depends on the record too: a new DMARC check result makes a new key.
    inputs = json.dumps([record, published], sort_keys=True, default=str)
    advice = _cached(f"advice|{inputs}", organisation, domain, start, compute)
    infos = source_infos([s.ip for s in [*advice.fix_first, *advice.review]])

    def named(items: list[SourceToFix]) -> list[SourceToFix]:
        return [
            replace(item, name=infos[item.ip].ptr) if item.ip in infos else item for item in items
        ]

    return replace(advice, fix_first=named(advice.fix_first), review=named(advice.review))


@dataclass(frozen=True)
class DomainSummary:
    organisation: Organisation
    domain: str
    days: int
    start: dt.date
    totals: Totals
    by_day: list[DayPoint]
    top_sources: list[SourceRow]
    source_count: int
    reporters: list[ReporterRow]
    dkim_selectors: list[SelectorRow]
    tls: TlsSummary
    advice: Advice


def domain_summary(
    organisation: Organisation,
    domain: str,
    *,
    days: int,
    today: dt.date | None = None,
    top: int = TOP_SOURCES,
) -> DomainSummary:
    start = range_start(days, today=today)
    totals, by_day = totals_and_days(organisation, domain, start=start)
    top_rows, count = top_sources_counted(organisation, domain, start=start, limit=top)
    return DomainSummary(
        organisation=organisation,
        domain=domain,
        days=days,
        start=start,
        totals=totals,
        by_day=by_day,
        top_sources=top_rows,
        source_count=count,
        reporters=reporters(organisation, domain, start=start),
        dkim_selectors=dkim_selectors_seen(organisation, domain, start=start),
        tls=tls_summary(organisation, domain, start=start),
        advice=policy_advice(organisation, domain, today=today),
    )
