"""The alerts app: its encrypted field (the webhook secret)."""

from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from alerts.models import Channel
        from mailsec.secrets import register_encrypted_field

        register_encrypted_field(Channel, "secret", lambda row: row.secret_context)
