"""The overview API, mounted under /api/v1/ by the core's API URLs."""

from __future__ import annotations

from django.urls import path

from dashboard.api.views import OverviewView

urlpatterns = [
    path("overview/", OverviewView.as_view(), name="overview"),
]
