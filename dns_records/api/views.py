from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from dns_records import selectors, services
from dns_records.api.serializers import (
    CheckEventSerializer,
    CheckResultSerializer,
    DomainCreateSerializer,
    DomainSerializer,
)
from dns_records.models import Domain
from dns_records.names import InvalidDomainName, normalise_domain
from mailsec.api.serializers import TaskAcceptedSerializer
from mailsec.models import Organisation
from mailsec.selectors import organisations_visible

ORGANISATION_PARAM = OpenApiParameter(
    "organisation", str, description="Organisation slug, when a name exists in several"
)
STATUS_PARAM = OpenApiParameter(
    "status", str, enum=["ok", "warning", "fail", "error", "unchecked"], description="Worst status"
)
SEARCH_PARAM = OpenApiParameter("search", str, description="Part of the domain name")


class DomainViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Domain],
):
    """Domains of the caller's organisations, addressed by name."""

    serializer_class = DomainSerializer
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"

    def get_queryset(self) -> QuerySet[Domain]:
        params = self.request.query_params
        queryset = selectors.domains_visible(
            self.request.user, search=params.get("search", ""), status=params.get("status", "")
        )
        slug = self.request.query_params.get("organisation")
        if slug:
            queryset = queryset.filter(organisation__slug=slug)
        return queryset

    def get_object(self) -> Domain:
        try:
            name = normalise_domain(self.kwargs["name"])
        except InvalidDomainName:
            name = self.kwargs["name"]
        matches = list(self.get_queryset().filter(name=name)[:2])
        if not matches:
            get_object_or_404(Domain.objects.none())
        if len(matches) > 1:
            raise serializers.ValidationError(
                {"organisation": "This name is in several of your organisations: pass one."}
            )
        return matches[0]

    @extend_schema(parameters=[ORGANISATION_PARAM, STATUS_PARAM, SEARCH_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=DomainCreateSerializer, responses={201: DomainSerializer})
    def create(self, request: Request) -> Response:
        payload = DomainCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        organisation = self._organisation_for_create(payload.validated_data.get("organisation"))
        domain = services.domain_create(
            organisation=organisation, name=payload.validated_data["name"], actor=request.user
        )
        created = selectors.domains_visible(request.user).get(pk=domain.pk)
        return Response(DomainSerializer(created).data, status=status.HTTP_201_CREATED)

    def _organisation_for_create(self, slug: str | None) -> Organisation:
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

    def perform_destroy(self, instance: Domain) -> None:
        services.domain_delete(domain=instance, actor=self.request.user)

    @extend_schema(request=None, responses={202: TaskAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def check(self, request: Request, name: str) -> Response:
        run = services.domain_check_request(domain=self.get_object(), actor=request.user)
        return Response(TaskAcceptedSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: CheckResultSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def checks(self, request: Request, name: str) -> Response:
        results = selectors.current_checks(self.get_object())
        return Response(CheckResultSerializer(results, many=True).data)

    @extend_schema(responses={200: CheckEventSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def events(self, request: Request, name: str) -> Response:
        """Status changes of the domain's checks, newest first (the last 50)."""
        events = selectors.check_events(self.get_object())
        return Response(CheckEventSerializer(events, many=True).data)
