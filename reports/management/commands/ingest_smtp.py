"""manage.py ingest_smtp: the SMTP listener receivers send DMARC and TLS reports to."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.smtp_listener import ListenerConfigError, listener_config, run


class Command(BaseCommand):
    help = (
        "Listen for DMARC aggregate and TLS reports over SMTP on MAILSEC_INGEST_LISTEN "
        "(default 127.0.0.1:2525), for MAILSEC_INGEST_ADDRESSES only; 250 once a message is "
        "stored, 451 when it cannot be. SIGTERM or Ctrl-C stops it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--listen", default="", help="ip:port or [ipv6]:port; MAILSEC_INGEST_LISTEN otherwise"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = listener_config(options["listen"] or None)
        except ListenerConfigError as exc:
            raise CommandError(str(exc)) from None
        try:
            run(config)
        except OSError as exc:
            raise CommandError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
