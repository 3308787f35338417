"""The reports API, mounted under /api/v1/ by the core's API URLs.

`reports/` is one route for two sides: GET lists and reads reports (reports.api.views), POST
uploads a file (reports.api.upload). The viewset registered there is the read side's with the
upload's `create` added, so both share the route, its permissions and the schema.
"""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from reports.api import views
from reports.api.mailboxes import ImapMailboxViewSet
from reports.api.upload import ReportUploadViewSet


class ReportViewSet(ReportUploadViewSet, views.ReportViewSet):
    """DMARC aggregate reports of the caller's organisations: list, read, upload."""


router = SimpleRouter(trailing_slash=True)
router.register("reports", ReportViewSet, basename="report")
router.register("tls-reports", views.TlsReportViewSet, basename="tls-report")
router.register("imap-mailboxes", ImapMailboxViewSet, basename="imap-mailbox")

urlpatterns = router.urls
