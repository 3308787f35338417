"""The Celery application; its settings are the CELERY_* names in mailsec.settings."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")

# DjangoTask gives every task delay_on_commit: a job is queued only once its rows are committed.
app = Celery("mailsec", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _refuse_missing_secret_key(**_kwargs: object) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from mailsec.checks import refuse_missing_secret_key

    try:
        refuse_missing_secret_key()
    except ImproperlyConfigured as exc:
        # Celery logs and swallows exceptions from signal handlers; SystemExit stops the process.
        raise SystemExit(f"mailsec: {exc}") from None


@worker_init.connect
@beat_init.connect
def _refuse_missing_encryption_key(**_kwargs: object) -> None:
    import django
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    from mailsec.checks import refuse_missing_encryption_key

    # The registered encrypted fields are declared when the apps load; the Django fixup may not
    # have loaded them yet when this receiver runs.
    if not apps.ready:
        django.setup()
    try:
        refuse_missing_encryption_key()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"mailsec: {exc}") from None
