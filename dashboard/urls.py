from django.urls import path

from dashboard.views import audit, dkim, domains, members, tokens

app_name = "dashboard"

urlpatterns = [
    path("", domains.domain_list, name="home"),
    path("domains/", domains.domain_list, name="domain_list"),
    path("domains/add/", domains.domain_add, name="domain_add"),
    path("domains/<int:pk>/", domains.domain_detail, name="domain_detail"),
    path("domains/<int:pk>/row/", domains.domain_row, name="domain_row"),
    path("domains/<int:pk>/checks/", domains.domain_checks, name="domain_checks"),
    path("domains/<int:pk>/check/", domains.domain_check, name="domain_check"),
    path("domains/<int:pk>/dkim/", dkim.dkim_panel, name="dkim_panel"),
    path("domains/<int:pk>/dkim/keys/", dkim.dkim_key_add, name="dkim_key_add"),
    path("domains/<int:pk>/dkim/selectors/", dkim.dkim_selector_add, name="dkim_selector_add"),
    path("domains/<int:pk>/dkim/rotation/", dkim.dkim_rotation, name="dkim_rotation"),
    path("domains/<int:pk>/dkim/dns-update/", dkim.dns_update_set, name="dns_update_set"),
    path("dkim-keys/<int:pk>/rotate/", dkim.dkim_key_rotate, name="dkim_key_rotate"),
    path("dkim-keys/<int:pk>/retire/", dkim.dkim_key_retire, name="dkim_key_retire"),
    path("dkim-selectors/<int:pk>/remove/", dkim.dkim_selector_remove, name="dkim_selector_remove"),
    path("domains/<int:pk>/delete/", domains.domain_delete, name="domain_delete"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("organisations/", members.organisation_list, name="organisation_list"),
    path("organisations/<slug:slug>/members/", members.member_add, name="member_add"),
    path("memberships/<int:pk>/remove/", members.member_remove, name="member_remove"),
    path(
        "invitations/<int:pk>/accept/",
        members.invitation_answer,
        {"answer": "accept"},
        name="invitation_accept",
    ),
    path(
        "invitations/<int:pk>/decline/",
        members.invitation_answer,
        {"answer": "decline"},
        name="invitation_decline",
    ),
    path(
        "invitations/<int:pk>/withdraw/",
        members.invitation_withdraw_view,
        name="invitation_withdraw",
    ),
    path("invite/<str:code>/", members.invitation_link, name="invitation_link"),
    path("tokens/", tokens.token_list, name="token_list"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
]
