"""The versioned REST API: the schema, the docs, the core's task runs, and each app's own URLs.

Each capability app has its `api/urls.py`, included here by name: the core never imports an
app's viewsets.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import include, path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from mailsec.api.views import TaskRunViewSet

router = SimpleRouter(trailing_slash=True)
router.register("tasks", TaskRunViewSet, basename="task")
# The capability apps' APIs, bottom-up as in the design's app map.
APP_URLS = [
    "dns_records.api.urls",
    "reports.api.urls",
    "hosts.api.urls",
    "blocklists.api.urls",
    "alerts.api.urls",
    "dashboard.api.urls",
]

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
    *(path("", include(module)) for module in APP_URLS),
]
