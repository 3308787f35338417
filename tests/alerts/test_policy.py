"""The no-fatigue state machine, run by run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts import policy
from alerts.policy import Change, Config, SubjectState, observe

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "check:example.com:spf"
DEFAULT = Config()


def run(statuses: list[str], cfg: Config = DEFAULT, state: SubjectState | None = None,
        step: timedelta = timedelta(minutes=5), start: datetime = T0):  # fmt: skip
    state = state or SubjectState()
    told: list[Change | None] = []
    now = start
    for status in statuses:
        decision = observe(KEY, state, status, now, cfg)
        state = decision.state
        told.append(decision.change)
        now += step
    return state, told


def kinds(told: list[Change | None]) -> list[str]:
    return [c.kind + ":" + c.status if c else "-" for c in told]


def test_fail_needs_two_runs_then_told_once() -> None:
    _state, told = run(["fail", "fail", "fail", "fail"])
    assert kinds(told) == ["-", "problem:fail", "-", "-"]


def test_single_fail_between_oks_is_never_told() -> None:
    _state, told = run(["ok", "fail", "ok", "fail", "ok"])
    assert kinds(told) == ["-"] * 5


def test_confirm_runs_configurable() -> None:
    _state, told = run(["fail"] * 4, Config(fail_runs=3))
    assert kinds(told) == ["-", "-", "problem:fail", "-"]


def test_warning_told_on_first_run_by_default() -> None:
    _state, told = run(["warning", "warning"])
    assert kinds(told) == ["problem:warning", "-"]


def test_recovery_after_told_problem() -> None:
    _state, told = run(["fail", "fail", "ok", "ok"])
    assert kinds(told) == ["-", "problem:fail", "recovery:ok", "-"]


def test_recovery_needs_only_one_ok_run() -> None:
    state, _ = run(["fail", "fail"])
    assert state.status == "fail"
    decision = observe(KEY, state, "ok", T0 + timedelta(hours=1))
    assert decision.change is not None and decision.change.kind == policy.RECOVERY


def test_worsening_warning_to_fail_is_told() -> None:
    _state, told = run(["warning", "fail", "fail"])
    assert kinds(told) == ["problem:warning", "-", "problem:fail"]


def test_error_alone_waits_an_hour() -> None:
    _state, told = run(["error"] * 14, step=timedelta(minutes=5))
    # 0, 5, ..., 60 minutes: confirmed at the run an hour after the first error.
    assert kinds(told).count("problem:error") == 1
    assert kinds(told).index("problem:error") == 12


def test_error_interrupted_starts_again() -> None:
    _state, told = run(["error"] * 10 + ["ok"] + ["error"] * 10)
    assert "problem:error" not in kinds(told)


def test_error_does_not_clear_a_fail() -> None:
    """A fail that turns into 'could not tell' for a few runs is not a recovery."""
    _state, told = run(["fail", "fail", "error", "error", "fail"])
    assert kinds(told) == ["-", "problem:fail", "-", "-", "-"]


def test_acknowledged_is_silent_until_recovery_which_is_told() -> None:
    state, _ = run(["fail", "fail"])
    state = policy.acknowledge(state, T0)
    state, told = run(["warning", "warning", "fail", "fail", "ok"], state=state,
                      start=T0 + timedelta(hours=1))  # fmt: skip
    assert kinds(told) == ["-", "-", "-", "-", "recovery:ok"]
    assert state.acknowledged_at is None
    _state, told = run(["fail", "fail"], state=state, start=T0 + timedelta(hours=3))
    assert kinds(told) == ["-", "problem:fail"]


def test_acknowledge_ok_does_nothing() -> None:
    state = SubjectState()
    assert policy.acknowledge(state, T0) is state


def test_snoozed_problem_is_silent_then_told_when_snooze_ends() -> None:
    state = policy.snooze(SubjectState(), T0 + timedelta(minutes=30))
    state, told = run(["fail"] * 10, state=state)
    # Confirmed at 5 min under the snooze; at 30 min the snooze ends and it is told once.
    assert kinds(told).count("problem:fail") == 1
    assert kinds(told).index("problem:fail") == 6


def test_snoozed_problem_that_recovers_under_snooze_is_never_told() -> None:
    state = policy.snooze(SubjectState(), T0 + timedelta(hours=2))
    state, told = run(["fail", "fail", "ok", "ok"], state=state)
    assert kinds(told) == ["-"] * 4
    _state, told = run(["ok"], state=state, start=T0 + timedelta(hours=3))
    assert kinds(told) == ["-"]


def test_snooze_over_told_problem_then_recovered_tells_recovery_after() -> None:
    state, _ = run(["fail", "fail"])
    state = policy.snooze(state, T0 + timedelta(hours=1))
    state, told = run(["ok", "ok", "ok"], state=state, start=T0 + timedelta(minutes=20),
                      step=timedelta(minutes=30))  # fmt: skip
    assert kinds(told) == ["-", "-", "recovery:ok"]


def test_flapping_is_summarised_once() -> None:
    cfg = Config(fail_runs=1, flap_changes=4, flap_window=timedelta(hours=1))
    _state, told = run(["fail", "ok"] * 6, cfg, step=timedelta(minutes=2))
    labels = kinds(told)
    assert labels[:4] == ["problem:fail", "recovery:ok", "problem:fail", "recovery:ok"]
    assert labels.count("flapping:fail") + labels.count("flapping:ok") == 1
    assert all(label == "-" for label in labels[5:])


def test_flapping_ends_after_a_quiet_window() -> None:
    cfg = Config(fail_runs=1, flap_changes=2, flap_window=timedelta(hours=1))
    state, told = run(["fail", "ok", "fail", "ok"], cfg, step=timedelta(minutes=1))
    assert state.flapping_notified
    state, told = run(["ok"], cfg, state=state, start=T0 + timedelta(hours=2))
    assert not state.flapping_notified
    assert kinds(told) == ["recovery:ok"]  # settled at ok after the flap was told at fail
    _state, told = run(["fail"], cfg, state=state, start=T0 + timedelta(hours=3))
    assert kinds(told) == ["problem:fail"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("listed", "fail"), ("clean", "ok"), ("FAIL", "fail"), ("weird", "error"), ("", "error"),
])  # fmt: skip
def test_normalise(raw: str, expected: str) -> None:
    assert policy.normalise(raw) == expected


def test_confirmed_event_told_at_once() -> None:
    decision = observe("host:mx1:drift", SubjectState(), "fail", T0, confirmed=True)
    assert decision.change is not None and decision.change.kind == policy.PROBLEM


def _match(change: Change, **kw: object) -> bool:
    args: dict[str, object] = {"event": "check", "domain": "a.example", "host": "",
                               "min_status": "fail", "events": (), "domains": (), "hosts": ()}  # fmt: skip
    args.update(kw)
    return policy.matches(change, **args)  # type: ignore[arg-type]


def test_rule_matching() -> None:
    fail = Change(KEY, policy.PROBLEM, "fail", "ok")
    warn = Change(KEY, policy.PROBLEM, "warning", "ok")
    rec = Change(KEY, policy.RECOVERY, "ok", "fail")
    rec_warn = Change(KEY, policy.RECOVERY, "ok", "warning")
    assert _match(fail) and not _match(warn)
    assert _match(warn, min_status="warning")
    assert _match(rec) and not _match(rec_warn)
    assert not _match(fail, events=["blocklist"])
    assert _match(fail, events=["check"])
    assert not _match(fail, domains=["b.example"])
    assert _match(fail, domains=["a.example"])
    assert not _match(fail, hosts=["mx1"])


def test_group_orders_problems_first() -> None:
    changes = [
        Change("b", policy.RECOVERY, "ok", "fail"),
        Change("c", policy.PROBLEM, "warning", "ok"),
        Change("a", policy.PROBLEM, "fail", "ok"),
    ]
    assert [c.key for c in policy.group(changes)] == ["a", "c", "b"]


def test_one_shot_events_told_each_time_then_ok() -> None:
    state = SubjectState()
    told = []
    for minutes in (0, 60 * 24, 60 * 48):
        decision = policy.observe_event(
            "host:mx1:drift", state, "fail", T0 + timedelta(minutes=minutes)
        )
        state = decision.state
        told.append(decision.change)
        assert state.status == "ok"
    assert [c.kind if c else "-" for c in told] == ["problem"] * 3


def test_one_shot_events_snoozed_and_flapping() -> None:
    cfg = Config(flap_changes=2, flap_window=timedelta(hours=1))
    state = policy.snooze(SubjectState(), T0 + timedelta(minutes=30))
    assert policy.observe_event("k", state, "fail", T0, cfg).change is None
    state = SubjectState()
    labels = []
    for minute in range(5):
        decision = policy.observe_event("k", state, "fail", T0 + timedelta(minutes=minute), cfg)
        state = decision.state
        labels.append(decision.change.kind if decision.change else "-")
    assert labels == ["problem", "problem", "flapping", "-", "-"]
    later = policy.observe_event("k", state, "fail", T0 + timedelta(hours=3), cfg)
    assert later.change is not None and later.change.kind == "problem"
