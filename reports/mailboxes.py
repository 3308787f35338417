"""IMAP report mailboxes: adding, changing and removing them (audited), and polling them.

An organisation's mailbox that receivers send reports to is polled by the worker on a
schedule and on request ("poll now", a task run). Its password is kept encrypted, bound to the
mailbox's row, and never shown again. A poll claims its mailbox under the mailbox's row lock:
two workers never poll one mailbox at once. Each message is stored (`raw_message_store`) before
it is moved out of the folder, and a message stored before (the same bytes, from the same
organisation's mailboxes) is moved without being stored twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from dns_records.names import InvalidDomainName, normalise_domain
from mailsec import netguard, secrets
from mailsec.jobs import task_run_claim, task_run_create, task_run_enqueue, task_run_finish
from mailsec.models import UNFINISHED_TASK_STATES, Organisation, TaskKind, TaskRun, TaskState
from mailsec.selectors import can_write, organisations_visible
from mailsec.services.audit import Actor, audit_record
from reports import imap
from reports.models import ImapMailbox, IngestSource, RawMessage
from reports.services import raw_message_store

logger = logging.getLogger(__name__)

MAILBOXES_PER_ORGANISATION = 20
POLL_TASK = "reports.tasks.poll_imap_mailbox"
# The poll task's hard time limit: a poll still RUNNING after it had its worker killed.
POLL_HARD_LIMIT_SECONDS = 660
SECURITY_CHOICES = ("tls", "starttls")
# Fields shown in the audit log (never the password).
AUDITED = ["host", "port", "security", "username", "folder", "processed_folder", "enabled"]


def _require_write(actor: Actor, organisation: Organisation) -> None:
    if actor is None or not can_write(actor, organisation):
        raise PermissionDenied("Your role in this organisation cannot change it.")


def _printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


# --- reads ------------------------------------------------------------------------------------


def mailboxes_visible(user: Any) -> QuerySet[ImapMailbox]:
    """Mailboxes of the user's organisations, by organisation then host."""
    return (
        ImapMailbox.objects.filter(organisation__in=organisations_visible(user))
        .select_related("organisation")
        .order_by("organisation__name", "host", "username", "pk")
    )


def mailbox_visible(user: Any, pk: int) -> ImapMailbox | None:
    """One of the user's organisations' mailboxes; anyone else's is None."""
    return mailboxes_visible(user).filter(pk=pk).first()


def _poll_runs(mailbox: ImapMailbox) -> QuerySet[TaskRun]:
    return TaskRun.objects.filter(
        kind=TaskKind.IMAP_POLL, object_type="imapmailbox", object_id=str(mailbox.pk)
    )


def poll_pending(mailbox: ImapMailbox) -> TaskRun | None:
    """The mailbox's poll that is queued or running, if any."""
    return (
        _poll_runs(mailbox).filter(state__in=UNFINISHED_TASK_STATES).order_by("-created_at").first()
    )


def poll_last(mailbox: ImapMailbox) -> TaskRun | None:
    return _poll_runs(mailbox).order_by("-created_at").first()


# --- writes -----------------------------------------------------------------------------------


def _clean_host(host: str) -> str:
    text = host.strip()
    address = netguard.parse_address(text)
    if address is not None:
        reason = netguard.refuse_reason(str(address), settings.MAILSEC_PROBE_ALLOW_NETWORKS)
        if reason:
            raise ValidationError(
                {"host": f"mailsec may not connect there: {reason} (MAILSEC_PROBE_ALLOW_NETWORKS)."}
            )
        return str(address)
    try:
        return normalise_domain(text)
    except InvalidDomainName as exc:
        raise ValidationError({"host": f"Enter a host name or an IP address: {exc}"}) from None


def _clean_folder(field: str, folder: str) -> str:
    text = folder.strip()
    if not text or len(text) > 200 or not _printable(text) or any(c in text for c in '%*"'):
        raise ValidationError(
            {field: 'Enter a folder name of at most 200 printable characters, without % * or ".'}
        )
    return text


def _clean_password(password: str) -> str:
    if not password or len(password) > 1000 or not _printable(password):
        raise ValidationError(
            {"password": "Enter the password: at most 1000 characters, no control characters."}
        )
    return password


def _apply(mailbox: ImapMailbox, fields: dict[str, Any]) -> None:
    """Check and set the given fields (any of AUDITED) on mailbox."""
    errors: dict[str, list[str]] = {}

    def attempt(name: str, clean: Any) -> None:
        try:
            setattr(mailbox, name, clean())
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                errors.setdefault(key, []).extend(messages)

    if "host" in fields:
        attempt("host", lambda: _clean_host(str(fields["host"])))
    if "port" in fields:
        port = fields["port"]
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            errors["port"] = ["Enter a port from 1 to 65535."]
        else:
            mailbox.port = port
    if "security" in fields:
        if fields["security"] not in SECURITY_CHOICES:
            errors["security"] = ["Choose tls (port 993) or starttls (port 143)."]
        else:
            mailbox.security = fields["security"]
    if "username" in fields:
        username = str(fields["username"]).strip()
        if not username or len(username) > 320 or not _printable(username):
            errors["username"] = ["Enter the login name: at most 320 printable characters."]
        else:
            mailbox.username = username
    if "folder" in fields:
        attempt("folder", lambda: _clean_folder("folder", str(fields["folder"])))
    if "processed_folder" in fields:
        attempt(
            "processed_folder",
            lambda: _clean_folder("processed_folder", str(fields["processed_folder"])),
        )
    if "enabled" in fields:
        mailbox.enabled = bool(fields["enabled"])
    if not errors and mailbox.folder.casefold() == mailbox.processed_folder.casefold():
        errors["processed_folder"] = ["Processed messages must go to another folder."]
    if errors:
        raise ValidationError(errors)


def _snapshot(mailbox: ImapMailbox) -> dict[str, Any]:
    return {name: getattr(mailbox, name) for name in AUDITED}


def _set_password(mailbox: ImapMailbox, password: str) -> None:
    mailbox.password = secrets.encrypt(
        _clean_password(password).encode("utf-8"), context=mailbox.secret_context
    )


def mailbox_create(
    *, organisation: Organisation, password: str, actor: Actor, **fields: Any
) -> ImapMailbox:
    """Add a mailbox (its password encrypted) and queue its first poll once committed."""
    _require_write(actor, organisation)
    unknown = set(fields) - set(AUDITED)
    if unknown:
        raise TypeError(f"unknown mailbox fields: {sorted(unknown)}")
    mailbox = ImapMailbox(organisation=organisation)
    errors: dict[str, list[str]] = {}
    for name in ("host", "username"):
        if not fields.get(name):
            errors[name] = ["This field is required."]
    try:
        _apply(mailbox, fields)
    except ValidationError as exc:
        for key, messages in exc.message_dict.items():
            errors.setdefault(key, []).extend(messages)
    try:
        _clean_password(password)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        # The organisation's row lock makes two additions at once count each other.
        Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
        if (
            ImapMailbox.objects.filter(organisation=organisation).count()
            >= MAILBOXES_PER_ORGANISATION
        ):
            raise ValidationError(
                f"{organisation.name} already has {MAILBOXES_PER_ORGANISATION} report mailboxes, "
                "the most one organisation may have."
            )
        _set_password(mailbox, password)
        mailbox.save()
        audit_record(
            actor=actor, action="imap_mailbox.create", obj=mailbox, organisation=organisation,
            after=_snapshot(mailbox),
        )  # fmt: skip
        if mailbox.enabled:
            _poll_queue(mailbox=mailbox, actor=actor)
    return mailbox


@transaction.atomic
def mailbox_update(
    *, mailbox: ImapMailbox, actor: Actor, password: str = "", **fields: Any
) -> ImapMailbox:
    """Change a mailbox; an empty password keeps the stored one."""
    _require_write(actor, mailbox.organisation)
    unknown = set(fields) - set(AUDITED)
    if unknown:
        raise TypeError(f"unknown mailbox fields: {sorted(unknown)}")
    locked = ImapMailbox.objects.select_for_update().get(pk=mailbox.pk)
    before = _snapshot(locked)
    _apply(locked, fields)
    after = _snapshot(locked)
    if password:
        _set_password(locked, password)
    if after == before and not password:
        return locked
    locked.last_error = ""
    locked.save()
    changed_after = {k: v for k, v in after.items() if before[k] != v}
    if password:
        changed_after["password"] = "changed"  # noqa: S105 (a marker, never the password)
    audit_record(
        actor=actor, action="imap_mailbox.update", obj=locked, organisation=locked.organisation,
        before={k: before[k] for k in changed_after if k in before}, after=changed_after,
    )  # fmt: skip
    return locked


@transaction.atomic
def mailbox_delete(*, mailbox: ImapMailbox, actor: Actor) -> None:
    """Stop polling the mailbox and forget its password; the reports it brought stay."""
    _require_write(actor, mailbox.organisation)
    audit_record(
        actor=actor, action="imap_mailbox.delete", obj=mailbox,
        organisation=mailbox.organisation, before=_snapshot(mailbox),
    )  # fmt: skip
    mailbox.delete()


def _poll_queue(*, mailbox: ImapMailbox, actor: Actor) -> TaskRun:
    run = task_run_create(
        organisation=mailbox.organisation, kind=TaskKind.IMAP_POLL, obj=mailbox, actor=actor
    )
    task_run_enqueue(run, POLL_TASK, mailbox_id=mailbox.pk)
    return run


@transaction.atomic
def mailbox_poll_request(*, mailbox: ImapMailbox, actor: Actor) -> TaskRun:
    """Queue a poll now ("poll now"), or join the one queued or running: the API's 202."""
    _require_write(actor, mailbox.organisation)
    ImapMailbox.objects.select_for_update().filter(pk=mailbox.pk).first()
    pending = poll_pending(mailbox)
    if pending is not None:
        return pending
    return _poll_queue(mailbox=mailbox, actor=actor)


def mailboxes_queue_due(*, now: datetime) -> int:
    """Queue a poll of each enabled mailbox not polled for MAILSEC_IMAP_POLL_INTERVAL_MINUTES.

    The conditional update of `last_polled_at` claims a mailbox, so two beats (or a beat run
    twice) queue it once.
    """
    due_before = now - timedelta(minutes=settings.MAILSEC_IMAP_POLL_INTERVAL_MINUTES)
    due = Q(enabled=True) & (Q(last_polled_at__isnull=True) | Q(last_polled_at__lte=due_before))
    queued = 0
    for pk in ImapMailbox.objects.filter(due).values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            if not ImapMailbox.objects.filter(due, pk=pk).update(last_polled_at=now):
                continue
            mailbox = ImapMailbox.objects.select_related("organisation").get(pk=pk)
            if poll_pending(mailbox) is None:
                _poll_queue(mailbox=mailbox, actor=None)
                queued += 1
    return queued


# --- the worker's poll ----------------------------------------------------------------------


def _claim(*, task_run_id: Any, mailbox_id: int) -> ImapMailbox | None:
    """Claim the run and its mailbox; None when the mailbox is gone or another poll holds it."""
    stale = timedelta(seconds=POLL_HARD_LIMIT_SECONDS)
    with transaction.atomic():
        mailbox = (
            ImapMailbox.objects.select_for_update()
            .select_related("organisation")
            .filter(pk=mailbox_id)
            .first()
        )
        if mailbox is None:
            return None
        busy = (
            _poll_runs(mailbox)
            .filter(state=TaskState.RUNNING, started_at__gte=timezone.now() - stale)
            .exclude(pk=task_run_id)
            .exists()
        )
        if busy or not task_run_claim(task_run_id=task_run_id, stale_after=stale):
            return None
        return mailbox


def _skip(task_run_id: Any, reason: str) -> None:
    TaskRun.objects.filter(pk=task_run_id, state=TaskState.PENDING).update(
        state=TaskState.SUCCEEDED, finished_at=timezone.now(), result={"skipped": reason}
    )


def _storer(mailbox: ImapMailbox) -> imap.Store:
    def store(content: bytes, uid: int) -> bool:
        digest = hashlib.sha256(content).hexdigest()
        # The same bytes already taken from this organisation's mailboxes: a poll cut short
        # after the store and before the move. Move it without storing it twice.
        if RawMessage.objects.filter(
            organisation_id=mailbox.organisation_id, source=IngestSource.IMAP, sha256=digest
        ).exists():
            return False
        raw_message_store(
            content,
            source=IngestSource.IMAP,
            organisation_id=mailbox.organisation_id,
            filename=f"{mailbox.folder} UID {uid}",
            envelope_to=[mailbox.username],
            remote_addr=mailbox.host,
        )
        return True

    return store


def mailbox_poll(mailbox: ImapMailbox, *, resolver: Any = None) -> dict[str, Any]:
    """Poll one mailbox now and record the outcome on it; the result for its task run.

    IMAP failures (authentication, TLS, timeout, ...) are recorded as the mailbox's last error
    and returned; a failure to store a message is too, and that message stays in the folder.
    """
    try:
        password = secrets.decrypt(mailbox.password, context=mailbox.secret_context)
    except secrets.SecretError:
        error = (
            "the stored password cannot be decrypted (an encryption key is missing): enter it again"
        )
        _record(mailbox, error)
        return {"mailbox": mailbox.pk, "failure": "password", "error": error}
    account = imap.ImapAccount(
        host=mailbox.host,
        port=mailbox.port,
        security=mailbox.security,
        username=mailbox.username,
        password=password.decode("utf-8"),
        folder=mailbox.folder,
        processed_folder=mailbox.processed_folder,
    )
    error = ""
    outcome: dict[str, Any] = {}
    try:
        outcome = imap.poll(
            account,
            _storer(mailbox),
            max_bytes=settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES,
            resolver=resolver,
        ).as_dict()
        if outcome["too_large"]:
            error = (
                f"{outcome['too_large']} message(s) over MAILSEC_REPORT_MAX_MESSAGE_BYTES left in "
                f"{mailbox.folder} (marked {imap.SKIPPED_KEYWORD})"
            )
    except imap.ImapFailure as exc:
        error = exc.message
        outcome = {"failure": str(exc.kind)}
    except SoftTimeLimitExceeded:
        error = "the poll ran out of time; the messages not yet stored stay in the folder"
        _record(mailbox, error)
        raise
    except Exception as exc:
        logger.exception("polling IMAP mailbox %s failed", mailbox.pk)
        error = f"could not store a message ({type(exc).__name__}); it stays in the folder"
        outcome = {"failure": "store"}
    _record(mailbox, error)
    return {"mailbox": mailbox.pk, **outcome, "error": error}


def _record(mailbox: ImapMailbox, error: str) -> None:
    ImapMailbox.objects.filter(pk=mailbox.pk).update(
        last_polled_at=timezone.now(), last_error=error[:500]
    )


def mailbox_poll_run(*, task_run_id: Any, mailbox_id: int) -> None:
    """The poll task's body: claim, poll, record the outcome on the task run."""
    mailbox = _claim(task_run_id=task_run_id, mailbox_id=mailbox_id)
    if mailbox is None:
        _skip(task_run_id, "the mailbox was removed, or another poll of it was running")
        return
    try:
        result = mailbox_poll(mailbox)
    except SoftTimeLimitExceeded:
        task_run_finish(task_run_id=task_run_id, error="timed out")
        raise
    except Exception as exc:
        task_run_finish(task_run_id=task_run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    # A message left for its size is reported on the mailbox; only a poll that could not
    # finish is a failed run.
    failed = result["error"] if "failure" in result else ""
    task_run_finish(task_run_id=task_run_id, result=result, error=failed)
