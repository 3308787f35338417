"""The versioned REST API: one router for every app's viewsets."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from dns_records.api.views import DomainViewSet
from mailsec.api.views import TaskRunViewSet

router = DefaultRouter(trailing_slash=True)
router.register("domains", DomainViewSet, basename="domain")
router.register("tasks", TaskRunViewSet, basename="task")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("", include(router.urls)),
]
