"""The no-fatigue state machine: when a subject's observed status becomes a notification.

Pure: no Django, no clock of its own (the caller passes `now`). A *subject* is one thing that
has a status between runs ("check:example.com:spf", "listing:192.0.2.1:zen.spamhaus.org",
"host:mx1:drift"). Each run the engine observes its status once; `observe` returns the new
state and, at most, one change to notify:

- a status must hold for `confirm_runs` consecutive runs (default 2 for fail, 1 for warning)
  before it is *confirmed*; a run that sees something else starts the count again;
- `error` (mailsec could not tell) is never confirmed until it has lasted `error_after`
  (an hour): a resolver hiccup is not an alert;
- a confirmed change to a worse status than ok is a *problem*, a confirmed return to ok after a
  notified problem a *recovery*; nothing else is notified (not the same status again);
- acknowledged: silent until the subject recovers (the recovery is told, the acknowledgement
  then cleared); snoozed: silent until the instant given (then the current status is told if it
  differs from the last one told);
- flapping: more than `flap_changes` confirmed changes within `flap_window` is told once as
  flapping, then silent until the subject has held one status for a whole window.

`group` then turns one run's changes into one message per organisation and channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

OK = "ok"
WARNING = "warning"
FAIL = "fail"
ERROR = "error"
RANK = {OK: 0, WARNING: 1, ERROR: 1, FAIL: 2}
KNOWN = frozenset(RANK)

PROBLEM = "problem"
RECOVERY = "recovery"
FLAPPING = "flapping"


@dataclass(frozen=True)
class Config:
    fail_runs: int = 2
    warning_runs: int = 1
    error_after: timedelta = timedelta(hours=1)
    flap_changes: int = 4
    flap_window: timedelta = timedelta(hours=1)

    def runs_for(self, status: str) -> int:
        if status == FAIL:
            return max(1, self.fail_runs)
        return max(1, self.warning_runs)


@dataclass(frozen=True)
class SubjectState:
    status: str = OK  # the confirmed status
    since: datetime | None = None  # when it was confirmed
    candidate: str = ""  # a different status seen, not yet confirmed
    runs_seen: int = 0  # consecutive runs the candidate has held
    candidate_since: datetime | None = None
    notified_status: str = ""  # the last status told ("" = nothing told yet)
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    changes: tuple[datetime, ...] = field(default_factory=tuple)  # confirmed changes, recent
    flapping_notified: bool = False


@dataclass(frozen=True)
class Change:
    key: str
    kind: str  # problem, recovery, flapping
    status: str
    previous: str
    summary: str = ""


@dataclass(frozen=True)
class Decision:
    state: SubjectState
    change: Change | None = None


def normalise(status: str) -> str:
    """A status of any source as one of ok/warning/fail/error (listed is fail, clean is ok)."""
    lowered = (status or "").strip().lower()
    if lowered in KNOWN:
        return lowered
    return {"listed": FAIL, "clean": OK, "failed": FAIL, "passed": OK}.get(lowered, ERROR)


def observe(
    key: str,
    state: SubjectState,
    observed: str,
    now: datetime,
    config: Config = Config(),
    *,
    summary: str = "",
    confirmed: bool = False,
) -> Decision:
    """One run's observation of a subject. `confirmed`: the source already confirmed it (a
    one-shot event such as a failed deployment), so no run count applies."""
    observed = normalise(observed)
    if state.since is None:
        state = replace(state, since=now)
    if observed == state.status:
        state = replace(state, candidate="", runs_seen=0, candidate_since=None)
        return _held(key, state, now, config, summary)
    if observed == state.candidate:
        state = replace(state, runs_seen=state.runs_seen + 1)
    else:
        state = replace(state, candidate=observed, runs_seen=1, candidate_since=now)
    if not confirmed and not _holds(state, now, config):
        return Decision(state)
    return _confirm(key, state, observed, now, config, summary)


def _holds(state: SubjectState, now: datetime, config: Config) -> bool:
    if state.candidate == ERROR:
        started = state.candidate_since or now
        return now - started >= config.error_after
    return state.runs_seen >= config.runs_for(state.candidate)


def _confirm(
    key: str, state: SubjectState, observed: str, now: datetime, config: Config, summary: str
) -> Decision:
    previous = state.status
    window_start = now - config.flap_window
    changes = (*tuple(t for t in state.changes if t > window_start), now)
    state = replace(
        state, status=observed, since=now, candidate="", runs_seen=0, candidate_since=None,
        changes=changes,
    )  # fmt: skip
    silenced = state.acknowledged_at is not None or _snoozed(state, now)
    # An acknowledged or snoozed subject is already in someone's hands: no flap summary.
    if len(changes) > config.flap_changes and not silenced:
        if state.flapping_notified:
            return Decision(state)
        state = replace(state, flapping_notified=True, notified_status=observed)
        return Decision(state, Change(key, FLAPPING, observed, previous, summary))
    if observed == OK:
        if state.acknowledged_at is not None:
            state = replace(state, acknowledged_at=None)
        if state.notified_status in ("", OK):
            # Never told of a problem (or silenced by snooze while it lasted): nothing to end.
            return Decision(replace(state, notified_status="" if not state.notified_status else OK))
        if _snoozed(state, now):
            return Decision(state)
        return _tell(key, state, RECOVERY, observed, previous, summary)
    if state.acknowledged_at is not None or _snoozed(state, now):
        return Decision(state)
    if state.notified_status == observed:
        return Decision(state)
    return _tell(key, state, PROBLEM, observed, previous, summary)


def _tell(
    key: str, state: SubjectState, kind: str, status: str, previous: str, summary: str
) -> Decision:
    state = replace(state, notified_status=status)
    return Decision(state, Change(key, kind, status, previous, summary))


def _snoozed(state: SubjectState, now: datetime) -> bool:
    return state.snoozed_until is not None and now < state.snoozed_until


def _held(key: str, state: SubjectState, now: datetime, config: Config, summary: str) -> Decision:
    """The status held another run: tell it only when a flap has settled (a whole window at
    one status) or a snooze has ended over a change not told."""
    if state.flapping_notified:
        last = state.changes[-1] if state.changes else state.since or now
        if now - last < config.flap_window:
            return Decision(state)
        state = replace(state, flapping_notified=False, changes=())
    elif state.snoozed_until is None or _snoozed(state, now):
        return Decision(state)
    if state.snoozed_until is not None and _snoozed(state, now):
        return Decision(state)
    state = replace(state, snoozed_until=None)
    if state.acknowledged_at is not None or state.notified_status == state.status:
        return Decision(state)
    if state.status == OK:
        if state.notified_status in ("", OK):
            return Decision(state)
        return _tell(key, state, RECOVERY, OK, state.notified_status, summary)
    return _tell(key, state, PROBLEM, state.status, state.notified_status or OK, summary)


def observe_event(
    key: str,
    state: SubjectState,
    observed: str,
    now: datetime,
    config: Config = Config(),
    *,
    summary: str = "",
) -> Decision:
    """A one-shot event (a host's configuration drifted, a deployment failed): it has no
    recovery, so it is told when it happens (unless snoozed, or the subject is flapping: more
    than `flap_changes` events in `flap_window` are told once as flapping) and the subject
    returns to ok at once, ready to tell the next one."""
    observed = normalise(observed)
    if observed == OK:
        return Decision(replace(state, status=OK, since=now, notified_status=""))
    window_start = now - config.flap_window
    changes = (*(t for t in state.changes if t > window_start), now)
    if state.flapping_notified and len(changes) <= config.flap_changes:
        state = replace(state, flapping_notified=False)
    state = replace(
        state, status=OK, since=now, candidate="", runs_seen=0, candidate_since=None,
        changes=changes, notified_status="", acknowledged_at=None,
    )  # fmt: skip
    if _snoozed(state, now):
        return Decision(state)
    if len(changes) > config.flap_changes:
        if state.flapping_notified:
            return Decision(state)
        state = replace(state, flapping_notified=True)
        return Decision(state, Change(key, FLAPPING, observed, OK, summary))
    return Decision(state, Change(key, PROBLEM, observed, OK, summary))


def acknowledge(state: SubjectState, now: datetime) -> SubjectState:
    """Silence until recovery; only a problem can be acknowledged."""
    if state.status == OK:
        return state
    return replace(state, acknowledged_at=now)


def snooze(state: SubjectState, until: datetime) -> SubjectState:
    return replace(state, snoozed_until=until)


def matches(
    change: Change,
    *,
    event: str,
    domain: str,
    host: str,
    min_status: str,
    events: Sequence[str],
    domains: Sequence[str],
    hosts: Sequence[str],
) -> bool:
    """Whether a rule takes a change: its event kind, its domain or host, and its severity.

    A recovery or flap is judged by the worse of the two statuses it moves between, so a rule
    for fail also hears that a fail is over.
    """
    if events and event not in events:
        return False
    if domains and domain not in domains:
        return False
    if hosts and host not in hosts:
        return False
    worst = max(RANK.get(change.status, 0), RANK.get(change.previous, 0))
    needed = RANK[FAIL] if min_status == FAIL else RANK[WARNING]
    if change.kind == PROBLEM and change.status == ERROR:
        return min_status != FAIL
    return worst >= needed


def group(changes: Iterable[Change]) -> list[Change]:
    """One run's changes in a stable order: problems (worst first), flapping, recoveries."""
    order = {PROBLEM: 0, FLAPPING: 1, RECOVERY: 2}
    return sorted(changes, key=lambda c: (order[c.kind], -RANK.get(c.status, 0), c.key))
