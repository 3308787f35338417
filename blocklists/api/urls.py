"""The blocklists API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from blocklists.api.views import BlacklistEntryViewSet, BlacklistViewSet, BlocklistZoneViewSet

router = SimpleRouter(trailing_slash=True)
router.register("blacklists", BlacklistViewSet, basename="blacklist")
router.register("blacklist-entries", BlacklistEntryViewSet, basename="blacklist-entry")
router.register("blocklist-zones", BlocklistZoneViewSet, basename="blocklist-zone")

urlpatterns = router.urls
