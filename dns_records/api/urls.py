"""The domains and DKIM API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from dns_records.api.views import DkimKeyViewSet, DkimSelectorViewSet, DomainViewSet

router = SimpleRouter(trailing_slash=True)
router.register("domains", DomainViewSet, basename="domain")
router.register("dkim-keys", DkimKeyViewSet, basename="dkim-key")
router.register("dkim-selectors", DkimSelectorViewSet, basename="dkim-selector")

urlpatterns = router.urls
