"""The daily or weekly digest per organisation (email to the owners): what changed, what is
still failing, DKIM rotation deadlines, and the DMARC summary per domain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.utils import timezone

from alerts.engine import owner_emails
from alerts.models import AlertState, DigestSettings
from alerts.render import one_line
from dns_records.models import CheckEvent, DkimKey, DkimKeyState, Domain
from mailsec.models import Organisation
from reports import selectors as report_selectors

PERIOD = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}


def due_organisations(now: dt.datetime) -> Iterator[int]:
    for organisation in Organisation.objects.all().iterator():
        digest, _ = DigestSettings.objects.get_or_create(organisation=organisation)
        period = PERIOD.get(digest.frequency)
        if period is None:
            continue
        if digest.last_sent_at is None or now - digest.last_sent_at >= period:
            yield organisation.pk


def build(organisation: Organisation, now: dt.datetime) -> tuple[str, str]:
    digest = DigestSettings.objects.filter(organisation=organisation).first()
    period = PERIOD.get(digest.frequency if digest else "daily", PERIOD["daily"])
    since = now - period
    lines = [
        f"mailsec digest for {organisation.name}, {since:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    events = CheckEvent.objects.filter(domain__organisation=organisation, created_at__gte=since)
    lines.append("What changed:")
    changed = [f"- {e.domain.name} {e.name}: {e.previous_status or 'new'} -> {e.status}"
               for e in events.select_related("domain")[:100]]  # fmt: skip
    lines.extend(changed or ["- nothing"])
    lines += ["", "Still failing:"]
    failing = AlertState.objects.filter(organisation=organisation, status__in=["fail", "error"])
    lines.extend([f"- {s.key}: {s.status} since {s.since:%Y-%m-%d %H:%M}" for s in failing[:100]]
                 or ["- nothing"])  # fmt: skip
    lines += ["", "DKIM keys waiting for a step:"]
    keys = DkimKey.objects.filter(
        domain__organisation=organisation,
        state__in=[DkimKeyState.PENDING, DkimKeyState.RETIRING],
    ).select_related("domain")
    lines.extend([f"- {k.selector}._domainkey.{k.domain.name}: {k.get_state_display()}"
                  for k in keys[:100]] or ["- none"])  # fmt: skip
    lines += ["", "Certificates expiring within 30 days (managed hosts' probes):"]
    lines.extend(certificate_lines(organisation, now) or ["- none"])
    lines += ["", "DMARC over the period (messages, passing DMARC):"]
    start = since.date()
    domains = Domain.objects.filter(organisation=organisation).order_by("name")[:100]
    for domain in domains:
        totals = report_selectors.report_totals(organisation, domain.name, start=start)
        if totals.messages:
            share = 100 * totals.dmarc_pass / totals.messages
            lines.append(f"- {domain.name}: {totals.messages} messages, {share:.1f}% pass")
    if lines[-1].startswith("DMARC"):
        lines.append("- no reports")
    subject = one_line(f"[mailsec] {organisation.name}: digest")
    return subject, "\n".join(lines) + "\n"


def certificate_lines(organisation: Organisation, now: dt.datetime) -> list[str]:
    """The newest certificate probe of each host service, when it expires within 30 days."""
    from hosts import models as host_models

    probe_model = getattr(host_models, "ProbeResult", None)
    if probe_model is None:  # the probes have not landed
        return []
    since = now - dt.timedelta(days=7)
    rows = (
        probe_model.objects.filter(
            host__organisation=organisation, name__endswith="_certificate", probed_at__gte=since
        )
        .select_related("host")
        .order_by("host_id", "name", "port", "-probed_at")
    )
    found = []
    seen: set[tuple[int, str, int]] = set()
    for row in rows[:2000]:
        service = (row.host_id, row.name, row.port)
        if service in seen:  # an older probe of a service already read
            continue
        seen.add(service)
        days = row.details.get("days_left") if isinstance(row.details, dict) else None
        if isinstance(days, int) and days <= 30:
            when = row.details.get("not_after") or "?"
            found.append(f"- {row.host.name} port {row.port}: {days} days left ({when})")
    return found


def send_digest(organisation_id: int) -> bool:
    from alerts.tasks import send_owner_mail

    organisation = Organisation.objects.get(pk=organisation_id)
    now = timezone.now()
    DigestSettings.objects.update_or_create(
        organisation=organisation, defaults={"last_sent_at": now}
    )
    recipients = owner_emails(organisation)
    if not recipients:
        return False
    subject, body = build(organisation, now)
    send_owner_mail.delay(recipients, subject, body)
    return True
