"""`/metrics`: Prometheus text exposition (format 0.0.4), for existing monitoring stacks.

Access: `Authorization: Bearer <MAILSEC_METRICS_TOKEN>` when a token is set, or a client
address inside MAILSEC_METRICS_ALLOW_NETWORKS (default: loopback only). Every figure is one
aggregate query over the whole installation (no per-row loops, no organisation labels).
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
from collections.abc import Iterable

from django.apps import apps
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Subquery,
    Sum,
)
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from blocklists.models import Listing, ListingEvent
from dns_records.models import CheckEvent, CheckState, Domain
from hosts.models import Deployment, Host, HostEvent
from mailsec.client_ip import client_ip
from mailsec.models import FINISHED_TASK_STATES, TaskRun, TaskState
from reports.models import RawMessage, Report

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Families written in order, each with its HELP and TYPE lines once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[Sample], suffix: str = ""
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.samples(name + suffix, samples)

    def samples(self, name: str, samples: Iterable[Sample]) -> None:
        for labels, value in samples:
            text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            self.lines.append(
                f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _grouped(queryset: object, *fields: str, names: Iterable[str] = ()) -> list[Sample]:
    """Counts per combination of `fields`, labelled with `names` (default: the field names)."""
    labels = list(names) or list(fields)
    rows = queryset.values(*fields).annotate(n=Count("pk")).order_by(*fields)  # type: ignore[attr-defined]
    return [
        (
            {label: str(row[field] or "none") for label, field in zip(labels, fields, strict=True)},
            row["n"],
        )
        for row in rows
    ]


def render_metrics(now: dt.datetime | None = None) -> str:
    now = now or timezone.now()
    day = now - dt.timedelta(days=1)
    out = Exposition()

    domains = _grouped(Domain.objects.all(), "worst_status", names=["status"])
    out.family(
        "mailsec_domains",
        "gauge",
        "Domains by their worst current check status (none: not checked yet).",
        [({"status": labels["status"].replace("none", "unchecked")}, n) for labels, n in domains],
    )
    out.family(
        "mailsec_domain_checks",
        "gauge",
        "Current check results by check and status.",
        _grouped(CheckState.objects.all(), "name", "status", names=["check", "status"]),
    )

    newest = Deployment.objects.filter(host=OuterRef("pk")).order_by("-created_at", "-id")
    hosts = Host.objects.annotate(last_deployment=Subquery(newest.values("state")[:1]))
    out.family(
        "mailsec_hosts",
        "gauge",
        "Managed hosts by the state of their newest deployment (none: never deployed).",
        _grouped(hosts, "last_deployment", names=["deployment_state"]),
    )
    out.family(
        "mailsec_blocklist_listings",
        "gauge",
        "Current blocklist states of active targets by target kind and status.",
        _grouped(
            Listing.objects.filter(target__active=True),
            "target__kind",
            "status",
            names=["kind", "status"],
        ),
    )

    events = [
        ("check", CheckEvent.objects.all()),
        ("listing", ListingEvent.objects.all()),
        ("host", HostEvent.objects.all()),
    ]
    out.family(
        "mailsec_events_last_24h",
        "gauge",
        "Status-change events recorded in the last 24 hours by source.",
        [({"source": source}, qs.filter(created_at__gte=day).count()) for source, qs in events],
    )

    notifications = _notifications()
    if notifications is not None:
        out.family(
            "mailsec_notifications",
            "gauge",
            "Alert notifications stored, by channel kind and state.",
            notifications,
        )

    runs = TaskRun.objects.all()
    out.family(
        "mailsec_task_runs",
        "gauge",
        "Background jobs stored (history is pruned), by kind and state.",
        _grouped(runs, "kind", "state"),
    )
    out.family(
        "mailsec_task_queue_depth",
        "gauge",
        "Jobs waiting for a worker (state pending).",
        [({}, runs.filter(state=TaskState.PENDING).count())],
    )
    durations = (
        runs.filter(
            state__in=FINISHED_TASK_STATES, started_at__isnull=False, finished_at__isnull=False
        )
        .annotate(
            took=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        )
        .values("kind")
        .annotate(total=Sum("took"), longest=Max("took"), n=Count("pk"))
        .order_by("kind")
    )
    rows = list(durations)
    out.lines.append("# HELP mailsec_task_duration_seconds Run time of finished jobs by kind.")
    out.lines.append("# TYPE mailsec_task_duration_seconds summary")
    out.samples(
        "mailsec_task_duration_seconds_sum",
        [({"kind": r["kind"]}, _seconds(r["total"])) for r in rows],
    )
    out.samples(
        "mailsec_task_duration_seconds_count", [({"kind": r["kind"]}, r["n"]) for r in rows]
    )
    out.family(
        "mailsec_task_duration_max_seconds",
        "gauge",
        "Longest run time of a stored finished job by kind.",
        [({"kind": r["kind"]}, _seconds(r["longest"])) for r in rows],
    )

    out.family(
        "mailsec_reports",
        "gauge",
        "DMARC aggregate reports stored.",
        [({}, Report.objects.count())],
    )
    out.family(
        "mailsec_reports_ingested_last_24h",
        "gauge",
        "DMARC aggregate reports stored in the last 24 hours.",
        [({}, Report.objects.filter(created_at__gte=day).count())],
    )
    out.family(
        "mailsec_raw_messages",
        "gauge",
        "Received report messages by state (quarantined: could not be parsed).",
        _grouped(RawMessage.objects.all(), "state"),
    )
    return out.text()


def _seconds(value: dt.timedelta | None) -> float:
    return round(value.total_seconds(), 3) if value is not None else 0.0


def _notifications() -> list[Sample] | None:
    """Notifications by channel kind and state, when the alerts app is installed."""
    if not apps.is_installed("alerts"):
        return None
    try:
        model = apps.get_model("alerts", "Notification")
    except LookupError:
        return None
    return _grouped(model.objects.all(), "channel__kind", "state", names=["channel", "state"])


def _allowed(request: HttpRequest) -> bool:
    token = settings.MAILSEC_METRICS_TOKEN
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    if token and header.startswith("Bearer "):
        given = header.removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in settings.MAILSEC_METRICS_ALLOW_NETWORKS)


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse(
            "Forbidden: a metrics token or an allowed client address is needed.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE)
