"""Top-level URLs: the htmx UI, the REST API under /api/v1/, login and health probes."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from mailsec.auth import PasswordChangeView
from mailsec.health import healthz, readyz

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/v1/", include(("mailsec.api.urls", "api"), namespace="api")),
    path("", include("dashboard.urls")),
]

handler404 = "dashboard.views.errors.not_found"
handler500 = "dashboard.views.errors.server_error"
