"""The dns_records app: its encrypted fields are registered with the core's secrets at rest."""

from __future__ import annotations

from django.apps import AppConfig


class DnsRecordsConfig(AppConfig):
    name = "dns_records"
    verbose_name = "Domains and DNS checks"

    def ready(self) -> None:
        from dns_records.models import DkimKey, DnsUpdateTarget
        from mailsec.secrets import register_encrypted_field

        register_encrypted_field(DkimKey, "private_key", lambda key: key.secret_context)
        register_encrypted_field(
            DnsUpdateTarget, "tsig_secret", lambda target: target.secret_context
        )
