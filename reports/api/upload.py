"""POST /api/v1/reports/: upload a report file or a whole e-mail, parsed in the request.

    curl -H "Authorization: Token $TOKEN" -F file=@google.com!example.com!1700000000!1700086399.xml.gz \
         https://mailsec.example/api/v1/reports/

The file (xml, xml.gz, zip, json, json.gz or .eml; recognised by content, not by name) is stored
as a raw message of the caller's organisation, then parsed and stored before the answer, so a
script learns at once what became of it:

- 201 `{"file", "status": "stored", "reason", "detail", "report": {...}, "reports": [...],
  "raw_message"}`: a new report (`report` as in the list, with its id);
- 200, the same shape with `"status": "duplicate"`: this report was stored before (`report` is
  the copy already stored);
- 422 in the error shape, code `rejected`, `details` holding `reason`, `detail` and the raw
  message's id: not a report mailsec can store; it is kept in the quarantine;
- 413 over MAILSEC_REPORT_MAX_MESSAGE_BYTES (nothing stored).

Admins and owners upload (a write-scope token); with several organisations, `?organisation=`
(or an `organisation` form field) names one. The message is committed before it is parsed: a
parse cut short (a proxy's timeout) is finished by the worker, and the report appears in the list.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from mailsec.api.errors import error_body
from mailsec.models import Organisation
from mailsec.selectors import organisations_visible
from reports.models import Report
from reports.services import QUARANTINE_REASONS, OutcomeStatus, report_upload


class ReportUploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(
        allow_empty_file=True, help_text="The report file or the whole e-mail (.eml)"
    )
    organisation = serializers.SlugField(
        required=False, help_text="Organisation slug, when you are in several"
    )


class UploadedReportSerializer(serializers.Serializer[Any]):
    """What became of an uploaded file (the shape `ingest_report --json` prints per file)."""

    file = serializers.CharField()
    status = serializers.CharField(help_text="stored (a new report) or duplicate (stored before)")
    reason = serializers.CharField(help_text='"unmatched" when no organisation has the domain')
    detail = serializers.CharField()
    report = serializers.DictField(allow_null=True)
    reports = serializers.ListField(child=serializers.DictField())
    raw_message = serializers.UUIDField()


class ReportUploadViewSet(viewsets.GenericViewSet[Report]):
    """Upload a DMARC aggregate or TLS report; the read side's viewset adds list and retrieve."""

    queryset = Report.objects.none()
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="reports_upload",
        request={"multipart/form-data": ReportUploadSerializer},
        parameters=[OpenApiParameter("organisation", str, description="Organisation slug")],
        responses={
            201: UploadedReportSerializer,
            200: UploadedReportSerializer,
            413: OpenApiResponse(description="Larger than the size limit; nothing stored"),
            422: OpenApiResponse(description="Not a storable report; kept in the quarantine"),
        },
    )
    def create(self, request: Request) -> Response:
        payload = ReportUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        upload = payload.validated_data["file"]
        limit = settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES
        if upload.size > limit:
            body = error_body(
                "too_large", "The file is larger than the size limit.", {"max_bytes": limit}
            )
            return Response(body, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        slug = payload.validated_data.get("organisation") or request.query_params.get(
            "organisation", ""
        )
        organisation = self._organisation(slug)
        content = b"".join(upload.chunks())
        message, outcome = report_upload(
            organisation=organisation, content=content, filename=upload.name, actor=request.user
        )
        result = {"file": message.filename, **outcome.as_dict(), "raw_message": str(message.uid)}
        if outcome.status == OutcomeStatus.REJECTED:
            message_text = QUARANTINE_REASONS.get(outcome.reason, "Not a report mailsec can store")
            body = error_body(
                "rejected", f"{message_text}. The file is kept in the quarantine.", result
            )
            return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        code = (
            status.HTTP_201_CREATED
            if outcome.status == OutcomeStatus.STORED
            else status.HTTP_200_OK
        )
        return Response(result, status=code)

    def _organisation(self, slug: str) -> Organisation:
        """The named organisation of the caller's, or their only one (as domains/ does)."""
        visible = organisations_visible(self.request.user)
        if slug:
            organisation = visible.filter(slug=slug).first()
            if organisation is None:
                raise serializers.ValidationError({"organisation": "No such organisation."})
            return organisation
        candidates = list(visible[:2])
        if not candidates:
            raise serializers.ValidationError({"organisation": "You belong to no organisation."})
        if len(candidates) > 1:
            raise serializers.ValidationError(
                {"organisation": "You belong to several organisations: name one."}
            )
        return candidates[0]
