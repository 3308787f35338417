from django.urls import path, register_converter

from dashboard.views import audit, dkim, domains, members, tokens

app_name = "dashboard"


class RowId:
    """A primary key in a path: at most 18 digits, so it always fits the database's bigint
    (Django's `int` takes any length, and an overflowing id would be a 500, not a 404)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowId, "id")

urlpatterns = [
    path("", domains.domain_list, name="home"),
    path("domains/", domains.domain_list, name="domain_list"),
    path("domains/add/", domains.domain_add, name="domain_add"),
    path("domains/<id:pk>/", domains.domain_detail, name="domain_detail"),
    path("domains/<id:pk>/row/", domains.domain_row, name="domain_row"),
    path("domains/<id:pk>/checks/", domains.domain_checks, name="domain_checks"),
    path("domains/<id:pk>/check/", domains.domain_check, name="domain_check"),
    path("domains/<id:pk>/dkim/", dkim.dkim_panel, name="dkim_panel"),
    path("domains/<id:pk>/dkim/keys/", dkim.dkim_key_add, name="dkim_key_add"),
    path("domains/<id:pk>/dkim/selectors/", dkim.dkim_selector_add, name="dkim_selector_add"),
    path("domains/<id:pk>/dkim/rotation/", dkim.dkim_rotation, name="dkim_rotation"),
    path("domains/<id:pk>/dkim/dns-update/", dkim.dns_update_set, name="dns_update_set"),
    path("dkim-keys/<id:pk>/rotate/", dkim.dkim_key_rotate, name="dkim_key_rotate"),
    path("dkim-keys/<id:pk>/retire/", dkim.dkim_key_retire, name="dkim_key_retire"),
    path("dkim-selectors/<id:pk>/remove/", dkim.dkim_selector_remove, name="dkim_selector_remove"),
    path("domains/<id:pk>/delete/", domains.domain_delete, name="domain_delete"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("organisations/", members.organisation_list, name="organisation_list"),
    path("organisations/<slug:slug>/members/", members.member_add, name="member_add"),
    path("memberships/<id:pk>/remove/", members.member_remove, name="member_remove"),
    path(
        "invitations/<id:pk>/accept/",
        members.invitation_answer,
        {"answer": "accept"},
        name="invitation_accept",
    ),
    path(
        "invitations/<id:pk>/decline/",
        members.invitation_answer,
        {"answer": "decline"},
        name="invitation_decline",
    ),
    path(
        "invitations/<id:pk>/withdraw/",
        members.invitation_withdraw_view,
        name="invitation_withdraw",
    ),
    path("invite/<str:code>/", members.invitation_link, name="invitation_link"),
    path("tokens/", tokens.token_list, name="token_list"),
    path("tokens/<id:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
]
