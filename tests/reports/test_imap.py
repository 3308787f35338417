"""IMAP polling against a real Dovecot on 127.0.0.41 (tests/reports/imap_server.py).

Messages are APPENDed over IMAP as a receiver's mail would arrive; mailsec polls with its
adapter (reports/imap.py) through the mailbox services, trusting the Dovecot's test CA through
MAILSEC_TLS_CA_FILE and allowed to reach 127.0.0.41 through MAILSEC_PROBE_ALLOW_NETWORKS.
"""

from __future__ import annotations

import imaplib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from django.db import connection

from mailsec import secrets
from mailsec.env import parse_nameserver
from mailsec.models import TaskKind, TaskRun, TaskState
from reports import imap, mailboxes
from reports.ingest_tasks import poll_imap_mailbox
from reports.models import ImapMailbox, IngestSource, RawMessage
from tests.reports.imap_server import IMAP_ADDRESS, DovecotServer

USER, PASSWORD = "dmarc@acme.test", "correct imap password"
OTHER_USER, OTHER_PASSWORD = "tls@acme.test", "another imap password"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    server = DovecotServer({USER: PASSWORD, OTHER_USER: OTHER_PASSWORD})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dovecot_without_move() -> Iterator[DovecotServer]:
    """A Dovecot announcing no MOVE capability: mailsec must COPY, flag and expunge."""
    server = DovecotServer(
        {USER: PASSWORD},
        capabilities="IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE UIDPLUS NAMESPACE",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _trust_dovecot(settings: Any, dovecot: DovecotServer) -> None:
    settings.MAILSEC_TLS_CA_FILE = str(dovecot.ca_file)
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network(f"{IMAP_ADDRESS}/32")]


class Mailbox:
    """The test's own IMAP client (stdlib imaplib) for one user of a Dovecot."""

    def __init__(self, server: DovecotServer, user: str = USER, password: str = PASSWORD):
        self.server, self.user, self.password = server, user, password

    def _client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.server.ca_file))
        client = imaplib.IMAP4_SSL(IMAP_ADDRESS, self.server.imaps_port, ssl_context=context)
        client.login(self.user, self.password)
        return client

    def append(self, content: bytes, folder: str = "INBOX") -> None:
        client = self._client()
        try:
            status, data = client.append(folder, None, None, content)
            assert status == "OK", data
        finally:
            client.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        client = self._client()
        try:
            status, _ = client.select(folder, readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("SEARCH", "ALL")
            found = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                found.append(bytes(parts[0][1]))
            return found
        finally:
            client.logout()

    def folders(self) -> list[str]:
        client = self._client()
        try:
            _, data = client.list()
            return [bytes(line).decode().rsplit(" ", 1)[-1].strip('"') for line in data]  # type: ignore[arg-type]
        finally:
            client.logout()

    def clear(self) -> None:
        client = self._client()
        try:
            for folder in ("INBOX", "mailsec-processed"):
                status, data = client.select(folder)
                if status == "OK" and int(data[0] or 0) > 0:
                    client.store("1:*", "+FLAGS", "\\Deleted")
                    client.expunge()
        finally:
            client.logout()


@pytest.fixture
def inbox(dovecot: DovecotServer) -> Iterator[Mailbox]:
    box = Mailbox(dovecot)
    box.clear()
    yield box
    box.clear()


def report(n: int, size: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@google.test"
    message["To"] = USER
    message["Subject"] = f"Report domain: acme.test Submitter: google.test Report-ID: {n}"
    message["Message-ID"] = make_msgid(domain="google.test")
    message.set_content("A DMARC aggregate report is attached.\n" + "x" * size)
    message.add_attachment(
        f"<feedback><report_metadata><report_id>{n}</report_id></report_metadata></feedback>".encode(),
        maintype="application",
        subtype="xml",
        filename=f"google.test!acme.test!{n}.xml",
    )
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def make_mailbox(org: Any, owner: Any, server: DovecotServer, **fields: Any) -> ImapMailbox:
    values: dict[str, Any] = {
        "host": IMAP_ADDRESS, "port": server.imaps_port, "security": "tls", "username": USER,
    }  # fmt: skip
    values.update(fields)
    password = values.pop("password", PASSWORD)
    return mailboxes.mailbox_create(organisation=org, password=password, actor=owner, **values)


def test_messages_in_the_inbox_are_stored_then_moved_to_the_processed_folder(
    db, org, owner, dovecot, inbox
):
    sent = [report(1), report(2), report(3)]
    for content in sent:
        inbox.append(content)
    mailbox = make_mailbox(org, owner, dovecot)
    assert "mailsec-processed" not in inbox.folders()

    result = mailboxes.mailbox_poll(mailbox)

    assert result["stored"] == 3 and result["moved"] == 3 and result["error"] == ""
    rows = RawMessage.objects.filter(source=IngestSource.IMAP).order_by("pk")
    assert [bytes(r.content) for r in rows] == sent
    assert {r.organisation_id for r in rows} == {org.pk}
    assert {r.envelope_to for r in rows} == {USER}
    assert inbox.messages() == []
    assert sorted(inbox.messages("mailsec-processed")) == sorted(sent)
    mailbox.refresh_from_db()
    assert mailbox.last_error == ""
    assert mailbox.last_polled_at is not None


def test_a_starttls_mailbox_is_polled_the_same_way(db, org, owner, dovecot, inbox):
    inbox.append(report(1))
    mailbox = make_mailbox(org, owner, dovecot, port=dovecot.imap_port, security="starttls")
    result = mailboxes.mailbox_poll(mailbox)
    assert result["stored"] == 1, result
    assert inbox.messages() == []


def test_a_wrong_password_is_the_last_error_and_loses_nothing(db, org, owner, dovecot, inbox):
    sent = [report(1), report(2)]
    for content in sent:
        inbox.append(content)
    mailbox = make_mailbox(org, owner, dovecot, password="not the password")

    result = mailboxes.mailbox_poll(mailbox)

    mailbox.refresh_from_db()
    assert "refused the username or password" in mailbox.last_error
    assert result["failure"] == "auth"
    assert not RawMessage.objects.exists()
    assert inbox.messages() == sent


def test_a_second_poll_stores_nothing_twice(db, org, owner, dovecot, inbox):
    inbox.append(report(1))
    mailbox = make_mailbox(org, owner, dovecot)
    assert mailboxes.mailbox_poll(mailbox)["stored"] == 1
    second = mailboxes.mailbox_poll(mailbox)
    assert second["stored"] == 0 and second["duplicates"] == 0 and second["error"] == ""
    assert RawMessage.objects.count() == 1


def test_a_message_stored_but_not_moved_is_moved_without_being_stored_again(
    db, org, owner, dovecot, inbox
):
    """A poll cut short between the store and the move leaves the message in the inbox."""
    content = report(7)
    inbox.append(content)
    mailbox = make_mailbox(org, owner, dovecot)
    mailboxes.mailbox_poll(mailbox)
    inbox.append(content)  # as if the move had not happened

    result = mailboxes.mailbox_poll(mailbox)

    assert result["stored"] == 0 and result["duplicates"] == 1 and result["moved"] == 1
    assert RawMessage.objects.count() == 1
    assert inbox.messages() == []


def test_the_password_is_encrypted_at_rest_and_bound_to_its_row(db, org, owner, dovecot):
    mailbox = make_mailbox(org, owner, dovecot)
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM reports_imapmailbox WHERE id = %s", [mailbox.pk])
        (stored,) = cursor.fetchone()
    assert PASSWORD not in stored
    assert stored.startswith("v1:")
    assert secrets.decrypt(stored, context=mailbox.secret_context) == PASSWORD.encode()
    other = make_mailbox(org, owner, dovecot, username=OTHER_USER, password=OTHER_PASSWORD)
    with pytest.raises(secrets.SecretError):
        secrets.decrypt(stored, context=other.secret_context)


def test_an_untrusted_certificate_is_a_tls_error_and_no_password_is_sent(
    db, org, owner, dovecot, inbox, settings
):
    inbox.append(report(1))
    mailbox = make_mailbox(org, owner, dovecot)
    settings.MAILSEC_TLS_CA_FILE = ""  # the system's CAs do not know the test CA
    logged = len(dovecot.log)
    result = mailboxes.mailbox_poll(mailbox)
    mailbox.refresh_from_db()
    assert result["failure"] == "tls"
    assert "certificate is not trusted" in mailbox.last_error
    assert "Login:" not in dovecot.log[logged:]
    assert len(inbox.messages()) == 1


def test_an_address_outside_the_allowed_networks_is_refused_before_connecting(
    db, org, owner, dovecot, settings
):
    mailbox = make_mailbox(org, owner, dovecot)
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = []
    result = mailboxes.mailbox_poll(mailbox)
    mailbox.refresh_from_db()
    assert result["failure"] == "refused"
    assert "outside the networks mailsec may reach" in mailbox.last_error


def test_a_host_name_that_does_not_resolve_is_a_dns_error(db, org, owner, dovecot, settings):
    # A port where nothing answers (as tests/settings.py has it, unless a session's Knot is up).
    settings.MAILSEC_DNS_NAMESERVERS = [parse_nameserver("127.0.0.1:9")]
    mailbox = make_mailbox(org, owner, dovecot, host="imap.reports.test")
    result = mailboxes.mailbox_poll(mailbox)
    assert result["failure"] == "dns"
    mailbox.refresh_from_db()
    assert mailbox.last_error.startswith("could not resolve imap.reports.test")


def test_a_server_that_never_answers_times_out():
    """A listener that accepts and stays silent: the poll ends with a timeout, not a hang."""
    with socket.socket() as silent:
        silent.bind((IMAP_ADDRESS, 0))
        silent.listen()
        account = imap.ImapAccount(
            host=IMAP_ADDRESS, port=silent.getsockname()[1], security="tls", username=USER,
            password=PASSWORD, folder="INBOX", processed_folder="done",
        )  # fmt: skip
        with pytest.raises(imap.ImapFailure) as failure:
            imap.poll(account, lambda content, uid: True, max_bytes=10_000, timeout=1.0)
    assert failure.value.kind == imap.FailureKind.TIMEOUT


def test_a_message_over_the_size_limit_is_left_marked_and_the_rest_are_taken(
    db, org, owner, dovecot, inbox, settings
):
    small, big = report(1), report(2, size=8000)
    inbox.append(big)
    inbox.append(small)
    settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES = 4000
    mailbox = make_mailbox(org, owner, dovecot)

    first = mailboxes.mailbox_poll(mailbox)
    second = mailboxes.mailbox_poll(mailbox)

    assert first["stored"] == 1 and first["too_large"] == 1
    assert "over MAILSEC_REPORT_MAX_MESSAGE_BYTES" in first["error"]
    assert second["too_large"] == 0  # marked, so passed by
    assert [bytes(r.content) for r in RawMessage.objects.all()] == [small]
    assert inbox.messages() == [big]


def test_a_store_that_fails_leaves_the_message_in_the_folder(dovecot, inbox, settings):
    inbox.append(report(1))
    account = imap.ImapAccount(
        host=IMAP_ADDRESS, port=dovecot.imaps_port, security="tls", username=USER,
        password=PASSWORD, folder="INBOX", processed_folder="mailsec-processed",
    )  # fmt: skip

    def store(content: bytes, uid: int) -> bool:
        raise RuntimeError("the database is down")

    with pytest.raises(RuntimeError):
        imap.poll(account, store, max_bytes=100_000)
    assert len(inbox.messages()) == 1


def test_without_move_the_message_is_copied_flagged_and_expunged(
    db, org, owner, dovecot_without_move, settings
):
    settings.MAILSEC_TLS_CA_FILE = str(dovecot_without_move.ca_file)
    box = Mailbox(dovecot_without_move)
    content = report(1)
    box.append(content)
    mailbox = make_mailbox(org, owner, dovecot_without_move)
    result = mailboxes.mailbox_poll(mailbox)
    assert result["stored"] == 1 and result["moved"] == 1, result
    assert box.messages() == []
    assert box.messages("mailsec-processed") == [content]


# --- the task, the schedule and the lock ----------------------------------------------------


def test_the_poll_task_polls_and_records_its_run(db, org, owner, dovecot, inbox):
    inbox.append(report(1))
    mailbox = make_mailbox(org, owner, dovecot)
    run = mailboxes.mailbox_poll_request(mailbox=mailbox, actor=owner)
    poll_imap_mailbox.apply(kwargs={"task_run_id": str(run.pk), "mailbox_id": mailbox.pk})
    run.refresh_from_db()
    assert run.state == TaskState.SUCCEEDED, run.error
    assert run.result["stored"] == 1
    assert run.kind == TaskKind.IMAP_POLL


def test_a_failed_poll_is_a_failed_run_with_the_reason(db, org, owner, dovecot, inbox):
    mailbox = make_mailbox(org, owner, dovecot, password="wrong")
    run = mailboxes.mailbox_poll_request(mailbox=mailbox, actor=owner)
    poll_imap_mailbox.apply(kwargs={"task_run_id": str(run.pk), "mailbox_id": mailbox.pk})
    run.refresh_from_db()
    assert run.state == TaskState.FAILED
    assert "refused the username or password" in run.error


def test_poll_now_joins_a_poll_already_queued(db, org, owner, dovecot):
    mailbox = make_mailbox(org, owner, dovecot)  # creating it queued a first poll
    first = mailboxes.poll_pending(mailbox)
    assert first is not None
    assert mailboxes.mailbox_poll_request(mailbox=mailbox, actor=owner) == first


def test_a_mailbox_held_by_a_running_poll_is_not_polled_by_another(db, org, owner, dovecot, inbox):
    inbox.append(report(1))
    mailbox = make_mailbox(org, owner, dovecot)
    holder = mailboxes.poll_pending(mailbox)
    assert holder is not None
    assert mailboxes._claim(task_run_id=holder.pk, mailbox_id=mailbox.pk) is not None
    second = TaskRun.objects.create(
        organisation=org, kind=TaskKind.IMAP_POLL, object_type="imapmailbox",
        object_id=str(mailbox.pk),
    )  # fmt: skip
    poll_imap_mailbox.apply(kwargs={"task_run_id": str(second.pk), "mailbox_id": mailbox.pk})
    second.refresh_from_db()
    assert second.state == TaskState.SUCCEEDED
    assert "another poll" in second.result["skipped"]
    assert len(inbox.messages()) == 1  # the second one did not touch the mailbox


@pytest.mark.django_db(transaction=True)
def test_two_polls_at_once_take_each_message_once(org, owner, dovecot, inbox, monkeypatch):
    """Two threads (two workers' worth) run the poll task for one mailbox at the same time."""
    # The mailbox's first poll is queued on commit: a session's Celery worker (which does not
    # trust this test's CA) would claim it and make both threads skip. The threads are the two.
    monkeypatch.setattr(mailboxes, "task_run_enqueue", lambda *args, **kwargs: None)
    for n in range(5):
        inbox.append(report(n))
    mailbox = make_mailbox(org, owner, dovecot)
    first = mailboxes.poll_pending(mailbox)
    assert first is not None
    runs = [first]
    runs.append(
        TaskRun.objects.create(
            organisation=org, kind=TaskKind.IMAP_POLL, object_type="imapmailbox",
            object_id=str(mailbox.pk),
        )
    )  # fmt: skip
    barrier = threading.Barrier(2)

    def work(run: TaskRun) -> None:
        barrier.wait()
        try:
            mailboxes.mailbox_poll_run(task_run_id=run.pk, mailbox_id=mailbox.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert RawMessage.objects.count() == 5
    assert len({r.sha256 for r in RawMessage.objects.all()}) == 5
    states = sorted(
        TaskRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)
    )
    assert states == [TaskState.SUCCEEDED, TaskState.SUCCEEDED]
    assert inbox.messages() == []


def test_beat_queues_each_due_mailbox_once(
    db, org, owner, dovecot, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    due = make_mailbox(org, owner, dovecot)
    make_mailbox(org, owner, dovecot, username=OTHER_USER, enabled=False)
    TaskRun.objects.all().delete()  # the first polls queued on creation
    now = timezone.now()
    assert mailboxes.mailboxes_queue_due(now=now) == 1
    assert mailboxes.mailboxes_queue_due(now=now) == 0
    run = TaskRun.objects.get()
    assert run.object_id == str(due.pk) and run.created_by is None


def test_hostile_mailbox_settings_are_refused(db, org, owner, viewer, dovecot):
    from django.core.exceptions import PermissionDenied, ValidationError

    with pytest.raises(ValidationError) as refused:
        make_mailbox(org, owner, dovecot, host="10.0.0.1")
    assert "host" in refused.value.message_dict
    for fields in (
        {"folder": "INBOX\r\nA1 LOGOUT"}, {"folder": "*"}, {"port": 0},
        {"security": "none"}, {"processed_folder": "inbox", "folder": "INBOX"},
        {"password": "pass\nword"},
    ):  # fmt: skip
        with pytest.raises(ValidationError):
            make_mailbox(org, owner, dovecot, **fields)
    with pytest.raises(PermissionDenied):
        make_mailbox(org, viewer, dovecot)
    assert not ImapMailbox.objects.exists()


def test_changes_are_audited_without_the_password(db, org, owner, dovecot):
    from mailsec.models import AuditLog

    mailbox = make_mailbox(org, owner, dovecot)
    mailboxes.mailbox_update(mailbox=mailbox, actor=owner, folder="Reports", password="new one")
    mailboxes.mailbox_delete(mailbox=mailbox, actor=owner)
    entries = list(AuditLog.objects.filter(object_type="imapmailbox").order_by("pk"))
    assert [e.action for e in entries] == [
        "imap_mailbox.create", "imap_mailbox.update", "imap_mailbox.delete",
    ]  # fmt: skip
    assert entries[1].after == {"folder": "Reports", "password": "changed"}
    for entry in entries:
        assert PASSWORD not in str(entry.before) + str(entry.after)
        assert "new one" not in str(entry.before) + str(entry.after)


class HostileImapServer:
    """A TLS IMAP server on 127.0.0.41 that says a message is 100 bytes, then announces a
    literal of a gigabyte for it (and sends a little of it): mailsec must refuse the literal
    before reading it, and store nothing."""

    def __init__(self, directory: Any) -> None:
        from tests.reports.imap_server import make_certificates

        self.ca_file, cert, key = make_certificates(directory)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server((IMAP_ADDRESS, 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        with self.context.wrap_socket(raw, server_side=True) as conn:
            reader = conn.makefile("rb")
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 MOVE UIDPLUS] hostile ready\r\n")
            for line in reader:
                tag, _, command = line.decode().strip().partition(" ")
                self.commands.append(command)
                verb = command.upper()
                if verb.startswith("CAPABILITY"):
                    reply = "* CAPABILITY IMAP4rev1 MOVE UIDPLUS\r\n"
                elif verb.startswith("SELECT"):
                    reply = "* 1 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n"
                elif verb.startswith("LIST"):
                    reply = '* LIST () "/" mailsec-processed\r\n'
                elif verb.startswith("UID SEARCH"):
                    reply = "* SEARCH 1\r\n"
                elif verb.startswith("UID FETCH") and "RFC822.SIZE" in verb:
                    reply = "* 1 FETCH (UID 1 RFC822.SIZE 100)\r\n"
                elif verb.startswith("UID FETCH"):
                    conn.sendall(b"* 1 FETCH (UID 1 BODY[]<0> {1000000000}\r\n" + b"x" * 65536)
                    return
                elif verb.startswith("LOGOUT"):
                    conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                    return
                else:
                    reply = ""
                conn.sendall(f"{reply}{tag} OK done\r\n".encode())

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


def test_a_server_announcing_a_huge_literal_is_refused_before_it_is_read(settings, tmp_path):
    server = HostileImapServer(tmp_path)
    settings.MAILSEC_TLS_CA_FILE = str(server.ca_file)
    stored: list[bytes] = []

    def store(content: bytes, uid: int) -> bool:
        stored.append(content)
        return True

    account = imap.ImapAccount(
        host=IMAP_ADDRESS, port=server.port, security="tls", username=USER,
        password=PASSWORD, folder="INBOX", processed_folder="mailsec-processed",
    )  # fmt: skip
    try:
        with pytest.raises(imap.ImapFailure) as failure:
            imap.poll(account, store, max_bytes=10_000)
    finally:
        server.close()
    assert failure.value.kind == imap.FailureKind.PROTOCOL
    assert "over mailsec's limit" in failure.value.message
    assert stored == []
    assert not any(c.upper().startswith("UID MOVE") for c in server.commands)
