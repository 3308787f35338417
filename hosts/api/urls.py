"""The managed-hosts API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

router = SimpleRouter(trailing_slash=True)

urlpatterns = router.urls
