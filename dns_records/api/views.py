from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from dns_records import dkim_keys, selectors, services
from dns_records.api.serializers import (
    CheckEventSerializer,
    CheckResultSerializer,
    DkimKeyAcceptedSerializer,
    DkimKeyCreateSerializer,
    DkimKeySerializer,
    DkimSelectorSerializer,
    DnsUpdateSerializer,
    DomainCreateSerializer,
    DomainSerializer,
)
from dns_records.models import DkimKey, DkimSelector, Domain
from dns_records.names import InvalidDomainName, normalise_domain
from mailsec.api.serializers import TaskAcceptedSerializer
from mailsec.models import Organisation, TaskRun
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
        try:
            run = services.domain_check_request(domain=self.get_object(), actor=request.user)
        except services.CheckRateLimited as exc:
            # DRF's Throttled is a 429 with Retry-After; the error handler gives it the API's shape.
            raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
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

    @extend_schema(
        methods=["GET"], responses={200: DkimKeySerializer(many=True)}, description="The keys."
    )
    @extend_schema(
        methods=["POST"],
        request=DkimKeyCreateSerializer,
        responses={202: DkimKeyAcceptedSerializer},
        description="Reserve a selector and generate the key in the worker (RSA 2048 by default).",
    )
    @action(detail=True, methods=["get", "post"], url_path="dkim-keys")
    def dkim_keys(self, request: Request, name: str) -> Response:
        domain = self.get_object()
        if request.method == "GET":
            keys = selectors.dkim_keys_of(domain)
            return Response(DkimKeySerializer(keys, many=True).data)
        payload = DkimKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key, run = dkim_keys.dkim_key_create(
            domain=domain,
            algorithm=payload.validated_data["algorithm"],
            selector=payload.validated_data.get("selector", ""),
            bits=payload.validated_data.get("bits"),
            actor=request.user,
        )
        return Response(_accepted(key, run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(methods=["GET"], responses={200: DkimSelectorSerializer(many=True)})
    @extend_schema(
        methods=["POST"],
        request=DkimSelectorSerializer,
        responses={201: DkimSelectorSerializer},
        description="Watch a selector another sender uses (Google Workspace `google`, ...).",
    )
    @action(detail=True, methods=["get", "post"], url_path="dkim-selectors")
    def dkim_selectors(self, request: Request, name: str) -> Response:
        domain = self.get_object()
        if request.method == "GET":
            watched = selectors.dkim_selectors_of(domain)
            return Response(DkimSelectorSerializer(watched, many=True).data)
        payload = DkimSelectorSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        created = dkim_keys.dkim_selector_add(
            domain=domain,
            selector=payload.validated_data["selector"],
            note=payload.validated_data.get("note", ""),
            actor=request.user,
        )
        return Response(DkimSelectorSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses={200: DnsUpdateSerializer})
    @extend_schema(
        methods=["PUT"], request=DnsUpdateSerializer, responses={200: DnsUpdateSerializer}
    )
    @extend_schema(methods=["DELETE"], responses={204: None})
    @action(detail=True, methods=["get", "put", "delete"], url_path="dns-update")
    def dns_update(self, request: Request, name: str) -> Response:
        """The RFC 2136 server (with its TSIG key) mailsec publishes DKIM records through."""
        domain = self.get_object()
        if request.method == "DELETE":
            dkim_keys.dns_update_remove(domain=domain, actor=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        if request.method == "PUT":
            payload = DnsUpdateSerializer(data=request.data)
            payload.is_valid(raise_exception=True)
            data = payload.validated_data
            target = dkim_keys.dns_update_set(
                domain=domain, server=data["server"], zone=data["zone"],
                tsig_name=data["tsig_name"], tsig_algorithm=data["tsig_algorithm"],
                tsig_secret=data["tsig_secret"], actor=request.user,
            )  # fmt: skip
            return Response(DnsUpdateSerializer(target).data)
        found = selectors.dns_update_of(domain)
        if found is None:
            get_object_or_404(Domain.objects.none())
        return Response(DnsUpdateSerializer(found).data)


def _accepted(key: DkimKey, run: TaskRun) -> dict[str, object]:
    return {
        "key": DkimKeySerializer(key).data,
        "task_id": str(run.id),
        "url": f"/api/v1/tasks/{run.id}/",
    }


class DkimKeyViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet[DkimKey]):
    """A DKIM key of one of the caller's domains; rotate or retire it."""

    serializer_class = DkimKeySerializer
    queryset = DkimKey.objects.none()  # objects come through get_object's selector only
    lookup_value_regex = r"[0-9]{1,18}"  # anything else is a 404 from the router

    def get_object(self) -> DkimKey:
        key = selectors.dkim_key_visible(self.request.user, int(self.kwargs["pk"]))
        if key is None:
            get_object_or_404(DkimKey.objects.none())
        assert key is not None
        return key

    @extend_schema(request=None, responses={202: DkimKeyAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str) -> Response:
        """Create the successor; it becomes active once its record is published, and this key
        then retires after the grace period."""
        successor, run = dkim_keys.dkim_key_rotate(key=self.get_object(), actor=request.user)
        return Response(_accepted(successor, run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: DkimKeySerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str) -> Response:
        key = dkim_keys.dkim_key_retire(key=self.get_object(), actor=request.user)
        return Response(DkimKeySerializer(key).data)


class DkimSelectorViewSet(mixins.DestroyModelMixin, viewsets.GenericViewSet[DkimSelector]):
    """Stop watching another sender's selector."""

    serializer_class = DkimSelectorSerializer
    queryset = DkimSelector.objects.none()  # objects come through get_object's selector only
    lookup_value_regex = r"[0-9]{1,18}"  # anything else is a 404 from the router

    def get_object(self) -> DkimSelector:
        watched = selectors.dkim_selector_visible(self.request.user, int(self.kwargs["pk"]))
        if watched is None:
            get_object_or_404(DkimSelector.objects.none())
        assert watched is not None
        return watched

    def perform_destroy(self, instance: DkimSelector) -> None:
        dkim_keys.dkim_selector_remove(watched=instance, actor=self.request.user)
