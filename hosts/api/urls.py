"""The managed-hosts API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from hosts.api.views import HostViewSet, PolicyViewSet, domain_mx_probe, domain_mx_probes

router = SimpleRouter(trailing_slash=True)
router.register("hosts", HostViewSet, basename="host")
router.register("policies", PolicyViewSet, basename="policy")

urlpatterns = [
    *router.urls,
    path("domains/<str:name>/mx-probe/", domain_mx_probe, name="domain-mx-probe"),
    path("domains/<str:name>/mx-probes/", domain_mx_probes, name="domain-mx-probes"),
]
