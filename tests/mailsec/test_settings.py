"""Production-safety of the settings: Celery defaults, deploy checks, the secret key.

Each process test gets a fresh MAILSEC_VAR_DIR, so a local key left by `make run` in var/ never
decides the outcome.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from mailsec.celery import app
from tests.servers import REPO

PRODUCTION_ENV = {
    "MAILSEC_DEBUG": "0",
    "MAILSEC_SECRET_KEY": "x9!vQ2#Lr7$mK4pZ8@wN3^tB6&hY1*cF5(jD0)sG-uE_aR+oI=lP~qW",
    "MAILSEC_ALLOWED_HOSTS": "mailsec.example.org",
}
NO_KEY_ENV = {k: v for k, v in PRODUCTION_ENV.items() if k != "MAILSEC_SECRET_KEY"}
CELERY_START = "import mailsec; from celery.signals import {signal}; {signal}.send(sender=None)"
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    """A fresh local-state directory (and SQLite database) for the processes a test starts."""
    return tmp_path / "var"


def _environ(env: dict[str, str], var: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSEC_", "DJANGO_"))}
    clean.update(
        DATABASE_URL=f"sqlite:///{var}/mailsec.sqlite3",
        MAILSEC_VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="mailsec.settings",
    )
    clean.update(env)
    return clean


def _manage(*args: str, env: dict[str, str], var: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO, env=_environ(env, var), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_celery_serialises_json_only():
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_celery_acknowledges_late_and_requeues_on_worker_loss():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_every_task_has_soft_and_hard_time_limits_below_visibility_timeout():
    app.loader.import_default_modules()
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert ours, "no mailsec tasks registered"
    for name, task in ours.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft and hard, name
        assert soft < hard < visibility, name


def test_celery_uses_database_beat_scheduler_and_django_task_class():
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert hasattr(app.tasks["dns_records.tasks.check_domain"], "delay_on_commit")


def test_production_settings_pass_deploy_checks(var_dir):
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV, var=var_dir
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_check_refuses_to_start_without_key_or_local_file(var_dir):
    result = _manage("check", env=NO_KEY_ENV, var=var_dir)
    assert result.returncode != 0
    assert "mailsec.E001" in result.stderr
    assert not (var_dir / "secret_key").exists()


def test_malformed_environment_value_stops_start_up(var_dir):
    result = _manage(
        "check", env={**PRODUCTION_ENV, "MAILSEC_DNS_NAMESERVERS": "resolver.example"}, var=var_dir
    )
    assert result.returncode != 0
    assert "MAILSEC_DNS_NAMESERVERS" in result.stderr


def test_debug_is_off_unless_asked_for(var_dir):
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        env={},
        var=var_dir,
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert settings.SECURE_CSP["script-src"]


def _run(code: str, env: dict[str, str], var: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_environ(env, var),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_wsgi_refuses_to_load_without_key_or_local_file(var_dir):
    result = _run("import mailsec.wsgi", NO_KEY_ENV, var_dir)
    assert result.returncode != 0
    assert "refusing to serve without a secret key" in result.stderr
    assert _run("import mailsec.wsgi", PRODUCTION_ENV, var_dir).returncode == 0


@pytest.mark.parametrize("signal", ["worker_init", "beat_init"])
def test_celery_refuses_to_start_without_key_or_local_file(signal, var_dir):
    result = _run(CELERY_START.format(signal=signal), NO_KEY_ENV, var_dir)
    assert result.returncode != 0
    assert "refusing to serve without a secret key" in result.stderr
    assert _run(CELERY_START.format(signal=signal), PRODUCTION_ENV, var_dir).returncode == 0


def test_debug_run_creates_a_local_secret_key_readable_only_by_its_owner(var_dir):
    result = _run(PRINT_KEY, {"MAILSEC_DEBUG": "1"}, var_dir)
    assert result.returncode == 0, result.stderr
    key_file = var_dir / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert result.stdout.strip() == key_file.read_text().strip()
    assert len(result.stdout.strip()) >= 50


def test_later_debug_runs_reuse_the_local_secret_key(var_dir):
    first = _run(PRINT_KEY, {"MAILSEC_DEBUG": "1"}, var_dir)
    second = _run(PRINT_KEY, {"MAILSEC_DEBUG": "1"}, var_dir)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert [p.name for p in var_dir.iterdir() if "secret" in p.name] == ["secret_key"]


def test_a_process_without_debug_uses_the_local_secret_key(var_dir):
    created = _run(PRINT_KEY, {"MAILSEC_DEBUG": "1"}, var_dir)
    assert created.returncode == 0, created.stderr
    assert _run(PRINT_KEY, NO_KEY_ENV, var_dir).stdout == created.stdout
    check = _manage("check", env=NO_KEY_ENV, var=var_dir)
    assert check.returncode == 0, check.stderr
    assert _run("import mailsec.wsgi", NO_KEY_ENV, var_dir).returncode == 0
    assert _run(CELERY_START.format(signal="worker_init"), NO_KEY_ENV, var_dir).returncode == 0


def test_the_environment_key_wins_over_the_local_file(var_dir):
    assert _run(PRINT_KEY, {"MAILSEC_DEBUG": "1"}, var_dir).returncode == 0
    result = _run(PRINT_KEY, PRODUCTION_ENV, var_dir)
    assert result.stdout.strip() == PRODUCTION_ENV["MAILSEC_SECRET_KEY"]


def test_secret_key_fallbacks_are_read_as_a_comma_list(var_dir):
    code = "from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    result = _run(
        code, {**PRODUCTION_ENV, "MAILSEC_SECRET_KEY_FALLBACKS": "old-one, older-one"}, var_dir
    )
    assert result.stdout.strip() == "['old-one', 'older-one']"
    result = _run(code, {**PRODUCTION_ENV, "MAILSEC_SECRET_KEY_FALLBACKS": "old-one,,"}, var_dir)
    assert result.returncode != 0
    assert "MAILSEC_SECRET_KEY_FALLBACKS" in result.stderr


# --- keys for secrets at rest ----------------------------------------------------------------

PRINT_ENCRYPTION_KEYS = (
    "import hashlib; from django.conf import settings; "
    "keys = settings.MAILSEC_ENCRYPTION_KEYS; "
    "print([(i, hashlib.sha256(k).hexdigest()) for i, k in keys.items()])"
)
ENCRYPTION_KEYS = "k1:" + "A" * 43 + "="  # 32 zero bytes: fine for a check that only needs a key
# A process that stores a secret (TaskRun.error, registered for the test as an app registers its
# own field) in a fresh SQLite database, then does {then}.
WITH_A_STORED_SECRET = """
import django
django.setup()
from django.core.management import call_command
from mailsec.models import Organisation, TaskRun
from mailsec.secrets import register_encrypted_field
register_encrypted_field(TaskRun, "error", lambda row: f"mailsec.TaskRun:{{row.id}}:error")
call_command("migrate", verbosity=0)
if not TaskRun.objects.exists():
    organisation = Organisation.objects.create(name="o", slug="o")
    TaskRun.objects.create(organisation=organisation, kind="domain.check", error="v1:k1:AAAA")
{then}
"""
REFUSED = "refusing to serve without the keys to them"


def _with_a_stored_secret(then: str, env: dict[str, str], var: Path):
    return _run(WITH_A_STORED_SECRET.format(then=then), env, var)


def test_debug_run_creates_local_encryption_keys_readable_only_by_their_owner(var_dir):
    result = _run(PRINT_ENCRYPTION_KEYS, {"MAILSEC_DEBUG": "1"}, var_dir)
    assert result.returncode == 0, result.stderr
    key_file = var_dir / "encryption_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert result.stdout.strip().startswith("[('local', ")
    again = _run(PRINT_ENCRYPTION_KEYS, {"MAILSEC_DEBUG": "1"}, var_dir)
    assert again.stdout == result.stdout
    assert [p.name for p in var_dir.iterdir() if "encryption" in p.name] == ["encryption_keys"]


def test_a_process_without_debug_uses_the_local_encryption_keys(var_dir):
    created = _run(PRINT_ENCRYPTION_KEYS, {"MAILSEC_DEBUG": "1"}, var_dir)
    assert created.returncode == 0, created.stderr
    assert _run(PRINT_ENCRYPTION_KEYS, NO_KEY_ENV, var_dir).stdout == created.stdout


def test_production_has_no_encryption_key_unless_given_one(var_dir):
    assert _run(PRINT_ENCRYPTION_KEYS, PRODUCTION_ENV, var_dir).stdout.strip() == "[]"
    assert not (var_dir / "encryption_keys").exists()
    given = _run(
        PRINT_ENCRYPTION_KEYS,
        {**PRODUCTION_ENV, "MAILSEC_ENCRYPTION_KEYS": ENCRYPTION_KEYS},
        var_dir,
    )
    assert given.stdout.strip().startswith("[('k1', ")


def test_a_malformed_encryption_key_stops_start_up_without_showing_it(var_dir):
    bad = "k1:" + "Q" * 40
    result = _manage("check", env={**PRODUCTION_ENV, "MAILSEC_ENCRYPTION_KEYS": bad}, var=var_dir)
    assert result.returncode != 0
    assert "MAILSEC_ENCRYPTION_KEYS: key 'k1' must decode to 32 bytes" in result.stderr
    assert "Q" * 40 not in result.stderr


def test_production_check_refuses_stored_secrets_without_an_encryption_key(var_dir):
    check = 'call_command("check")'
    result = _with_a_stored_secret(check, PRODUCTION_ENV, var_dir)
    assert result.returncode != 0
    assert "mailsec.E003" in result.stderr
    with_key = {**PRODUCTION_ENV, "MAILSEC_ENCRYPTION_KEYS": ENCRYPTION_KEYS}
    assert _with_a_stored_secret(check, with_key, var_dir).returncode == 0


def test_check_without_an_encryption_key_passes_while_nothing_is_stored(var_dir):
    unmigrated = """
import django
django.setup()
from django.core.management import call_command
from mailsec.models import TaskRun
from mailsec.secrets import register_encrypted_field
register_encrypted_field(TaskRun, "error", lambda row: f"mailsec.TaskRun:{row.id}:error")
call_command("check")
call_command("migrate", verbosity=0)
call_command("check")
"""
    result = _run(unmigrated, PRODUCTION_ENV, var_dir)
    assert result.returncode == 0, result.stderr


def test_wsgi_refuses_to_load_with_stored_secrets_and_no_encryption_key(var_dir):
    result = _with_a_stored_secret("import mailsec.wsgi", PRODUCTION_ENV, var_dir)
    assert result.returncode != 0
    assert REFUSED in result.stderr
    assert "MAILSEC_ENCRYPTION_KEYS" in result.stderr
    with_key = {**PRODUCTION_ENV, "MAILSEC_ENCRYPTION_KEYS": ENCRYPTION_KEYS}
    assert _with_a_stored_secret("import mailsec.wsgi", with_key, var_dir).returncode == 0


@pytest.mark.parametrize("signal", ["worker_init", "beat_init"])
def test_celery_refuses_to_start_with_stored_secrets_and_no_encryption_key(signal, var_dir):
    start = CELERY_START.format(signal=signal).replace("; ", "\n")
    result = _with_a_stored_secret(start, PRODUCTION_ENV, var_dir)
    assert result.returncode != 0
    assert REFUSED in result.stderr
    with_key = {**PRODUCTION_ENV, "MAILSEC_ENCRYPTION_KEYS": ENCRYPTION_KEYS}
    assert _with_a_stored_secret(start, with_key, var_dir).returncode == 0


@pytest.mark.parametrize("signal", ["worker_init", "beat_init"])
def test_celery_starts_without_an_encryption_key_before_the_database_is_migrated(signal, var_dir):
    assert _run(CELERY_START.format(signal=signal), PRODUCTION_ENV, var_dir).returncode == 0
