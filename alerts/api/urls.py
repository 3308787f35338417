"""The alerts API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from alerts.api.views import AlertRuleViewSet, AlertStateViewSet, ChannelViewSet

router = SimpleRouter(trailing_slash=True)
router.register("channels", ChannelViewSet, basename="channel")
router.register("alert-rules", AlertRuleViewSet, basename="alert-rule")
router.register("alerts", AlertStateViewSet, basename="alert")

urlpatterns = router.urls
