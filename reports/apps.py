"""The reports app: DMARC aggregate and SMTP TLS reports, from receipt to dashboards."""

from __future__ import annotations

from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "DMARC and TLS reports"

    def ready(self) -> None:
        from mailsec.secrets import register_encrypted_field
        from reports.models import ImapMailbox

        register_encrypted_field(ImapMailbox, "password", lambda box: box.secret_context)
        # The IMAP polling tasks live beside reports.tasks: every worker must register them.
        import reports.ingest_tasks  # noqa: F401
