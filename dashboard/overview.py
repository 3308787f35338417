"""The overview's scorecard: the thirteen controls per organisation, from what is stored.

Read-only and aggregate: a fixed number of queries per organisation (check states, DKIM keys,
reports, hosts with their last deployment, probes, listings, event counts), none per domain.
Verdict arithmetic is in `dashboard.scorecard_rules` (pure).

Where a control is both enforced and probed, a live probe result (the newest hosts.ProbeResult
per probe and port) is combined with the deployment state; without probes the deployed policy decides.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from blocklists import selectors as blocklist_selectors
from blocklists.models import BlacklistEntry, ListingEvent
from dashboard import scorecard_rules as rules
from dns_records.models import CheckEvent, CheckState, DkimKey, DkimKeyState, Domain
from dns_records.names import display_domain
from hosts.models import Deployment, DeploymentState, Host, HostEvent, ProbeResult
from hosts.policy import PolicyValues
from hosts.selectors import policy_values
from mailsec.models import Organisation
from mailsec.selectors import User, organisations_visible
from reports.models import Report

# Controls measured by a domain's DNS check of this name.
DOMAIN_CHECKS = {
    "reverse_dns": "rdns",
    "spf": "spf",
    "two_mx": "mx",
    "dkim": "dkim",
    "dmarc": "dmarc",
}
REPORT_WINDOW = dt.timedelta(days=30)
PROBE_WINDOW = dt.timedelta(days=30)
TREND_PERIOD = dt.timedelta(days=7)
FINISHED_DEPLOYMENTS = (
    DeploymentState.SUCCEEDED,
    DeploymentState.UNCHANGED,
    DeploymentState.FAILED,
    DeploymentState.ROLLED_BACK,
)
LISTING_STATUS = {"listed": rules.FAIL, "clean": rules.OK, "error": rules.ERROR}


@dataclass(frozen=True)
class Scorecard:
    organisation: Organisation
    verdicts: list[rules.Verdict]
    overall: str
    action_first: list[rules.Verdict]
    domains_total: int
    domain_counts: dict[str, int]
    hosts_total: int
    host_counts: dict[str, int]
    trends: dict[str, rules.Trend]
    generated_at: dt.datetime


def _domain_url(pk: int) -> str:
    return reverse("dashboard:domain_detail", kwargs={"pk": pk})


def _host_url(pk: int) -> str:
    return reverse("dashboard:host_detail", kwargs={"pk": pk})


def _merge(found: dict[Any, rules.Finding], key: Any, finding: rules.Finding) -> None:
    """Keep one finding per subject: the worse one, or both summaries when equally bad."""
    old = found.get(key)
    if old is None or rules.rank(finding.status) < rules.rank(old.status):
        found[key] = finding
    elif rules.rank(finding.status) == rules.rank(old.status) and finding.status != rules.OK:
        merged = f"{old.summary}; {finding.summary}"[:300]
        found[key] = rules.Finding(old.kind, old.name, old.status, merged, old.url)


@dataclass
class _HostRow:
    pk: int
    name: str
    values: PolicyValues | None
    deploy_status: str
    deploy_summary: str
    deployed_at: dt.datetime | None


def _hosts(organisation: Organisation) -> list[_HostRow]:
    finished = Deployment.objects.filter(host=OuterRef("pk"), state__in=FINISHED_DEPLOYMENTS)
    newest = finished.order_by("-created_at", "-id")
    deployed = Deployment.objects.filter(
        host=OuterRef("pk"), state__in=(DeploymentState.SUCCEEDED, DeploymentState.UNCHANGED)
    ).order_by("-finished_at", "-id")
    hosts = (
        Host.objects.filter(organisation=organisation)
        .select_related("policy")
        .annotate(
            last_state=Subquery(newest.values("state")[:1]),
            last_deployed_at=Subquery(deployed.values("finished_at")[:1]),
        )
        .order_by("name")
    )
    rows = []
    for host in hosts:
        policy = host.policy
        last_state = getattr(host, "last_state", None)
        deployed_at = getattr(host, "last_deployed_at", None)
        changed = bool(
            policy is not None
            and last_state in (DeploymentState.SUCCEEDED, DeploymentState.UNCHANGED)
            and deployed_at is not None
            and policy.updated_at > deployed_at
        )
        status, summary = rules.deployment_verdict(
            has_policy=policy is not None, last_state=last_state, policy_changed_since=changed
        )
        rows.append(
            _HostRow(
                pk=host.pk,
                name=host.name,
                values=policy_values(policy) if policy is not None else None,
                deploy_status=status,
                deploy_summary=summary,
                deployed_at=deployed_at,
            )
        )
    return rows


def _probes(organisation: Organisation) -> dict[int, list[tuple[str, int, str, str]]]:
    """Each host's newest probe per (name, port) of the last 30 days."""
    since = timezone.now() - PROBE_WINDOW
    newest = ProbeResult.objects.filter(
        host=OuterRef("host"), name=OuterRef("name"), port=OuterRef("port")
    ).order_by("-probed_at", "-id")
    rows = ProbeResult.objects.filter(host__organisation=organisation, probed_at__gte=since).filter(
        pk=Subquery(newest.values("pk")[:1])
    )
    found: dict[int, list[tuple[str, int, str, str]]] = {}
    for host_id, name, port, status, summary in rows.values_list(
        "host_id", "name", "port", "status", "summary"
    ):
        found.setdefault(host_id, []).append((name, port, status, summary))
    return found


def _probe_finding(
    host: _HostRow, probes: list[tuple[str, int, str, str]], match: Callable[[str], bool]
) -> rules.Finding | None:
    """The worst of the host's matching probes, or None when none ran."""
    chosen = [p for p in probes if match(p[0])]
    if not chosen:
        return None
    name, port, status, summary = min(chosen, key=lambda p: rules.rank(p[2]))
    return rules.Finding("host", host.name, status, f"{name}:{port}: {summary}", _host_url(host.pk))


def _host_finding(host: _HostRow, status: str, summary: str) -> rules.Finding:
    return rules.Finding("host", host.name, status, summary, _host_url(host.pk))


def _policy_control(
    hosts: list[_HostRow],
    probes: dict[int, list[tuple[str, int, str, str]]],
    *,
    match: Callable[[str], bool] | None,
    policy_check: Callable[[PolicyValues], tuple[str, str]] | None = None,
) -> list[rules.Finding]:
    """One finding per host: its probe when one ran, combined with its deployed policy."""
    findings: list[rules.Finding] = []
    for host in hosts:
        found: dict[str, rules.Finding] = {}
        _merge(found, "h", _host_finding(host, host.deploy_status, host.deploy_summary))
        if host.values is not None and policy_check is not None:
            status, summary = policy_check(host.values)
            _merge(found, "h", _host_finding(host, status, summary))
        probe = _probe_finding(host, probes.get(host.pk, []), match) if match else None
        if probe is not None:
            _merge(found, "h", probe)
        findings.append(found["h"])
    return findings


def _tls_policy(values: PolicyValues) -> tuple[str, str]:
    if not values.imap_pop3_tls_required:
        return rules.FAIL, "The policy allows IMAP/POP3 logins without TLS"
    return rules.OK, f"TLS required, at least {values.tls_min_version}"


def _auth_policy(values: PolicyValues) -> tuple[str, str]:
    if not values.submission_enabled:
        return rules.WARNING, "The policy has no submission service with authentication"
    return rules.OK, "Submission with SASL, AUTH only after TLS"


def _relay_policy(values: PolicyValues) -> tuple[str, str]:
    return rules.mynetworks_verdict(values.mynetworks)


def _blacklist_policy(values: PolicyValues) -> tuple[str, str]:
    if not values.enforce_local_blacklist:
        return rules.WARNING, "The policy does not enforce the local blacklist"
    return rules.OK, "The local blacklist is enforced"


def _domain_controls(
    organisation: Organisation, domains: dict[int, str]
) -> dict[str, tuple[list[rules.Finding], int]]:
    """Findings per domain-check control, and how many domains have no result for it."""
    per_control: dict[str, dict[int, rules.Finding]] = {key: {} for key in DOMAIN_CHECKS}
    control_of = {check: key for key, check in DOMAIN_CHECKS.items()}
    states = CheckState.objects.filter(
        domain__organisation=organisation, name__in=list(control_of)
    ).values_list("domain_id", "name", "status", "summary")
    for domain_id, name, status, summary in states:
        finding = rules.Finding(
            "domain", domains.get(domain_id, "?"), status, summary, _domain_url(domain_id)
        )
        _merge(per_control[control_of[name]], domain_id, finding)

    # DKIM: an active key whose signing was checked and failed is a fail of the domain.
    unsigned = DkimKey.objects.filter(
        domain__organisation=organisation, state=DkimKeyState.ACTIVE, signing_verified=False
    ).values_list("domain_id", "selector", "signing_error")
    for domain_id, selector, error in unsigned:
        summary = f"Key {selector}: signing not verified" + (f" ({error})" if error else "")
        finding = rules.Finding(
            "domain", domains.get(domain_id, "?"), rules.FAIL, summary, _domain_url(domain_id)
        )
        _merge(per_control["dkim"], domain_id, finding)

    # DMARC: a good record with no aggregate report for 30 days is a warning (rua unread?).
    since = timezone.now() - REPORT_WINDOW
    reported = set(
        Report.objects.filter(
            organisation=organisation, domain__isnull=False, date_end__gte=since
        ).values_list("domain_id", flat=True)
    )
    dmarc = per_control["dmarc"]
    for domain_id, finding in list(dmarc.items()):
        if finding.status == rules.OK and domain_id not in reported:
            dmarc[domain_id] = rules.Finding(
                "domain",
                finding.name,
                rules.WARNING,
                "Record ok; no aggregate report received in 30 days",
                finding.url,
            )
    return {
        key: (sorted(found.values(), key=lambda f: f.name), len(domains) - len(found))
        for key, found in per_control.items()
    }


def _listing_findings(user: User, organisation: Organisation) -> dict[str, list[rules.Finding]]:
    """Per blocklist target, its worst state over the enabled zones: `ip` and `domain`."""
    rows = (
        blocklist_selectors.listings_visible(user, organisation=organisation)
        .order_by()
        .values_list("target_id", "target__kind", "target__value", "zone", "status")
    )
    found: dict[str, dict[int, rules.Finding]] = {"ip": {}, "domain": {}}
    page = reverse("dashboard:blocklist_page") + f"?org={organisation.slug}"
    for target_id, kind, value, zone, status in rows:
        verdict = LISTING_STATUS.get(status, rules.ERROR)
        text = {
            "listed": f"Listed on {zone}",
            "clean": "Clean",
            "error": f"{zone} could not be asked",
        }.get(status, status)
        shown = display_domain(value) if kind == "domain" else value
        kind_label = "address" if kind == "ip" else "domain"
        finding = rules.Finding(kind_label, shown, verdict, text, page)
        _merge(found.setdefault(kind, {}), target_id, finding)
    return {kind: sorted(items.values(), key=lambda f: f.name) for kind, items in found.items()}


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts = {status: 0 for status in rules.STATUSES}
    for value in values:
        counts[value if value in counts else rules.UNMEASURED] += 1
    return counts


def _trends(organisation: Organisation, now: dt.datetime) -> dict[str, rules.Trend]:
    current = Q(created_at__gte=now - TREND_PERIOD)
    previous = Q(created_at__gte=now - 2 * TREND_PERIOD, created_at__lt=now - TREND_PERIOD)

    def pair(queryset: Any) -> rules.Trend:
        got = queryset.aggregate(
            current=Count("pk", filter=current), previous=Count("pk", filter=previous)
        )
        return rules.Trend(current=got["current"], previous=got["previous"])

    return {
        "check_changes": pair(CheckEvent.objects.filter(domain__organisation=organisation)),
        "check_failures": pair(
            CheckEvent.objects.filter(domain__organisation=organisation, status=rules.FAIL)
        ),
        "listing_changes": pair(ListingEvent.objects.filter(organisation=organisation)),
        "host_events": pair(HostEvent.objects.filter(host__organisation=organisation)),
    }


def _no_result(key: str, domains: int) -> str:
    if not domains:
        return "No domains yet."
    check = DOMAIN_CHECKS[key]
    return f"No {check} check result yet for {domains} domain{'s' if domains != 1 else ''}."


def scorecard(user: User, organisation: Organisation) -> Scorecard:
    """The organisation's thirteen controls. The caller has checked the user is a member."""
    now = timezone.now()
    domain_rows = list(
        Domain.objects.filter(organisation=organisation).values_list("pk", "name", "worst_status")
    )
    domains = {pk: display_domain(name) for pk, name, _ in domain_rows}
    hosts = _hosts(organisation)
    probes = _probes(organisation)
    by_domain = _domain_controls(organisation, domains)
    listings = _listing_findings(user, organisation)
    listed = blocklist_selectors.listed_domain_ids(user) & set(domains)
    control = {c.key: c for c in rules.CONTROLS}
    no_hosts = "No managed hosts: nothing is deployed or probed yet."
    verdicts: dict[str, rules.Verdict] = {}

    verdicts["message_size"] = rules.combine(
        control["message_size"],
        _policy_control(hosts, probes, match=lambda name: name == "smtp_size"),
        unmeasured_reason=no_hosts,
        noun="host",
    )

    entries = BlacklistEntry.objects.filter(organisation=organisation).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    entry_times = list(entries.values_list("created_at", flat=True))
    blacklist = _policy_control(hosts, probes, match=None, policy_check=_blacklist_policy)
    for index, host in enumerate(hosts):
        if host.deploy_status != rules.OK:
            continue
        newer = sum(1 for t in entry_times if host.deployed_at is None or t > host.deployed_at)
        if newer:
            blacklist[index] = _host_finding(
                host,
                rules.WARNING,
                f"{newer} blacklist entr{'y' if newer == 1 else 'ies'} added after the last "
                "deployment",
            )
    verdict = rules.combine(
        control["local_blacklist"], blacklist, unmeasured_reason=no_hosts, noun="host"
    )
    if verdict.status != rules.UNMEASURED:
        n = len(entry_times)
        summary = f"{n} entr{'y' if n == 1 else 'ies'}; {verdict.summary}"[:300]
        verdict = dataclasses.replace(verdict, summary=summary)
    verdicts["local_blacklist"] = verdict

    findings, missing = by_domain["reverse_dns"]
    host_ptr = [
        f
        for f in (
            _probe_finding(h, probes.get(h.pk, []), lambda name: name == "smtp_banner_ptr")
            for h in hosts
        )
        if f is not None
    ]
    verdicts["reverse_dns"] = rules.combine(
        control["reverse_dns"],
        [*findings, *host_ptr],
        unmeasured_subjects=missing,
        unmeasured_reason=_no_result("reverse_dns", len(domains)),
        noun="domain or host",
    )
    verdicts["imap_pop3_tls"] = rules.combine(
        control["imap_pop3_tls"],
        _policy_control(
            hosts,
            probes,
            match=lambda name: name.startswith(("imap_", "pop3_")),
            policy_check=_tls_policy,
        ),
        unmeasured_reason=no_hosts,
        noun="host",
    )
    verdicts["smtp_auth"] = rules.combine(
        control["smtp_auth"],
        _policy_control(
            hosts, probes, match=lambda name: name == "smtp_auth", policy_check=_auth_policy
        ),
        unmeasured_reason=no_hosts,
        noun="host",
    )
    verdicts["open_relay"] = rules.combine(
        control["open_relay"],
        _policy_control(
            hosts, probes, match=lambda name: name == "smtp_relay", policy_check=_relay_policy
        ),
        unmeasured_reason=no_hosts,
        noun="host",
    )
    verdicts["connection_limits"] = rules.combine(
        control["connection_limits"],
        _policy_control(hosts, probes, match=None),
        unmeasured_reason=no_hosts,
        noun="host",
    )
    verdicts["uri_blocklists"] = rules.combine(
        control["uri_blocklists"],
        listings.get("domain", []),
        unmeasured_reason="No domain polled against domain blocklists yet.",
        noun="domain",
    )
    verdicts["dnsbl"] = rules.combine(
        control["dnsbl"],
        listings.get("ip", []),
        unmeasured_reason="No address polled against IP blocklists yet.",
        noun="address",
    )
    for key in ("spf", "two_mx", "dkim", "dmarc"):
        findings, missing = by_domain[key]
        verdicts[key] = rules.combine(
            control[key],
            findings,
            unmeasured_subjects=missing,
            unmeasured_reason=_no_result(key, len(domains)),
            noun="domain",
        )

    ordered = [verdicts[c.key] for c in rules.CONTROLS]
    return Scorecard(
        organisation=organisation,
        verdicts=ordered,
        overall=rules.overall(ordered),
        action_first=rules.action_first(ordered),
        domains_total=len(domain_rows),
        # As the domain list counts them: a listed domain (or MX address) is a fail.
        domain_counts=_counts(
            rules.FAIL if pk in listed else (status or rules.UNMEASURED)
            for pk, _, status in domain_rows
        ),
        hosts_total=len(hosts),
        host_counts=_counts(h.deploy_status for h in hosts),
        trends=_trends(organisation, now),
        generated_at=now,
    )


def scorecards(user: User, *, slug: str = "") -> list[Scorecard]:
    """The scorecard of each organisation the user belongs to (or only the one named)."""
    organisations = organisations_visible(user).order_by("name")
    if slug:
        organisations = organisations.filter(slug=slug)
    return [scorecard(user, organisation) for organisation in organisations]


def _finding_json(finding: rules.Finding) -> dict[str, str]:
    return {
        "kind": finding.kind,
        "name": finding.name,
        "status": finding.status,
        "summary": finding.summary,
        "url": finding.url,
    }


def verdict_json(verdict: rules.Verdict) -> dict[str, Any]:
    return {
        "number": verdict.control.number,
        "key": verdict.control.key,
        "title": verdict.control.title,
        "status": verdict.status,
        "summary": verdict.summary,
        "counts": verdict.counts,
        "offenders": [_finding_json(f) for f in verdict.offenders],
    }


def scorecard_json(card: Scorecard) -> dict[str, Any]:
    """The API's shape of one organisation's scorecard."""
    return {
        "organisation": {"slug": card.organisation.slug, "name": card.organisation.name},
        "status": card.overall,
        "generated_at": card.generated_at.isoformat(),
        "controls": [verdict_json(v) for v in card.verdicts],
        "action_first": [v.control.key for v in card.action_first],
        "domains": {"total": card.domains_total, "by_status": card.domain_counts},
        "hosts": {"total": card.hosts_total, "by_status": card.host_counts},
        "trends": {
            name: {
                "last_7_days": t.current,
                "previous_7_days": t.previous,
                "direction": t.direction,
            }
            for name, t in card.trends.items()
        },
    }
