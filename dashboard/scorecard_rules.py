"""The overview's verdict arithmetic, pure: the thirteen controls, worst-of, counts, priorities.

A control's verdict is the worst status among its findings (one finding per domain or host it
covers); a control with no finding at all is `unmeasured` (not yet measured), never `ok`. `fail`
outranks `error`: a known fault matters more than a lookup mailsec could not make, and an error
is never shown as a fail.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

OK = "ok"
WARNING = "warning"
FAIL = "fail"
ERROR = "error"
UNMEASURED = "unmeasured"

# Most severe first; `unmeasured` is shown apart and never hides a measured status.
SEVERITY = (FAIL, ERROR, WARNING, OK)
STATUSES = (*SEVERITY, UNMEASURED)
_RANK = {status: rank for rank, status in enumerate(SEVERITY)}

STATUS_LABELS = {
    OK: "OK",
    WARNING: "Warning",
    FAIL: "Fail",
    ERROR: "Error",
    UNMEASURED: "Not yet measured",
}

# At most this many offenders are named per control; the counts say how many there are.
OFFENDER_LIMIT = 5


@dataclass(frozen=True)
class Control:
    number: int
    key: str
    title: str
    # Lower is more urgent when several controls fail ("what needs action first").
    priority: int


CONTROLS: tuple[Control, ...] = (
    Control(1, "message_size", "Maximum message size", 13),
    Control(2, "local_blacklist", "Local IP blacklist", 11),
    Control(3, "reverse_dns", "Reverse DNS for senders", 8),
    Control(4, "imap_pop3_tls", "TLS for IMAP/POP3", 3),
    Control(5, "spf", "SPF", 6),
    Control(6, "smtp_auth", "SMTP authentication", 4),
    Control(7, "open_relay", "No open relay", 1),
    Control(8, "connection_limits", "Connection limits", 12),
    Control(9, "uri_blocklists", "URI/domain blocklists", 9),
    Control(10, "two_mx", "At least two MX", 10),
    Control(11, "dkim", "DKIM", 7),
    Control(12, "dmarc", "DMARC", 5),
    Control(13, "dnsbl", "DNSBL", 2),
)
CONTROL_KEYS = tuple(control.key for control in CONTROLS)


def rank(status: str) -> int:
    """0 for fail ... 3 for ok; anything unknown sorts after ok."""
    return _RANK.get(status, len(SEVERITY))


def worst(statuses: Iterable[str]) -> str:
    """The most severe measured status; `unmeasured` when none was measured."""
    measured = [s for s in statuses if s in _RANK]
    if not measured:
        return UNMEASURED
    return min(measured, key=rank)


@dataclass(frozen=True)
class Finding:
    """One domain or host under one control."""

    kind: str  # "domain" or "host" or "address"
    name: str
    status: str
    summary: str
    url: str = ""


@dataclass(frozen=True)
class Verdict:
    control: Control
    status: str
    summary: str
    counts: dict[str, int]
    offenders: tuple[Finding, ...]
    findings_total: int
    unmeasured_subjects: int = 0

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def bad_total(self) -> int:
        """How many findings are not ok (the offenders named are the first few of these)."""
        return sum(self.counts.get(status, 0) for status in (FAIL, ERROR, WARNING))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def combine(
    control: Control,
    findings: Sequence[Finding],
    *,
    unmeasured_subjects: int = 0,
    unmeasured_reason: str = "Not yet measured.",
    noun: str = "target",
) -> Verdict:
    """The control's verdict from its findings: worst-of, counts, the worst offenders first.

    `unmeasured_subjects` counts domains or hosts the control covers that have no result yet;
    they are reported in the summary but do not change a measured status.
    """
    counts = {status: 0 for status in STATUSES}
    for finding in findings:
        counts[finding.status if finding.status in _RANK else UNMEASURED] += 1
    counts[UNMEASURED] += unmeasured_subjects
    status = worst(f.status for f in findings)
    bad = sorted(
        (f for f in findings if f.status != OK and f.status in _RANK),
        key=lambda f: (rank(f.status), f.name),
    )
    if status == UNMEASURED:
        summary = unmeasured_reason
    else:
        measured = len(findings)
        parts = [f"{counts[OK]} of {_plural(measured, noun)} ok"]
        parts += [f"{counts[s]} {s}" for s in (FAIL, ERROR, WARNING) if counts[s]]
        if unmeasured_subjects:
            parts.append(f"{unmeasured_subjects} not yet measured")
        summary = ", ".join(parts)
        if bad:
            summary += f". Worst: {bad[0].name}: {bad[0].summary}"
    return Verdict(
        control=control,
        status=status,
        summary=summary[:300],
        counts=counts,
        offenders=tuple(bad[:OFFENDER_LIMIT]),
        findings_total=len(findings),
        unmeasured_subjects=unmeasured_subjects,
    )


def action_first(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """What needs action first: fails, then errors, then warnings, each by control priority."""
    urgent = [v for v in verdicts if v.status in (FAIL, ERROR, WARNING)]
    return sorted(urgent, key=lambda v: (rank(v.status), v.control.priority))


def overall(verdicts: Iterable[Verdict]) -> str:
    return worst(v.status for v in verdicts)


@dataclass(frozen=True)
class Trend:
    """Events of the last period against the period before."""

    current: int
    previous: int
    direction: str = field(init=False)

    def __post_init__(self) -> None:
        direction = "same"
        if self.current > self.previous:
            direction = "up"
        elif self.current < self.previous:
            direction = "down"
        object.__setattr__(self, "direction", direction)


def deployment_verdict(
    *,
    has_policy: bool,
    last_state: str | None,
    policy_changed_since: bool,
) -> tuple[str, str]:
    """Whether a host runs its policy: the status and why.

    `last_state` is the newest finished deployment's state (succeeded, unchanged, failed,
    rolled_back) or None when the host was never deployed.
    """
    if not has_policy:
        return WARNING, "No policy assigned: nothing is enforced"
    if last_state is None:
        return WARNING, "The policy was never deployed"
    if last_state in ("failed", "rolled_back"):
        return FAIL, f"The last deployment {last_state.replace('_', ' ')}"
    if policy_changed_since:
        return WARNING, "The policy changed after the last deployment"
    return OK, "Policy deployed"


# A mynetworks entry wider than this trusts far more than the operator's own machines.
MAX_TRUSTED_V4_PREFIX = 8
MAX_TRUSTED_V6_PREFIX = 32


def mynetworks_verdict(networks: Iterable[str]) -> tuple[str, str]:
    """`fail` when mynetworks trusts a huge or public range (relay for anyone in it)."""
    wide: list[str] = []
    for text in networks:
        try:
            network = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            return ERROR, f"mynetworks holds {str(text)[:60]!r}, not a network"
        limit = MAX_TRUSTED_V4_PREFIX if network.version == 4 else MAX_TRUSTED_V6_PREFIX
        if network.prefixlen < limit or (network.is_global and network.num_addresses > 256):
            wide.append(str(network))
    if wide:
        return FAIL, f"mynetworks trusts {', '.join(wide[:3])}: relay for anyone in it"
    return OK, "mynetworks is narrow"
