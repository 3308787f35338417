"""The Celery application; its settings are the CELERY_* names in mailsec.settings."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailsec.settings")

# DjangoTask gives every task delay_on_commit: a job is queued only once its rows are committed.
app = Celery("mailsec", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
