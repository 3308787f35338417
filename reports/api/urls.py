"""The reports API, mounted under /api/v1/ by the core's API URLs.

`reports/` is one route for two sides: POST uploads a file (reports.api.upload), GET lists and
reads reports (the read side, reports.api.views). The viewset registered there is the read side's
with the upload's `create` added, so both share the route, its permissions and the schema.
"""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from reports.api.upload import ReportUploadViewSet

router = SimpleRouter(trailing_slash=True)

try:
    from reports.api import views
except ModuleNotFoundError as missing:  # the read side is not installed: upload only
    if missing.name != "reports.api.views":
        raise
    router.register("reports", ReportUploadViewSet, basename="report")
else:

    class ReportViewSet(ReportUploadViewSet, views.ReportViewSet):
        """DMARC aggregate reports of the caller's organisations: list, read, upload."""

    router.register("reports", ReportViewSet, basename="report")
    router.register("tls-reports", views.TlsReportViewSet, basename="tls-report")

urlpatterns = router.urls
