"""The read side of the reports API: reports with their records, the domain summary, TLS reports.

Everything is scoped to the caller's organisations: another organisation's report is a 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from dns_records import selectors as domain_selectors
from dns_records.models import Domain
from dns_records.names import InvalidDomainName, normalise_domain
from mailsec.api.pagination import BoundedPagination
from reports import selectors
from reports.api.serializers import (
    ReportSerializer,
    ReportWithRecordsSerializer,
    SummarySerializer,
    TlsReportDetailSerializer,
    TlsReportSerializer,
)
from reports.models import Report, TlsReport

DOMAIN_PARAM = OpenApiParameter("domain", str, description="Policy domain")
SINCE_PARAM = OpenApiParameter(
    "since", dt.date, description="Reports whose period ends on or after this day (YYYY-MM-DD)"
)
UNTIL_PARAM = OpenApiParameter(
    "until", dt.date, description="Reports whose period begins on or before this day"
)
RECORDS_LIMIT = 500
RECORDS_MAX_LIMIT = 1000


def _date_param(request: Request, name: str) -> dt.date | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise serializers.ValidationError({name: "Give a date as YYYY-MM-DD."}) from None


def _int_param(request: Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    value = request.query_params.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or len(value) > 9 or not minimum <= int(value) <= maximum:
        raise serializers.ValidationError(
            {name: f"Give a whole number from {minimum} to {maximum}."}
        )
    return int(value)


def _filters(request: Request) -> dict[str, Any]:
    return {
        "domain": request.query_params.get("domain", "")[:300],
        "since": _date_param(request, "since"),
        "until": _date_param(request, "until"),
    }


class ReportViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Report]):
    """DMARC aggregate reports of the caller's organisations, newest first."""

    serializer_class = ReportSerializer
    pagination_class = BoundedPagination
    queryset = Report.objects.none()  # rows come through the selectors only
    lookup_value_regex = r"[0-9]{1,18}"  # anything else is a 404 from the router

    def get_queryset(self) -> QuerySet[Report]:
        return selectors.reports_visible(self.request.user, **_filters(self.request))

    @extend_schema(parameters=[DOMAIN_PARAM, SINCE_PARAM, UNTIL_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter("records_offset", int, description="First record of the page"),
            OpenApiParameter(
                "records_limit", int, description=f"Records per page (at most {RECORDS_MAX_LIMIT})"
            ),
        ],
        responses={200: ReportWithRecordsSerializer},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        """The report and a page of its records, most messages first, with links to the rest."""
        report = selectors.report_visible(request.user, int(pk))
        if report is None:
            get_object_or_404(Report.objects.none())
        assert report is not None
        offset = _int_param(request, "records_offset", 0, minimum=0, maximum=10**9)
        limit = _int_param(
            request, "records_limit", RECORDS_LIMIT, minimum=1, maximum=RECORDS_MAX_LIMIT
        )
        records = selectors.report_records(report)
        total = records.count()

        def link(at: int) -> str:
            query = urlencode({"records_offset": at, "records_limit": limit})
            return request.build_absolute_uri(f"{request.path}?{query}")

        page = {
            "records": list(records[offset : offset + limit]),
            "records_count": total,
            "records_next": link(offset + limit) if offset + limit < total else None,
            "records_previous": link(max(offset - limit, 0)) if offset > 0 else None,
        }
        return Response(ReportWithRecordsSerializer(report, context=page).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("domain", str, required=True, description="The domain"),
            OpenApiParameter("days", int, description="Days back from today: 1 to 400 (30)"),
            OpenApiParameter(
                "organisation", str, description="Organisation slug, when a name is in several"
            ),
        ],
        responses={200: SummarySerializer},
    )
    @action(detail=False, methods=["get"])
    def summary(self, request: Request) -> Response:
        """Totals, messages by day and result, top sources with their classes, reporters, DKIM
        selectors, TLS sessions and the policy advisor for one domain, from the daily rollups."""
        domain = self._domain(request)
        days = _int_param(request, "days", 30, minimum=1, maximum=selectors.MAX_RANGE_DAYS)
        summary = selectors.domain_summary(domain.organisation, domain.name, days=days)
        return Response(SummarySerializer(summary).data)

    def _domain(self, request: Request) -> Domain:
        raw = request.query_params.get("domain", "").strip()
        if not raw:
            raise serializers.ValidationError({"domain": "Name the domain: ?domain=example.com"})
        try:
            name = normalise_domain(raw[:300])
        except InvalidDomainName:
            get_object_or_404(Domain.objects.none())
        queryset = domain_selectors.domains_visible(request.user).filter(name=name)
        slug = request.query_params.get("organisation", "")
        if slug:
            queryset = queryset.filter(organisation__slug=slug)
        matches = list(queryset[:2])
        if not matches:
            get_object_or_404(Domain.objects.none())
        if len(matches) > 1:
            raise serializers.ValidationError(
                {"organisation": "This domain is in several of your organisations: pass one."}
            )
        return matches[0]


class TlsReportViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[TlsReport]
):
    """SMTP TLS reports (RFC 8460) about mail sent to the caller's domains."""

    serializer_class = TlsReportSerializer
    pagination_class = BoundedPagination
    queryset = TlsReport.objects.none()
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[TlsReport]:
        return selectors.tls_reports_visible(self.request.user, **_filters(self.request))

    def get_serializer_class(self) -> type[serializers.BaseSerializer[TlsReport]]:
        return TlsReportDetailSerializer if self.action == "retrieve" else TlsReportSerializer

    def get_object(self) -> TlsReport:
        report = selectors.tls_report_visible(self.request.user, int(self.kwargs["pk"]))
        if report is None:
            get_object_or_404(TlsReport.objects.none())
        assert report is not None
        return report

    @extend_schema(parameters=[DOMAIN_PARAM, SINCE_PARAM, UNTIL_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)
