"""Properties of the state machine over arbitrary runs of statuses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import policy
from alerts.policy import Config, SubjectState, observe

T0 = datetime(2026, 1, 1, tzinfo=UTC)
statuses = st.lists(st.sampled_from(["ok", "warning", "fail", "error"]), max_size=60)
NO_FLAP = Config(flap_changes=10_000)


def told(
    runs: list[str], cfg: Config, state: SubjectState | None = None
) -> list[tuple[int, policy.Change]]:
    state = state or SubjectState()
    out = []
    for index, status in enumerate(runs):
        decision = observe("k", state, status, T0 + timedelta(minutes=5 * index), cfg)
        state = decision.state
        if decision.change is not None:
            out.append((index, decision.change))
    return out


@given(statuses)
@settings(max_examples=300, deadline=None)
def test_never_the_same_status_twice_in_a_row(runs: list[str]) -> None:
    changes = [c for _i, c in told(runs, NO_FLAP)]
    for before, after in itertools.pairwise(changes):
        assert before.status != after.status


@given(statuses)
@settings(max_examples=300, deadline=None)
def test_a_told_fail_held_for_the_confirm_runs(runs: list[str]) -> None:
    for index, change in told(runs, NO_FLAP):
        if change.status == "fail":
            assert index >= 1 and runs[index] == runs[index - 1] == "fail"
        if change.status == "error":
            # An error is told only after an hour (12 runs five minutes apart) of errors.
            assert index >= 12 and all(s == "error" for s in runs[index - 12 : index + 1])


@given(statuses)
@settings(max_examples=300, deadline=None)
def test_recovery_only_after_a_told_problem(runs: list[str]) -> None:
    seen_problem = False
    for _index, change in told(runs, NO_FLAP):
        if change.kind == policy.RECOVERY:
            assert seen_problem
            seen_problem = False
        else:
            seen_problem = True


@given(statuses)
@settings(max_examples=300, deadline=None)
def test_acknowledged_problem_tells_only_its_recovery(runs: list[str]) -> None:
    state = policy.acknowledge(SubjectState(status="fail", notified_status="fail", since=T0), T0)
    changes = [c for _i, c in told(runs, NO_FLAP, state)]
    if "ok" in runs:
        assert changes[:1] == [policy.Change("k", policy.RECOVERY, "ok", changes[0].previous)]
    else:
        assert changes == []


@given(statuses)
@settings(max_examples=200, deadline=None)
def test_snoozed_tells_nothing_while_snoozed(runs: list[str]) -> None:
    until = T0 + timedelta(minutes=5 * len(runs) + 1)
    state = policy.snooze(SubjectState(), until)
    assert told(runs, Config(), state) == []
