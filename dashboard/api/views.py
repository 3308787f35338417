"""`GET /api/v1/overview/`: the thirteen-control scorecard of each of the caller's organisations."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.api.serializers import OverviewSerializer
from dashboard.overview import scorecard_json, scorecards


class OverviewView(APIView):
    """Read-only: any member (and any token scope) may read its organisations' scorecards."""

    @extend_schema(
        operation_id="overview_retrieve",
        parameters=[
            OpenApiParameter("organisation", str, description="Only this organisation (slug)")
        ],
        responses={200: OverviewSerializer},
    )
    def get(self, request: Request) -> Response:
        slug = request.query_params.get("organisation", "")
        cards = scorecards(request.user, slug=slug)
        if slug and not cards:
            raise exceptions.NotFound("No such organisation.")
        return Response({"organisations": [scorecard_json(card) for card in cards]})
