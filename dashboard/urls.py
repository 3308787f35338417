from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.domain_list, name="home"),
    path("domains/", views.domain_list, name="domain_list"),
    path("domains/add/", views.domain_add, name="domain_add"),
    path("domains/<int:pk>/", views.domain_detail, name="domain_detail"),
    path("domains/<int:pk>/row/", views.domain_row, name="domain_row"),
    path("domains/<int:pk>/checks/", views.domain_checks, name="domain_checks"),
    path("domains/<int:pk>/check/", views.domain_check, name="domain_check"),
    path("domains/<int:pk>/delete/", views.domain_delete, name="domain_delete"),
    path("audit/", views.audit_log, name="audit_log"),
    path("organisations/", views.organisation_list, name="organisation_list"),
    path("organisations/<slug:slug>/members/", views.member_add, name="member_add"),
    path("memberships/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("tokens/", views.token_list, name="token_list"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
]
