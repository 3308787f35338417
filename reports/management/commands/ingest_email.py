"""manage.py ingest_email: one message on stdin, for a Postfix pipe transport or alias.

    # master.cf
    mailsec unix - n n - 4 pipe
      flags=Rq user=mailsec argv=/opt/mailsec/.venv/bin/python /opt/mailsec/manage.py
        ingest_email --sender ${sender} --recipient ${recipient}
    # main.cf: one recipient per delivery, so ${recipient} is one argument
    mailsec_destination_recipient_limit = 1

The message is stored as received and its parse is left to the worker (the parse task, queued
once the row is committed; the sweep queues it if the broker was away), so Postfix waits only
for one INSERT and a hostile report never runs inside the MTA's delivery agent. Exit status,
as sysexits.h and Postfix's pipe(8) read it:

- 0: stored (the worker then stores the report, records it as a duplicate or quarantines it);
- 75 (EX_TEMPFAIL): it could not be stored (database down, disk full, anything unexpected);
  Postfix keeps the message and tries again later;
- 65 (EX_DATAERR): larger than MAILSEC_REPORT_MAX_MESSAGE_BYTES; retrying cannot help, so
  Postfix bounces it to the sender.

Errors are one line on stderr, never a traceback (Postfix puts it in its log and the bounce).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.models import IngestSource
from reports.services import MessageTooLarge, raw_message_store

logger = logging.getLogger(__name__)

EX_DATAERR = 65
EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = "Store one report e-mail read from stdin (for a Postfix pipe); the worker parses it."
    # No system checks: a pipe delivery must not fail on, or wait for, anything but the INSERT.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sender", default="", help="envelope sender (Postfix ${sender})")
        parser.add_argument(
            "--recipient",
            action="append",
            default=[],
            help="envelope recipient (Postfix ${recipient}); may be repeated",
        )
        parser.add_argument("--client-address", default="", help="Postfix ${client_address}")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            content = _read_capped(settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES)
            message = raw_message_store(
                content,
                source=IngestSource.PIPE,
                envelope_from=options["sender"],
                envelope_to=options["recipient"],
                remote_addr=options["client_address"],
            )
        except MessageTooLarge as exc:
            raise CommandError(f"message too large: {exc}", returncode=EX_DATAERR) from None
        except Exception as exc:
            # Anything at all: the message is not stored, so Postfix must keep it and retry.
            logger.debug("ingest_email could not store the message", exc_info=True)
            detail = " ".join(str(exc).split())[:300]
            raise CommandError(
                f"could not store the message, try again later: {type(exc).__name__}: {detail}",
                returncode=EX_TEMPFAIL,
            ) from None
        if options["verbosity"] >= 2:
            self.stdout.write(f"stored raw message {message.uid} ({message.size} bytes)")


def _read_capped(limit: int) -> bytes:
    """stdin up to one byte over the limit; the whole of it when within."""
    content = sys.stdin.buffer.read(limit + 1)
    if len(content) > limit:
        raise MessageTooLarge(f"more than {limit} bytes")
    return content
