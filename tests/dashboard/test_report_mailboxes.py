"""The report mailboxes page: add, edit, remove, poll now; per organisation and role; CSRF."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from mailsec import secrets
from mailsec.models import AuditLog, TaskKind, TaskRun
from reports import mailboxes
from reports.models import ImapMailbox

PAGE = "/reports/mailboxes/"
HTMX = {"HX-Request": "true"}
FORM = {
    "host": "imap.example.org", "port": "993", "security": "tls",
    "username": "dmarc@example.org", "password": "imap secret",
    "folder": "INBOX", "processed_folder": "mailsec-processed",
    "enabled": "on",
}  # fmt: skip


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def mailbox(org: Any, owner: Any) -> ImapMailbox:
    return mailboxes.mailbox_create(
        organisation=org, password="imap secret", actor=owner,
        host="imap.example.org", username="dmarc@example.org",
    )  # fmt: skip


def test_the_page_needs_a_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_an_owner_adds_a_mailbox_and_sees_it_without_its_password(owner):
    client = login(owner)
    response = client.post(PAGE, FORM, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="mailbox-panel"' in html and "<html" not in html
    assert "dmarc@example.org" in html
    assert "imap secret" not in html
    mailbox = ImapMailbox.objects.get()
    assert secrets.decrypt(mailbox.password, context=mailbox.secret_context) == b"imap secret"
    assert AuditLog.objects.filter(action="imap_mailbox.create", actor=owner).exists()
    assert "imap secret" not in client.get(PAGE).content.decode()


def test_a_wrong_value_is_shown_on_the_form_and_nothing_is_added(owner):
    response = login(owner).post(PAGE, {**FORM, "host": "10.0.0.1"}, headers=HTMX)
    assert response.status_code == 200
    assert "mailsec may not connect there" in response.content.decode()
    assert not ImapMailbox.objects.exists()


def test_editing_keeps_the_password_when_left_empty(owner, mailbox):
    client = login(owner)
    form = client.get(f"/reports/mailboxes/{mailbox.pk}/edit/", headers=HTMX).content.decode()
    assert "Edit dmarc@example.org" in form
    assert "imap secret" not in form
    changed = {**FORM, "folder": "Reports", "password": ""}
    response = client.post(f"/reports/mailboxes/{mailbox.pk}/edit/", changed, headers=HTMX)
    assert response.status_code == 200
    mailbox.refresh_from_db()
    assert mailbox.folder == "Reports"
    assert secrets.decrypt(mailbox.password, context=mailbox.secret_context) == b"imap secret"


def test_poll_now_queues_one_poll_and_the_table_reloads_while_it_is_pending(owner, mailbox):
    TaskRun.objects.all().delete()  # the poll queued on creation
    client = login(owner)
    response = client.post(f"/reports/mailboxes/{mailbox.pk}/poll/", headers=HTMX)
    assert response.status_code == 200
    assert TaskRun.objects.filter(kind=TaskKind.IMAP_POLL).count() == 1
    html = response.content.decode()
    assert "polling…" in html and 'hx-trigger="every 5s"' in html
    client.post(f"/reports/mailboxes/{mailbox.pk}/poll/", headers=HTMX)
    assert TaskRun.objects.filter(kind=TaskKind.IMAP_POLL).count() == 1


def test_remove_deletes_the_mailbox(owner, mailbox):
    response = login(owner).post(f"/reports/mailboxes/{mailbox.pk}/delete/", headers=HTMX)
    assert response.status_code == 200
    assert not ImapMailbox.objects.exists()
    assert AuditLog.objects.filter(action="imap_mailbox.delete").exists()


def test_another_organisations_mailbox_is_a_404(outsider, mailbox):
    client = login(outsider)
    assert mailbox.username not in client.get(PAGE).content.decode()
    for action in ("edit", "delete", "poll"):
        assert (
            client.post(
                f"/reports/mailboxes/{mailbox.pk}/{action}/", FORM, headers=HTMX
            ).status_code
            == 404
        )
    assert ImapMailbox.objects.get().folder == "INBOX"


def test_a_viewer_sees_the_mailbox_but_no_form_and_cannot_change_it(viewer, mailbox):
    client = login(viewer)
    html = client.get(PAGE).content.decode()
    assert "dmarc@example.org" in html
    assert 'id="form"' not in html
    assert (
        client.post(PAGE, FORM, headers=HTMX).status_code == 200
    )  # the form refuses: no organisation
    assert ImapMailbox.objects.count() == 1
    assert client.post(f"/reports/mailboxes/{mailbox.pk}/delete/", headers=HTMX).status_code == 403
    assert client.post(f"/reports/mailboxes/{mailbox.pk}/poll/", headers=HTMX).status_code == 403


def test_a_post_without_the_csrf_token_is_refused(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(PAGE, FORM, headers=HTMX).status_code == 403
    assert not ImapMailbox.objects.exists()
