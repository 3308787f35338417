"""The htmx UI: login everywhere, per-organisation visibility, roles, fragments and CSP."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from dns_records.models import Domain
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name="good.test")


@pytest.mark.parametrize("path", ["/", "/domains/", "/audit/", "/tokens/", "/domains/1/"])
def test_pages_redirect_anonymous_users_to_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_health_endpoints_need_no_login():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_domain_list_shows_only_the_users_organisations(owner, outsider, domain, other_org):
    Domain.objects.create(organisation=other_org, name="secret.test")
    page = login(owner).get("/domains/").content.decode()
    assert "good.test" in page and "secret.test" not in page


def test_outsider_gets_404_on_another_organisations_domain_page(outsider, domain):
    client = login(outsider)
    assert client.get(f"/domains/{domain.pk}/").status_code == 404
    assert client.post(f"/domains/{domain.pk}/delete/").status_code == 404
    assert Domain.objects.filter(pk=domain.pk).exists()


def test_viewer_sees_no_add_form_and_cannot_delete(viewer, domain):
    client = login(viewer)
    page = client.get("/domains/").content.decode()
    assert 'id="domain-add-form"' not in page
    assert client.post(f"/domains/{domain.pk}/delete/", HTTP_HX_REQUEST="true").status_code == 403
    assert client.post("/domains/add/", {"name": "x.test"}).status_code == 200
    assert not Domain.objects.filter(name="x.test").exists()


def test_htmx_search_returns_only_the_table_fragment(owner, domain):
    response = login(owner).get(
        "/domains/?q=good", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="domain-table"
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="domain-table">')
    assert "<html" not in body and "good.test" in body


def test_add_returns_the_table_with_a_pending_row_that_polls(owner):
    response = login(owner).post("/domains/add/", {"name": "good.test"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    domain = Domain.objects.get(name="good.test")
    assert (
        f'id="domain-{domain.pk}" hx-get="/domains/{domain.pk}/row/" hx-trigger="every 2s"' in body
    )
    assert "checking…" in body


def test_add_with_a_bad_name_retargets_the_form_with_the_error(owner):
    response = login(owner).post("/domains/add/", {"name": "bad name.test"}, HTTP_HX_REQUEST="true")
    assert response["HX-Retarget"] == "#domain-add-form"
    assert "not a valid label" in response.content.decode()


def test_pages_carry_a_nonce_csp_and_the_csrf_header_for_htmx(owner, domain):
    response = login(owner).get("/domains/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp
    assert "unsafe-inline" not in csp
    body = response.content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in body
    assert "<style" not in body and " style=" not in body


def test_htmx_post_without_csrf_token_is_refused(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/domains/add/", {"name": "good.test"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert not Domain.objects.exists()


def test_login_is_locked_after_repeated_failures(owner):
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": owner.username, "password": "wrong"})
    response = client.post("/login/", {"username": owner.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_login_works_with_the_right_password(owner):
    client = Client()
    response = client.post("/login/", {"username": owner.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/domains/").status_code == 200


def test_token_page_shows_a_new_key_once_and_stores_its_hash(owner):
    from mailsec.models import ApiToken

    client = login(owner)
    response = client.post(
        "/tokens/", {"name": "ci", "scope": "write", "expires": "30"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    token = ApiToken.objects.get(user=owner)
    assert token.prefix in body and "Copy this key now" in body
    assert "Copy this key now" not in client.get("/tokens/").content.decode()


def test_audit_page_lists_changes_of_the_users_organisations_only(owner, outsider, org):
    client = login(owner)
    client.post("/domains/add/", {"name": "good.test"})
    assert "domain.create" in client.get("/audit/").content.decode()
    assert "good.test" not in login(outsider).get("/audit/").content.decode()


def test_audit_page_shows_the_users_own_token_changes(owner):
    client = login(owner)
    client.post("/tokens/", {"name": "ci", "scope": "read", "expires": "30"})
    assert "api_token.create" in client.get("/audit/").content.decode()


def test_api_docs_page_allows_inline_styles_but_no_inline_script(owner):
    response = login(owner).get("/api/v1/docs/")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["style-src"] == "'self' 'unsafe-inline'"
    assert "unsafe-inline" not in directives["script-src"]


def _store(domain, *outcomes):
    from django.utils import timezone

    from dns_records.services import check_outcomes_store

    check_outcomes_store(domain=domain, outcomes=list(outcomes), checked_at=timezone.now())


def test_domain_page_shows_findings_suggestion_with_copy_button_and_changes(owner, domain):
    from dns_records.models import CheckStatus
    from dns_records.results import CheckOutcome

    suggestion = {"name": "good.test", "type": "TXT", "value": "v=spf1 mx -all"}
    _store(domain, CheckOutcome("spf", CheckStatus.OK, "fine"))
    _store(domain, CheckOutcome("spf", CheckStatus.WARNING, "SPF ends in ~all",
                                {"findings": [{"status": "warning", "message": "softfail"}],
                                 "suggested_record": suggestion}))  # fmt: skip
    body = login(owner).get(f"/domains/{domain.pk}/").content.decode()
    assert '<code id="suggest-spf">v=spf1 mx -all</code>' in body
    assert 'data-copy="#suggest-spf"' in body
    assert "softfail" in body
    assert 'class="badge ok small">ok</span> → <span class="badge warning small">warning' in body


def test_domain_list_filters_by_worst_status(owner, domain, org):
    from dns_records.models import CheckStatus
    from dns_records.results import CheckOutcome

    healthy = Domain.objects.create(organisation=org, name="healthy.test")
    _store(domain, CheckOutcome("mx", CheckStatus.FAIL, "no MX"))
    _store(healthy, CheckOutcome("mx", CheckStatus.OK, "fine"))
    client = login(owner)
    failing = client.get("/domains/?status=fail").content.decode()
    assert "good.test" in failing
    assert "healthy.test" not in failing
    assert "<strong>mx</strong>: no MX" in failing
    assert "healthy.test" in client.get("/domains/?status=ok").content.decode()


def test_a_check_no_worker_took_stops_showing_as_running(owner, domain):
    from datetime import timedelta

    from django.utils import timezone

    from mailsec.models import TaskRun

    TaskRun.objects.create(organisation=domain.organisation, kind="domain.check", object_type="domain",
                           object_id=str(domain.pk))  # fmt: skip
    client = login(owner)
    assert "every 2s" in client.get(f"/domains/{domain.pk}/row/").content.decode()
    TaskRun.objects.update(created_at=timezone.now() - timedelta(minutes=16))
    row = client.get(f"/domains/{domain.pk}/row/").content.decode()
    assert "every 2s" not in row
    assert "not checked" in row


def _invite(client, org, username, role="admin"):
    return client.post(f"/organisations/{org.slug}/members/", {"username": username, "role": role},
                       HTTP_HX_REQUEST="true")  # fmt: skip


def _link(response) -> str:
    return str(response.content.decode()).split('id="invitation-link">')[1].split("<")[0]


def _answer_shape(response, username: str) -> str:
    """The owner's answer (the notice) with what must differ (the name typed, the link) taken
    out; the rest of the panel lists every open invitation, each name alike."""
    body = str(response.content.decode()).replace(_link(response), "LINK")
    notice = re.search(r'<div class="card notice" role="status">.*?</div>', body, re.S)
    assert notice is not None
    return notice.group(0).replace(username, "NAME")


def test_inviting_an_existing_and_an_unknown_name_answers_alike(owner, org):
    from django.contrib.auth.models import User

    from mailsec.models import Invitation, Membership

    User.objects.create_user(username="erin", password=PASSWORD)
    client = login(owner)
    existing = _invite(client, org, "erin")
    unknown = _invite(client, org, "nobody")
    assert existing.status_code == unknown.status_code == 200
    assert _answer_shape(existing, "erin") == _answer_shape(unknown, "nobody")
    assert existing.headers.keys() == unknown.headers.keys()
    rows = re.findall(r"<tr><td>(\w+)</td><td>admin</td>", unknown.content.decode())
    assert rows == ["nobody", "erin"]  # both listed as open invitations, alike
    assert "erin has been invited as admin" in existing.content.decode()
    # Nothing happens to either name without its owner's consent.
    assert not Membership.objects.filter(user__username="erin", organisation=org).exists()
    assert not User.objects.filter(username="nobody").exists()
    assert Invitation.objects.get(username="erin").user == User.objects.get(username="erin")
    assert Invitation.objects.get(username="nobody").user is None


def test_a_name_differing_only_in_case_is_invited_like_any_other(owner, org):
    from django.contrib.auth.models import User

    body = _invite(login(owner), org, "OLIVIA").content.decode()
    assert "OLIVIA has been invited" in body
    assert "only in case" not in body
    assert not User.objects.filter(username="OLIVIA").exists()


def test_the_invitation_link_is_stored_only_as_a_hash(owner, org):
    from mailsec.models import Invitation

    code = _link(_invite(login(owner), org, "nobody")).rstrip("/").rsplit("/", 1)[1]
    stored = Invitation.objects.get()
    assert code not in str(stored.__dict__)


def test_an_invited_user_accepts_on_the_organisations_page(owner, org):
    from django.contrib.auth.models import User

    from mailsec.models import AuditLog, Invitation, Membership

    erin = User.objects.create_user(username="erin", password=PASSWORD)
    _invite(login(owner), org, "erin", role="admin")
    client = login(erin)
    page = client.get("/organisations/").content.decode()
    assert "Invitations for you" in page
    assert org.name in page
    invitation = Invitation.objects.get()
    response = client.post(f"/invitations/{invitation.pk}/accept/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert Membership.objects.get(user=erin, organisation=org).role == "admin"
    assert AuditLog.objects.filter(action="invitation.accept", actor=erin).exists()
    assert AuditLog.objects.filter(action="membership.set", actor=erin).exists()
    # Answered once: it is gone from the page and cannot be answered again.
    assert "Invitations for you" not in response.content.decode()
    assert client.post(f"/invitations/{invitation.pk}/decline/").status_code == 404


def test_an_invited_user_declines(owner, org):
    from django.contrib.auth.models import User

    from mailsec.models import AuditLog, Invitation, Membership

    erin = User.objects.create_user(username="erin", password=PASSWORD)
    _invite(login(owner), org, "erin")
    invitation = Invitation.objects.get()
    assert login(erin).post(f"/invitations/{invitation.pk}/decline/").status_code == 200
    assert not Membership.objects.filter(user=erin).exists()
    invitation.refresh_from_db()
    assert invitation.declined_at is not None
    assert AuditLog.objects.filter(action="invitation.decline", actor=erin).exists()


def test_nobody_else_can_answer_a_users_invitation(owner, outsider, org):
    from django.contrib.auth.models import User

    from mailsec.models import Invitation, Membership

    User.objects.create_user(username="erin", password=PASSWORD)
    _invite(login(owner), org, "erin")
    invitation = Invitation.objects.get()
    assert login(outsider).post(f"/invitations/{invitation.pk}/accept/").status_code == 404
    assert login(owner).post(f"/invitations/{invitation.pk}/accept/").status_code == 404
    assert not Membership.objects.filter(user__username="erin").exists()


def test_an_expired_invitation_is_neither_shown_nor_accepted(owner, org):
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone

    from mailsec.models import Invitation

    erin = User.objects.create_user(username="erin", password=PASSWORD)
    link = _link(_invite(login(owner), org, "erin"))
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client = login(erin)
    assert "Invitations for you" not in client.get("/organisations/").content.decode()
    assert client.post(f"/invitations/{Invitation.objects.get().pk}/accept/").status_code == 404
    assert client.get(link).status_code == 404


def test_a_new_person_creates_an_account_through_the_link(owner, org):
    from django.contrib.auth.models import User

    from mailsec.models import AuditLog, Membership

    link = _link(_invite(login(owner), org, "nina", role="viewer"))
    anonymous = Client()
    page = anonymous.get(link)
    assert page.status_code == 200
    assert 'value="nina"' in page.content.decode()
    response = anonymous.post(link, {"username": "nina", "password1": "a much better passphrase 42",
                                     "password2": "a much better passphrase 42"})  # fmt: skip
    assert response.status_code == 302
    nina = User.objects.get(username="nina")
    assert nina.check_password("a much better passphrase 42")
    assert Membership.objects.get(user=nina, organisation=org).role == "viewer"
    assert anonymous.get("/organisations/").status_code == 200  # logged in
    assert AuditLog.objects.filter(action="user.create", actor=nina).exists()
    # One use only.
    assert Client().get(link).status_code == 404


def test_the_link_page_is_the_same_for_an_existing_and_an_unknown_name(owner, org):
    from django.contrib.auth.models import User

    User.objects.create_user(username="erin", password=PASSWORD)
    client = login(owner)
    pages = []
    for name in ("erin", "nobody"):
        link = _link(_invite(client, org, name))
        body = Client().get(link).content.decode()
        body = body.replace(link.split("/invite/")[1], "CODE").replace(name, "NAME")
        pages.append(
            re.sub(r'value="[A-Za-z0-9]{32,}"|"X-CSRFToken": "[^"]*"|nonce="[^"]*"', "", body)
        )
    assert pages[0] == pages[1]


def test_a_logged_in_person_accepts_through_the_link_with_their_account(owner, org):
    from django.contrib.auth.models import User

    from mailsec.models import Membership

    frank = User.objects.create_user(username="frank", password=PASSWORD)
    link = _link(_invite(login(owner), org, "frank-at-work", role="admin"))
    client = login(frank)
    assert "Accept as frank" in client.get(link).content.decode()
    assert client.post(link).status_code == 302
    assert Membership.objects.get(user=frank, organisation=org).role == "admin"


def test_a_taken_name_is_refused_and_a_few_refusals_end_the_link(owner, org):
    from django.contrib.auth.models import User

    from mailsec.services.members import SIGN_UP_REFUSALS_LIMIT

    link = _link(_invite(login(owner), org, "nina"))
    form = {"password1": "a much better passphrase 42", "password2": "a much better passphrase 42"}
    for taken in ["olivia", "OLIVIA", "Olivia"][:SIGN_UP_REFUSALS_LIMIT]:
        body = Client().post(link, {**form, "username": taken}).content.decode()
        assert "taken" in body
    assert Client().get(link).status_code == 404
    assert Client().post(link, {**form, "username": "nina"}).status_code == 404
    assert not User.objects.filter(username="nina").exists()


def test_the_sign_up_form_checks_the_password(owner, org):
    from django.contrib.auth.models import User

    link = _link(_invite(login(owner), org, "nina"))
    body = Client().post(link, {"username": "nina", "password1": "short", "password2": "short"})
    assert 'class="error"' in body.content.decode()
    assert not User.objects.filter(username="nina").exists()


def test_an_owner_sees_and_withdraws_an_open_invitation(owner, viewer, org):
    from mailsec.models import AuditLog, Invitation

    client = login(owner)
    link = _link(_invite(client, org, "nobody"))
    page = client.get("/organisations/").content.decode()
    assert f'id="open-invitations-{org.slug}"' in page
    assert (
        f'id="open-invitations-{org.slug}"'
        not in login(viewer).get("/organisations/").content.decode()
    )
    invitation = Invitation.objects.get()
    assert login(viewer).post(f"/invitations/{invitation.pk}/withdraw/").status_code == 403
    assert client.post(f"/invitations/{invitation.pk}/withdraw/").status_code == 200
    assert Client().get(link).status_code == 404
    assert AuditLog.objects.filter(action="invitation.withdraw", actor=owner).exists()
    assert client.post(f"/invitations/{invitation.pk}/withdraw/").status_code == 404


def test_another_organisations_invitation_cannot_be_withdrawn(owner, outsider, org):
    from mailsec.models import Invitation

    _invite(login(owner), org, "nobody")
    invitation = Invitation.objects.get()
    assert login(outsider).post(f"/invitations/{invitation.pk}/withdraw/").status_code == 404


def test_an_unknown_link_is_a_404():
    assert Client().get("/invite/not-a-code/").status_code == 404


def test_owner_changes_a_role_and_removes_a_member(owner, viewer, org):
    from mailsec.models import Membership

    client = login(owner)
    client.post(
        f"/organisations/{org.slug}/members/", {"username": viewer.username, "role": "admin"}
    )
    membership = Membership.objects.get(user=viewer, organisation=org)
    assert membership.role == "admin"
    client.post(f"/memberships/{membership.pk}/remove/")
    assert not Membership.objects.filter(user=viewer, organisation=org).exists()
    from mailsec.models import AuditLog

    changed = AuditLog.objects.get(action="membership.set", actor=owner, before={"role": "viewer"})
    assert changed.after == {"user": viewer.username, "role": "admin"}
    removed = AuditLog.objects.get(action="membership.remove", actor=owner)
    assert removed.before == {"user": viewer.username, "role": "admin"}


def test_the_last_owner_can_be_neither_removed_nor_demoted(owner, org):
    from mailsec.models import Membership

    client = login(owner)
    own = Membership.objects.get(user=owner, organisation=org)
    assert "at least one owner" in client.post(f"/memberships/{own.pk}/remove/").content.decode()
    body = client.post(
        f"/organisations/{org.slug}/members/", {"username": owner.username, "role": "viewer"}
    )
    assert "at least one owner" in body.content.decode()
    own.refresh_from_db()
    assert own.role == "owner"


def test_only_owners_manage_members(viewer, org, owner):
    from mailsec.models import Membership

    client = login(viewer)
    assert (
        client.post(
            f"/organisations/{org.slug}/members/", {"username": "x", "role": "owner"}
        ).status_code
        == 403
    )
    own = Membership.objects.get(user=owner, organisation=org)
    assert client.post(f"/memberships/{own.pk}/remove/").status_code == 403
    assert "Remove" not in client.get("/organisations/").content.decode()


def test_outsider_cannot_touch_another_organisations_members(outsider, owner, org):
    from mailsec.models import Membership

    client = login(outsider)
    assert client.post(f"/organisations/{org.slug}/members/", {"username": "x"}).status_code == 404
    own = Membership.objects.get(user=owner, organisation=org)
    assert client.post(f"/memberships/{own.pk}/remove/").status_code == 404
    assert org.name not in client.get("/organisations/").content.decode()


def test_a_user_changes_their_password(owner):
    client = login(owner)
    assert "Change your password" in client.get("/password/").content.decode()
    response = client.post("/password/", {"old_password": PASSWORD, "new_password1": "a much better passphrase 42",
                                          "new_password2": "a much better passphrase 42"})  # fmt: skip
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("a much better passphrase 42")


def test_without_a_trusted_proxy_forwarded_for_is_ignored(owner, settings):
    settings.MAILSEC_TRUSTED_PROXIES = []
    for n in range(5):
        Client(HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").post(
            "/login/", {"username": owner.username, "password": "wrong"}
        )
    response = Client(HTTP_X_FORWARDED_FOR="198.51.100.99").post(
        "/login/", {"username": owner.username, "password": PASSWORD}
    )
    assert response.status_code == 429


def test_admins_cannot_manage_members(org, owner):
    from mailsec.models import Membership, Role

    admin = _admin_user(org)
    client = login(admin)
    response = client.post(
        f"/organisations/{org.slug}/members/", {"username": admin.username, "role": "owner"}
    )
    assert response.status_code == 403
    own = Membership.objects.get(user=owner, organisation=org)
    assert client.post(f"/memberships/{own.pk}/remove/").status_code == 403
    assert Membership.objects.get(user=admin, organisation=org).role == Role.ADMIN


def _admin_user(org):
    from django.contrib.auth.models import User

    from mailsec.models import Role
    from mailsec.services.members import membership_set

    user = User.objects.create_user(username="adam", password=PASSWORD)
    membership_set(organisation=org, user=user, role=Role.ADMIN, actor=None)
    return user


@pytest.mark.parametrize("bad", ["<b>olivia</b>", "olivia\u200b", "a b"])
def test_member_usernames_are_validated(owner, org, bad):
    from django.contrib.auth.models import User

    body = login(owner).post(
        f"/organisations/{org.slug}/members/", {"username": bad, "role": "viewer"}
    )
    assert 'class="error"' in body.content.decode()
    assert not User.objects.filter(username=bad).exists()


def test_organisations_page_query_count_does_not_grow_with_organisations(
    owner, django_assert_max_num_queries
):
    from mailsec.models import Role
    from mailsec.services.members import membership_set, organisation_create

    for n in range(6):
        membership_set(organisation=organisation_create(name=f"Org {n}", actor=None), user=owner,
                       role=Role.OWNER, actor=None)  # fmt: skip
    client = login(owner)
    with django_assert_max_num_queries(6):
        assert client.get("/organisations/").status_code == 200


def test_a_user_cannot_revoke_someone_elses_token(owner, outsider):
    from mailsec.models import ApiToken, TokenScope
    from mailsec.services.tokens import api_token_create

    token, _key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    assert login(outsider).post(f"/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    assert login(owner).post(f"/tokens/{token.pk}/revoke/").status_code == 200
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_server_errors_answer_json_under_the_api_and_a_page_elsewhere(rf):
    import json

    from dashboard.views.errors import server_error

    api = server_error(rf.get("/api/v1/domains/"))
    assert api.status_code == 500
    assert json.loads(api.content)["error"]["code"] == "server_error"
    page = server_error(rf.get("/domains/"))
    assert page.status_code == 500
    assert b"Something went wrong" in page.content


def test_domain_page_gathers_every_suggestion_as_zone_lines(owner, domain):
    from dns_records.models import CheckStatus
    from dns_records.results import CheckOutcome

    _store(domain,
           CheckOutcome("spf", CheckStatus.FAIL, "no SPF",
                        {"suggested_record": {"name": "good.test", "type": "TXT", "value": "v=spf1 mx -all"}}),
           CheckOutcome("dmarc", CheckStatus.FAIL, "no DMARC",
                        {"suggested_record": {"name": "_dmarc.good.test", "type": "TXT",
                                              "value": "v=DMARC1; p=quarantine"}}))  # fmt: skip
    body = login(owner).get(f"/domains/{domain.pk}/").content.decode()
    assert "good.test. 3600 IN TXT &quot;v=spf1 mx -all&quot;" in body
    assert "_dmarc.good.test. 3600 IN TXT &quot;v=DMARC1; p=quarantine&quot;" in body
    assert 'data-copy="#zone-lines"' in body


def test_domain_list_counts_domains_by_worst_status(owner, domain, org):
    from dns_records.models import CheckStatus
    from dns_records.results import CheckOutcome

    Domain.objects.create(organisation=org, name="never.test")
    _store(domain, CheckOutcome("mx", CheckStatus.FAIL, "no MX"))
    body = login(owner).get("/domains/").content.decode()
    counts = body.split('id="status-counts"')[1].split("</nav>")[0]
    assert '<span class="badge fail small">fail</span> 1' in counts
    assert '<span class="badge unchecked small">unchecked</span> 1' in counts
    assert "warning" not in counts


def test_status_counts_appear_once_on_the_page_and_out_of_band_in_fragments(owner, domain):
    client = login(owner)
    page = client.get("/domains/").content.decode()
    assert page.count('id="status-counts"') == 1
    fragment = client.get(
        "/domains/?status=fail", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="domain-table"
    )
    assert (
        'id="status-counts" class="status-counts" aria-label="Domains by status" hx-swap-oob="true"'
        in (fragment.content.decode())
    )


def _checked_domains(org, count, start=0):
    """Domains that each have a few current checks, one of them failing."""
    from dns_records.models import CheckStatus
    from dns_records.results import CheckOutcome

    for n in range(start, start + count):
        domain = Domain.objects.create(organisation=org, name=f"d{n:02}.test")
        _store(domain, CheckOutcome("spf", CheckStatus.OK, "fine"),
               CheckOutcome("dmarc", CheckStatus.WARNING, "p=none"),
               CheckOutcome("mx", CheckStatus.FAIL, "no MX"))  # fmt: skip


@pytest.mark.parametrize("fragment", [False, True], ids=["page", "table-fragment"])
def test_domain_list_runs_as_many_queries_for_30_domains_as_for_3(owner, org, other_org, fragment):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mailsec.models import Role
    from mailsec.services.members import membership_set

    # Two writable organisations, so the add form shows its organisation menu too.
    membership_set(organisation=other_org, user=owner, role=Role.ADMIN, actor=None)
    headers = {"HX-Request": "true", "HX-Target": "domain-table"} if fragment else {}
    client = login(owner)
    queries, rows = [], []
    for count, start in ((3, 0), (27, 3)):
        _checked_domains(org if start else other_org, count, start)
        with CaptureQueriesContext(connection) as captured:
            body = client.get("/domains/", headers=headers).content.decode()
        assert ("<html" in body) is not fragment
        queries.append(len(captured))
        rows.append(body.count('<tr id="domain-'))
    assert rows == [3, 25]  # a full page of 25 rows against 3
    assert queries[0] == queries[1], queries


def test_adding_a_domain_to_an_organisation_the_user_cannot_change_is_refused(owner, other_org):
    response = login(owner).post(
        "/domains/add/", {"name": "good.test", "organisation": other_org.pk}, HTTP_HX_REQUEST="true"
    )
    assert response["HX-Retarget"] == "#domain-add-form"
    assert "You cannot add domains to that organisation." in response.content.decode()
    assert not Domain.objects.exists()


def test_adding_a_domain_twice_shows_the_error_next_to_the_name_as_typed(owner, domain):
    body = (
        login(owner)
        .post("/domains/add/", {"name": "Good.Test"}, HTTP_HX_REQUEST="true")
        .content.decode()
    )
    assert "good.test is already in Acme Mail." in body
    assert 'value="Good.Test"' in body


def test_a_field_error_is_the_element_its_input_names_in_aria_describedby(owner):
    body = (
        login(owner)
        .post("/domains/add/", {"name": "bad name.test"}, HTTP_HX_REQUEST="true")
        .content.decode()
    )
    assert 'aria-invalid="true" aria-describedby="domain-name_error"' in body
    assert '<p class="error" role="alert" id="domain-name_error">' in body


def test_a_token_with_an_unknown_scope_or_expiry_is_not_created(owner):
    from mailsec.models import ApiToken

    body = (
        login(owner)
        .post(
            "/tokens/",
            {"name": "ci", "scope": "admin", "expires": "forever"},
            HTTP_HX_REQUEST="true",
        )
        .content.decode()
    )
    assert "Choose a scope." in body and "Choose an expiry." in body
    assert not ApiToken.objects.exists()


def test_a_token_expires_after_the_chosen_days_or_never(owner):
    from datetime import timedelta

    from django.utils import timezone

    from mailsec.models import ApiToken

    client = login(owner)
    client.post("/tokens/", {"name": "month", "scope": "read", "expires": "30"})
    client.post("/tokens/", {"name": "forever", "scope": "read", "expires": "never"})
    month = ApiToken.objects.get(name="month").expires_at
    assert month is not None
    assert abs(month - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert ApiToken.objects.get(name="forever").expires_at is None


def test_a_member_with_an_unknown_role_is_refused_and_the_form_keeps_the_name(owner, org):
    from django.contrib.auth.models import User

    body = (
        login(owner)
        .post(f"/organisations/{org.slug}/members/", {"username": "nina", "role": "king"})
        .content.decode()
    )
    assert "Choose a role." in body
    assert 'value="nina"' in body
    assert not User.objects.filter(username="nina").exists()


def test_an_id_too_large_for_the_database_is_a_404(owner):
    client = login(owner)
    assert client.get("/domains/99999999999999999999999/").status_code == 404
    assert client.post("/dkim-keys/99999999999999999999999/retire/").status_code == 404
