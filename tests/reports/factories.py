"""Test data for the reports read side: reports with records, and the rollups they imply.

`make_report` writes a Report, its Records, and adds their counts to DailyRollup and
DailySelector exactly as the storage pipeline maintains them (one rollup row per organisation,
policy domain, day, source, header-from, disposition and result; one selector row per signing
domain, selector and result), so the pages read rollups consistent with the records.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F

from mailsec.models import Organisation
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

_ids = itertools.count(1)


@dataclass
class Rec:
    """One record: `count` messages from `source_ip`, judged the same way."""

    source_ip: str
    count: int
    dkim_aligned: str = "pass"
    spf_aligned: str = "pass"
    disposition: str = "none"
    header_from: str = ""
    envelope_from: str = ""
    # (domain, selector, result); (domain, scope, result); override types
    dkim: list[tuple[str, str, str]] = field(default_factory=list)
    spf: list[tuple[str, str, str]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def own(ip: str, count: int, domain: str = "example.com", selector: str = "s1") -> Rec:
    """A record from one of the domain's hosts: SPF and DKIM aligned and passing."""
    return Rec(ip, count, dkim=[(domain, selector, "pass")], spf=[(domain, "mfrom", "pass")])


def spoof(ip: str, count: int, domain: str = "example.com") -> Rec:
    """A forged record: nothing passes."""
    return Rec(
        ip,
        count,
        dkim_aligned="fail",
        spf_aligned="fail",
        disposition="none",
        spf=[(domain, "mfrom", "fail")],
    )


def forwarded(ip: str, count: int, domain: str = "example.com", selector: str = "s1") -> Rec:
    """Forwarded mail: the domain's DKIM signature survives, SPF fails."""
    return Rec(
        ip,
        count,
        dkim_aligned="pass",
        spf_aligned="fail",
        dkim=[(domain, selector, "pass")],
        spf=[("forwarder.example", "mfrom", "fail")],
    )


def make_report(
    *,
    organisation: Organisation | None,
    policy_domain: str,
    day: dt.date,
    records: list[Rec],
    org_name: str = "google.com",
    report_id: str | None = None,
    domain: Any = None,
    policy: dict[str, Any] | None = None,
    raw_message: RawMessage | None = None,
) -> Report:
    begin = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    policy = {"p": "none", "adkim": "r", "aspf": "r", **(policy or {})}
    report = Report.objects.create(
        organisation=organisation,
        domain=domain,
        raw_message=raw_message,
        org_name=org_name,
        email=f"noreply-dmarc@{org_name}",
        report_id=report_id or f"r-{next(_ids)}",
        policy_domain=policy_domain,
        date_begin=begin,
        date_end=begin + dt.timedelta(days=1) - dt.timedelta(seconds=1),
        policy_p=policy.get("p", ""),
        policy_sp=policy.get("sp", ""),
        policy_pct=policy.get("pct"),
        policy_adkim=policy.get("adkim", ""),
        policy_aspf=policy.get("aspf", ""),
        record_count=len(records),
        message_count=sum(r.count for r in records),
        dmarc_pass_count=sum(r.count for r in records if "pass" in {r.dkim_aligned, r.spf_aligned}),
    )
    Record.objects.bulk_create(
        Record(
            report=report,
            day=day,
            source_ip=r.source_ip,
            count=r.count,
            disposition=r.disposition,
            dkim_aligned=r.dkim_aligned,
            spf_aligned=r.spf_aligned,
            header_from=r.header_from or policy_domain,
            envelope_from=r.envelope_from,
            reasons=[{"type": t, "comment": ""} for t in r.reasons],
            dkim_results=[
                {"domain": d, "selector": s, "result": res, "human_result": ""}
                for d, s, res in r.dkim
            ],
            spf_results=[{"domain": d, "scope": s, "result": res} for d, s, res in r.spf],
        )
        for r in records
    )
    for r in records if organisation is not None else []:
        key = {
            "organisation": organisation,
            "policy_domain": policy_domain,
            "day": day,
            "source_ip": r.source_ip,
            "header_from": r.header_from or policy_domain,
            "disposition": r.disposition,
            "dkim_aligned": r.dkim_aligned,
            "spf_aligned": r.spf_aligned,
            "dkim_pass": any(res == "pass" for _d, _s, res in r.dkim),
            "spf_pass": any(res == "pass" for _d, _s, res in r.spf),
        }
        rollup, created = DailyRollup.objects.get_or_create(**key, defaults={"messages": r.count})
        if not created:
            DailyRollup.objects.filter(pk=rollup.pk).update(messages=F("messages") + r.count)
        for d, s, res in r.dkim:
            selector, created = DailySelector.objects.get_or_create(
                organisation=organisation,
                policy_domain=policy_domain,
                day=day,
                dkim_domain=d,
                selector=s,
                result=res,
                defaults={"messages": r.count},
            )
            if not created:
                DailySelector.objects.filter(pk=selector.pk).update(
                    messages=F("messages") + r.count
                )
    return report


def make_source(ip: str, ptr: str = "", **kwargs: Any) -> SourceInfo:
    status = kwargs.pop("ptr_status", "ok" if ptr else "none")
    return SourceInfo.objects.create(ip=ip, ptr=ptr, ptr_status=status, **kwargs)


def make_raw_message(
    organisation: Organisation | None,
    content: bytes = b"Subject: report\r\n\r\nhello",
    *,
    state: str = RawMessageState.STORED,
    reason: str = "",
    detail: str = "",
    filename: str = "",
) -> RawMessage:
    import hashlib

    return RawMessage.objects.create(
        organisation=organisation,
        source="upload",
        content=content,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        state=state,
        reason=reason,
        detail=detail,
        filename=filename,
    )


def make_tls_report(
    *,
    organisation: Organisation | None,
    policy_domain: str,
    day: dt.date,
    org_name: str = "google.com",
    mx: str = "mx1.example.com",
    successful: int = 100,
    failures: list[tuple[str, int]] | None = None,
) -> TlsReport:
    begin = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    failures = failures or []
    failed = sum(n for _t, n in failures)
    report = TlsReport.objects.create(
        organisation=organisation,
        org_name=org_name,
        report_id=f"tls-{next(_ids)}",
        contact_info=f"smtp-tls-reporting@{org_name}",
        policy_domain=policy_domain,
        date_begin=begin,
        date_end=begin + dt.timedelta(days=1) - dt.timedelta(seconds=1),
        successful_sessions=successful,
        failed_sessions=failed,
    )
    policy = TlsPolicy.objects.create(
        report=report,
        policy_type="sts",
        policy_domain=policy_domain,
        policy_strings=["version: STSv1", "mode: enforce", f"mx: {mx}"],
        mx_hosts=[mx],
        successful_sessions=successful,
        failed_sessions=failed,
    )
    for result_type, count in failures:
        TlsFailure.objects.create(
            policy=policy,
            result_type=result_type,
            failed_session_count=count,
            sending_mta_ip="192.0.2.55",
            receiving_mx_hostname=mx,
            receiving_ip="198.51.100.25",
        )
    return report
