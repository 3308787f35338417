"""Drift: a hand edit on a deployed host becomes one event with the diff; the task and command."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from hosts import tasks
from hosts.drift import host_drift_check, hosts_drift_check
from hosts.models import DeploymentState, HostEvent
from tests.hosts.test_deploy import rig  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_hand_edit_becomes_one_drift_event_with_the_diff(rig):  # noqa: F811
    assert rig.deploy().state == DeploymentState.SUCCEEDED
    assert host_drift_check(rig.host) is None
    main = rig.postfix.config_dir / "main.cf"
    main.write_bytes(main.read_bytes().replace(b"message_size_limit = ", b"message_size_limit = 9"))
    assert hosts_drift_check() == {"checked": 1, "drift_events": 1, "unreachable": 0}
    event = HostEvent.objects.get(host=rig.host, kind="drift")
    assert str(main) in event.summary
    assert "-message_size_limit = 2097152" in event.details["diff"]
    assert "+message_size_limit = 92097152" in event.details["diff"]
    # The same drift is reported once; a new edit is a new event.
    assert tasks.check_drift() == {"checked": 1, "drift_events": 0, "unreachable": 0}
    (rig.dovecot.config_dir / "conf.d" / "99-mailsec.conf").unlink()
    assert host_drift_check(rig.host) is not None
    assert HostEvent.objects.filter(host=rig.host, kind="drift").count() == 2
    # Redeploying puts the files back: no drift any more.
    assert rig.deploy().state == DeploymentState.SUCCEEDED
    assert host_drift_check(rig.host) is None


def test_deploy_command_prints_the_outcome_and_exits_non_zero_on_failure(rig, capsys):  # noqa: F811
    call_command("deploy", rig.host.name, "--json")
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "succeeded" and out["host"] == rig.host.name
    from mailsec.models import AuditLog

    assert AuditLog.objects.filter(action="host.deploy", object_id=str(rig.host.pk)).exists()
    call_command("deploy", rig.host.name, "--sudoers")
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("root ALL=(root) NOPASSWD: /usr/") for line in lines)
    rig.sshd.new_host_key()
    with pytest.raises(SystemExit) as exited:
        call_command("deploy", rig.host.name)
    assert exited.value.code == 1
    assert "host key mismatch" in capsys.readouterr().out


def test_beat_schedules_the_drift_check(settings):
    entries = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "hosts.tasks.check_drift" in entries
    assert tasks.deploy_host.acks_late
