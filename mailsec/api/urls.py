"""The versioned REST API: one router for every app's viewsets."""

from __future__ import annotations

from django.conf import settings
from django.urls import include, path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from dns_records.api.views import DomainViewSet
from mailsec.api.views import TaskRunViewSet

router = DefaultRouter(trailing_slash=True)
router.register("domains", DomainViewSet, basename="domain")
router.register("tasks", TaskRunViewSet, basename="task")

# Swagger UI sets inline style attributes; only its page may, and it still runs no inline script.
DOCS_CSP = {
    **settings.SECURE_CSP,
    "style-src": [*settings.SECURE_CSP["style-src"], CSP.UNSAFE_INLINE],
}
DOCS_VIEW = SpectacularSwaggerSplitView.as_view(url_name="api:schema")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", csp_override(DOCS_CSP)(DOCS_VIEW), name="docs"),
    path("", include(router.urls)),
]
