"""The managed-hosts API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from hosts.api.views import HostViewSet, PolicyViewSet

router = SimpleRouter(trailing_slash=True)
router.register("hosts", HostViewSet, basename="host")
router.register("policies", PolicyViewSet, basename="policy")

urlpatterns = router.urls
