"""The domains API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from dns_records.api.views import DomainViewSet

router = SimpleRouter(trailing_slash=True)
router.register("domains", DomainViewSet, basename="domain")

urlpatterns = router.urls
