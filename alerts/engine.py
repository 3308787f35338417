"""The alerts engine: read each source's new runs, move every subject's state through
alerts.policy, and turn each organisation's changes of one evaluation into one notification per
channel (rules decide which channels hear which changes).

Sources: dns_records CheckState (one row per domain and check, `checked_at` is the run), the
signing proof of each active DkimKey (`signing_checked_at`),
blocklists Listing (per target and zone), hosts HostEvent (one-shot events: drift, failed
deployments, probe status changes, already confirmed by hosts). Each source has a cursor (the
newest instant read); rows are re-read with an overlap and skipped when the subject has already
seen that run, so a row committed late is not lost.

Day-one default: an organisation with no rule at all has an implicit rule "fail (and listed)
of every event, to the owners' email": those notifications go out as email to the owners
without any channel row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts import policy, render
from alerts.models import AlertCursor, AlertRule, AlertState, Channel, Notification
from blocklists.models import Listing
from dns_records.models import CheckState, DkimKey, DkimKeyState
from hosts.models import HostEvent
from mailsec.models import Organisation, Role

logger = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=10)


@dataclass(frozen=True)
class Observation:
    organisation_id: int
    key: str
    event: str
    status: str
    run_at: datetime
    summary: str = ""
    domain: str = ""
    host: str = ""
    confirmed: bool = False
    one_shot: bool = False  # an event with no recovery (drift, a failed deployment)


def config() -> policy.Config:
    return policy.Config(fail_runs=int(settings.MAILSEC_ALERT_CONFIRM_RUNS))


def _since(source: str) -> datetime | None:
    cursor = AlertCursor.objects.filter(source=source).first()
    if cursor is None or cursor.last_at is None:
        return None
    return cursor.last_at - OVERLAP


def _advance(source: str, instants: Iterable[datetime]) -> None:
    newest = max(instants, default=None)
    if newest is None:
        return
    cursor, _ = AlertCursor.objects.get_or_create(source=source)
    if cursor.last_at is None or newest > cursor.last_at:
        cursor.last_at = newest
        cursor.save(update_fields=["last_at"])


def check_observations() -> Iterator[Observation]:
    rows = CheckState.objects.select_related("domain")
    since = _since("check")
    if since is not None:
        rows = rows.filter(checked_at__gt=since)
    for row in rows.order_by("checked_at", "id").iterator():
        event = "dkim" if row.name == "dkim" else "check"
        yield Observation(
            row.domain.organisation_id, f"check:{row.domain.name}:{row.name}", event,
            row.status, row.checked_at, row.summary, domain=row.domain.name,
        )  # fmt: skip


def listing_observations() -> Iterator[Observation]:
    rows = Listing.objects.select_related("target")
    since = _since("blocklist")
    if since is not None:
        rows = rows.filter(checked_at__gt=since)
    for row in rows.order_by("checked_at", "id").iterator():
        target = row.target
        value, kind = target.value, target.kind
        yield Observation(
            target.organisation_id, f"listing:{value}:{row.zone}", "blocklist",
            # An error never replaces a known listing state (blocklists keeps the old status).
            row.status, row.checked_at, f"{value} on {row.zone}: {row.status}",
            domain=value if kind == "domain" else "",
        )  # fmt: skip


def dkim_observations() -> Iterator[Observation]:
    """Each active key's signing proof (sign a message, verify it against DNS): a proof that
    fails is a fail; one that could not run (a lookup failed) is an error."""
    rows = DkimKey.objects.select_related("domain").filter(
        state=DkimKeyState.ACTIVE, signing_checked_at__isnull=False
    )
    since = _since("dkim")
    if since is not None:
        rows = rows.filter(signing_checked_at__gt=since)
    for key in rows.order_by("signing_checked_at", "id").iterator():
        checked = key.signing_checked_at
        if checked is None:
            continue
        status = {True: "ok", False: "fail", None: "error"}[key.signing_verified]
        outcome = {True: "verifies", False: "does not verify", None: "could not be verified"}
        verdict = outcome[key.signing_verified]
        summary = key.signing_error or f"mail signed with {key.selector} {verdict}"
        yield Observation(
            key.domain.organisation_id, f"dkim:{key.domain.name}:{key.selector}:signing", "dkim",
            status, checked, summary, domain=key.domain.name,
        )  # fmt: skip


HOST_KINDS = {"drift": ("drift", "fail"), "deploy_failed": ("deploy", "fail"),
              "rolled_back": ("deploy", "warning"), "deployed": ("deploy", "ok")}  # fmt: skip


def host_observations() -> Iterator[Observation]:
    rows = HostEvent.objects.select_related("host")
    since = _since("host")
    if since is not None:
        rows = rows.filter(created_at__gt=since)
    for row in rows.order_by("created_at", "id").iterator():
        host = row.host
        name = host.name
        if row.kind == "probe":
            details = row.details if isinstance(row.details, dict) else {}
            probe = str(details.get("name", "probe"))
            event, status, key = (
                "probe",
                str(details.get("status", "error")),
                f"host:{name}:{probe}",
            )
        elif row.kind in HOST_KINDS:
            event, status = HOST_KINDS[row.kind]
            key = f"host:{name}:{event}"
        else:
            continue
        yield Observation(
            host.organisation_id, key, event, status, row.created_at, row.summary,
            host=name, confirmed=True, one_shot=row.kind != "probe",
        )  # fmt: skip


def _state_of(row: AlertState) -> policy.SubjectState:
    return policy.SubjectState(
        status=row.status, since=row.since, candidate=row.candidate, runs_seen=row.runs_seen,
        candidate_since=row.candidate_since, notified_status=row.notified_status,
        acknowledged_at=row.acknowledged_at, snoozed_until=row.snoozed_until,
        changes=tuple(datetime.fromisoformat(t) for t in row.changes),
        flapping_notified=row.flapping_notified,
    )  # fmt: skip


def _store(row: AlertState, state: policy.SubjectState) -> None:
    row.status = state.status
    row.since = state.since or timezone.now()
    row.candidate = state.candidate
    row.runs_seen = state.runs_seen
    row.candidate_since = state.candidate_since
    row.notified_status = state.notified_status
    row.acknowledged_at = state.acknowledged_at
    row.snoozed_until = state.snoozed_until
    row.changes = [t.isoformat() for t in state.changes]
    row.flapping_notified = state.flapping_notified


@dataclass(frozen=True)
class Tagged:
    change: policy.Change
    event: str
    domain: str
    host: str


def evaluate(now: datetime | None = None) -> int:
    """One evaluation over every source; returns the number of notifications created."""
    now = now or timezone.now()
    cfg = config()
    changes: dict[int, list[Tagged]] = defaultdict(list)
    for source, reader in (
        ("check", check_observations), ("blocklist", listing_observations),
        ("dkim", dkim_observations), ("host", host_observations),
    ):  # fmt: skip
        seen: list[datetime] = []
        observations = list(reader())
        # The overlap re-reads recent rows every minute: skip the runs already observed without
        # taking a row lock for each.
        last_runs = _last_runs({o.organisation_id for o in observations})
        for obs in observations:
            seen.append(obs.run_at)
            last = last_runs.get((obs.organisation_id, obs.key))
            if last is not None and obs.run_at <= last:
                continue
            tagged = _observe(obs, now, cfg)
            if tagged is not None:
                changes[obs.organisation_id].append(tagged)
        _advance(source, seen)
    created = 0
    for organisation_id, batch in changes.items():
        created += len(notify(organisation_id, batch))
    return created


def _last_runs(organisation_ids: set[int]) -> dict[tuple[int, str], datetime]:
    rows = AlertState.objects.filter(
        organisation_id__in=organisation_ids, last_run_at__isnull=False
    ).values_list("organisation_id", "key", "last_run_at")
    return {(org, key): last for org, key, last in rows if last is not None}


def _observe(obs: Observation, now: datetime, cfg: policy.Config) -> Tagged | None:
    with transaction.atomic():
        row = (
            AlertState.objects.select_for_update()
            .filter(organisation_id=obs.organisation_id, key=obs.key)
            .first()
        )
        if row is None:
            # First sight: the current status is the baseline (ok stays silent) unless it is a
            # problem, which is then counted like any change from ok.
            row = AlertState(
                organisation_id=obs.organisation_id, key=obs.key[:400], event=obs.event,
                domain=obs.domain, host=obs.host, status=policy.OK, since=obs.run_at,
            )  # fmt: skip
        elif row.last_run_at is not None and obs.run_at <= row.last_run_at:
            return None  # this run was already observed
        if obs.one_shot:
            decision = policy.observe_event(
                obs.key, _state_of(row), obs.status, obs.run_at, cfg, summary=obs.summary
            )
        else:
            decision = policy.observe(
                obs.key, _state_of(row), obs.status, obs.run_at, cfg,
                summary=obs.summary, confirmed=obs.confirmed,
            )  # fmt: skip
        _store(row, decision.state)
        row.summary = obs.summary[:500]
        row.last_run_at = obs.run_at
        row.save()
    if decision.change is None:
        return None
    return Tagged(decision.change, obs.event, obs.domain, obs.host)


def owner_emails(organisation: Organisation) -> list[str]:
    return sorted(
        {
            m.user.email
            for m in organisation.memberships.filter(role=Role.OWNER).select_related("user")
            if m.user.email
        }
    )


def notify(organisation_id: int, tagged: list[Tagged]) -> list[Notification]:
    """One notification per channel for this run's changes that the channel's rules take."""
    from alerts.tasks import deliver_notification

    organisation = Organisation.objects.get(pk=organisation_id)
    rules = list(AlertRule.objects.filter(organisation=organisation).prefetch_related("channels"))
    per_channel: dict[int, tuple[Channel, AlertRule | None, list[policy.Change]]] = {}
    if not rules:
        default_rule_notify(organisation, tagged)
        return []
    for rule in rules:
        taken = [
            t.change for t in tagged
            if policy.matches(
                t.change, event=t.event, domain=t.domain, host=t.host,
                min_status=rule.min_status, events=rule.events, domains=rule.domains,
                hosts=rule.hosts,
            )
        ]  # fmt: skip
        if not taken:
            continue
        for channel in rule.channels.all():
            if channel.disabled_at is not None:
                continue
            entry = per_channel.setdefault(channel.pk, (channel, rule, []))
            entry[2].extend(c for c in taken if c not in entry[2])
    created = []
    for channel, first_rule, channel_changes in per_channel.values():
        msg = render.message(organisation.name, policy.group(channel_changes), link_for())
        notification = Notification.objects.create(
            channel=channel, rule=first_rule, subject=msg.subject, body=msg.body,
            payload=render.webhook_payload(msg),
        )  # fmt: skip
        created.append(notification)
    ids = [item.pk for item in created]
    transaction.on_commit(lambda: [deliver_notification.delay(pk) for pk in ids])
    return created


def default_rule_notify(organisation: Organisation, tagged: list[Tagged]) -> None:
    """The implicit day-one rule: fail (listed is fail) of any event, to the owners' email."""
    from alerts.tasks import send_owner_mail

    taken = [
        t.change for t in tagged
        if policy.matches(t.change, event=t.event, domain=t.domain, host=t.host,
                          min_status=policy.FAIL, events=(), domains=(), hosts=())
    ]  # fmt: skip
    recipients = owner_emails(organisation)
    if not taken or not recipients:
        return
    msg = render.message(organisation.name, policy.group(taken), link_for())
    transaction.on_commit(lambda: send_owner_mail.delay(recipients, msg.subject, msg.body))


def link_for() -> str:
    base = getattr(settings, "MAILSEC_BASE_URL", "") or ""
    return f"{base.rstrip('/')}/alerts/" if base else ""
