"""Write use-cases of the reports app: store what arrives, parse it, store reports once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from mailsec.jobs import task_run_create, task_run_enqueue  # noqa: F401  (used by the pipeline)
from reports.models import IngestSource, RawMessage

__all__ = ["MessageTooLarge", "raw_message_store"]


class MessageTooLarge(ValueError):
    """A message over MAILSEC_REPORT_MAX_MESSAGE_BYTES: refused before anything is stored."""


def raw_message_store(
    content: bytes,
    *,
    source: IngestSource,
    organisation_id: int | None = None,
    filename: str = "",
    envelope_from: str = "",
    envelope_to: Iterable[str] = (),
    remote_addr: str = "",
    parse: bool = True,
) -> RawMessage:
    """Store a received message durably and queue its parse once the transaction commits.

    Returns once the row is committed (in autocommit) or queued for the caller's commit. Raises
    `MessageTooLarge` for an oversized message and lets database errors through, so a way in can
    answer "try again later" instead of accepting what it could not keep.
    """
    if len(content) > settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"{len(content)} bytes; the limit is {settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES}"
        )
    with transaction.atomic():
        message = RawMessage.objects.create(
            organisation_id=organisation_id,
            source=source,
            content=content,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            filename=filename[:255],
            envelope_from=envelope_from[:320],
            envelope_to=",".join(envelope_to)[:1000],
            remote_addr=remote_addr[:64],
        )
        if parse:
            message_id = message.pk
            transaction.on_commit(lambda: _enqueue_parse(message_id))
    return message


def _enqueue_parse(message_id: int) -> None:
    from celery import current_app

    current_app.send_task("reports.tasks.parse_raw_message", kwargs={"raw_message_id": message_id})
