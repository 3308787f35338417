"""Production-safety of the settings: Celery defaults, deploy checks, the dev-key refusal."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

from mailsec.celery import app
from tests.servers import REPO

PRODUCTION_ENV = {
    "MAILSEC_DEBUG": "0",
    "MAILSEC_SECRET_KEY": "x9!vQ2#Lr7$mK4pZ8@wN3^tB6&hY1*cF5(jD0)sG-uE_aR+oI=lP~qW",
    "MAILSEC_ALLOWED_HOSTS": "mailsec.example.org",
    "DATABASE_URL": "sqlite:///var/deploy-check.sqlite3",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSEC_", "DJANGO_"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="mailsec.settings")
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO, env=clean, capture_output=True, text=True, timeout=120, check=False,
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


def test_production_settings_pass_deploy_checks():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_the_development_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "MAILSEC_SECRET_KEY"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "mailsec.E001" in result.stderr


def test_malformed_environment_value_stops_start_up():
    result = _manage("check", env={**PRODUCTION_ENV, "MAILSEC_DNS_NAMESERVERS": "resolver.example"})
    assert result.returncode != 0
    assert "MAILSEC_DNS_NAMESERVERS" in result.stderr


def test_debug_is_off_unless_asked_for():
    result = _manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env={}
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert settings.SECURE_CSP["script-src"]


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSEC_", "DJANGO_"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="mailsec.settings")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_wsgi_refuses_to_load_with_the_development_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "MAILSEC_SECRET_KEY"}
    result = _run("import mailsec.wsgi", env)
    assert result.returncode != 0
    assert "refusing to serve with the public development key" in result.stderr
    assert _run("import mailsec.wsgi", PRODUCTION_ENV).returncode == 0


def test_celery_worker_refuses_to_start_with_the_development_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "MAILSEC_SECRET_KEY"}
    code = "from celery.signals import worker_init; worker_init.send(sender=None)"
    result = _run("import mailsec; " + code, env)
    assert result.returncode != 0
    assert "refusing to serve" in result.stderr
    assert _run("import mailsec; " + code, PRODUCTION_ENV).returncode == 0
