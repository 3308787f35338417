"""`/api/v1/imap-mailboxes/`: per-organisation, admins write, the password never comes back."""

from __future__ import annotations

from typing import Any

import pytest

from mailsec import secrets
from mailsec.models import AuditLog, TokenScope
from reports.models import ImapMailbox
from tests.conftest import token_client

URL = "/api/v1/imap-mailboxes/"
SECRET = "s3cret imap password"
BODY = {
    "host": "imap.example.org", "port": 993, "security": "tls",
    "username": "dmarc@example.org", "password": SECRET,
}  # fmt: skip


@pytest.fixture
def created(owner_api: Any) -> dict[str, Any]:
    answer = owner_api.post(URL, BODY, format="json")
    assert answer.status_code == 201, answer.content
    return dict(answer.json())


def test_an_owner_adds_a_mailbox_and_the_password_is_never_returned(owner_api, org, created):
    assert created["organisation"] == org.slug
    assert created["host"] == "imap.example.org"
    assert created["folder"] == "INBOX" and created["processed_folder"] == "mailsec-processed"
    assert "password" not in created
    assert created["poll_pending"] is True  # the first poll is queued
    for answer in (owner_api.get(URL), owner_api.get(f"{URL}{created['id']}/")):
        assert answer.status_code == 200
        assert SECRET not in answer.content.decode()
        assert "password" not in answer.content.decode()
    mailbox = ImapMailbox.objects.get()
    assert mailbox.password != SECRET
    assert secrets.decrypt(mailbox.password, context=mailbox.secret_context) == SECRET.encode()


def test_members_of_other_organisations_see_nothing(created, outsider_api):
    assert outsider_api.get(URL).json()["results"] == []
    assert outsider_api.get(f"{URL}{created['id']}/").status_code == 404
    assert outsider_api.patch(f"{URL}{created['id']}/", {"folder": "X"}).status_code == 404
    assert outsider_api.delete(f"{URL}{created['id']}/").status_code == 404
    assert outsider_api.post(f"{URL}{created['id']}/poll/").status_code == 404


def test_viewers_and_read_tokens_read_but_change_nothing(created, viewer, viewer_api, owner):
    assert viewer_api.get(URL).json()["count"] == 1
    assert viewer_api.post(URL, BODY, format="json").status_code == 403
    assert viewer_api.patch(f"{URL}{created['id']}/", {"folder": "X"}).status_code == 403
    assert viewer_api.delete(f"{URL}{created['id']}/").status_code == 403
    assert viewer_api.post(f"{URL}{created['id']}/poll/").status_code == 403
    read_only = token_client(owner, TokenScope.READ)
    assert read_only.post(URL, BODY, format="json").status_code == 403
    assert read_only.post(f"{URL}{created['id']}/poll/").status_code == 403
    assert ImapMailbox.objects.get().folder == "INBOX"


def test_unauthenticated_requests_are_refused(client, created):
    assert client.get(URL).status_code in {401, 403}


def test_a_change_keeps_the_password_unless_one_is_given(owner_api, created):
    detail = f"{URL}{created['id']}/"
    answer = owner_api.patch(detail, {"folder": "Reports", "password": ""}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["folder"] == "Reports"
    mailbox = ImapMailbox.objects.get()
    assert secrets.decrypt(mailbox.password, context=mailbox.secret_context) == SECRET.encode()
    owner_api.patch(detail, {"password": "a new one"}, format="json")
    mailbox.refresh_from_db()
    assert secrets.decrypt(mailbox.password, context=mailbox.secret_context) == b"a new one"
    actions = list(
        AuditLog.objects.filter(object_type="imapmailbox")
        .order_by("pk")
        .values_list("action", "after")
    )
    assert actions[-1] == ("imap_mailbox.update", {"password": "changed"})


def test_poll_now_answers_202_and_joins_the_queued_poll(owner_api, created):
    first = owner_api.post(f"{URL}{created['id']}/poll/")
    second = owner_api.post(f"{URL}{created['id']}/poll/")
    assert first.status_code == second.status_code == 202
    assert first.json()["task_id"] == second.json()["task_id"]
    task = owner_api.get(first.json()["url"]).json()
    assert task["kind"] == "report.imap_poll"


def test_delete_removes_the_mailbox_and_is_audited(owner_api, created):
    assert owner_api.delete(f"{URL}{created['id']}/").status_code == 204
    assert not ImapMailbox.objects.exists()
    assert AuditLog.objects.filter(action="imap_mailbox.delete").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host": "10.0.0.1"}, "host"),
        ({"host": "not a host!"}, "host"),
        ({"port": 0}, "port"),
        ({"security": "plain"}, "security"),
        ({"folder": "INBOX\r\nA1 DELETE INBOX"}, "folder"),
        ({"processed_folder": "INBOX"}, "processed_folder"),
        ({"password": ""}, "password"),
    ],
)
def test_hostile_or_wrong_values_are_a_400_naming_the_field(owner_api, change, field):
    answer = owner_api.post(URL, {**BODY, **change}, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["error"]["details"]
    assert not ImapMailbox.objects.exists()


def test_a_non_numeric_id_is_a_404(owner_api):
    assert owner_api.get(f"{URL}abc/").status_code == 404
    assert owner_api.get(f"{URL}99999999999999999999999/").status_code == 404
