from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from blocklists import selectors, services
from blocklists.api.serializers import (
    BlacklistEntryCreateSerializer,
    BlacklistEntrySerializer,
    BlocklistZoneCreateSerializer,
    BlocklistZoneSerializer,
    CidrMapSerializer,
    ListingEventSerializer,
    ListingSerializer,
    OrganisationChoice,
)
from blocklists.models import BlacklistEntry, BlocklistZone, Listing
from mailsec.api.serializers import TaskAcceptedSerializer
from mailsec.models import Organisation
from mailsec.selectors import organisations_visible

ORGANISATION_PARAM = OpenApiParameter("organisation", str, description="Organisation slug")
STATUS_PARAM = OpenApiParameter("status", str, enum=["listed", "clean", "error"])


def organisation_for(request: Request, slug: str | None) -> Organisation:
    """The organisation named, or the caller's only one."""
    visible = organisations_visible(request.user)
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


class BlacklistViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Listing]):
    """Status of every polled address and domain on every blocklist, per organisation."""

    serializer_class = ListingSerializer

    def get_queryset(self) -> QuerySet[Listing]:
        queryset = selectors.listings_visible(self.request.user)
        params = self.request.query_params
        if params.get("organisation"):
            queryset = queryset.filter(target__organisation__slug=params["organisation"])
        if params.get("status") in {"listed", "clean", "error"}:
            queryset = queryset.filter(status=params["status"])
        return queryset

    @extend_schema(parameters=[ORGANISATION_PARAM, STATUS_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=OrganisationChoice, responses={202: TaskAcceptedSerializer})
    @action(detail=False, methods=["post"])
    def poll(self, request: Request) -> Response:
        """Poll the organisation's addresses and domains now, in the worker."""
        payload = OrganisationChoice(data=request.data)
        payload.is_valid(raise_exception=True)
        organisation = organisation_for(request, payload.validated_data.get("organisation"))
        try:
            run = services.poll_request(organisation=organisation, actor=request.user)
        except services.PollRateLimited as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
        return Response(TaskAcceptedSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[ORGANISATION_PARAM], responses={200: ListingEventSerializer(many=True)}
    )
    @action(detail=False, methods=["get"])
    def events(self, request: Request) -> Response:
        """Listed <-> clean changes, newest first (the last 100)."""
        queryset = selectors.events_visible(request.user)
        slug = request.query_params.get("organisation")
        if slug:
            queryset = queryset.filter(organisation__slug=slug)
        return Response(ListingEventSerializer(queryset[:100], many=True).data)

    @extend_schema(parameters=[ORGANISATION_PARAM], responses={200: CidrMapSerializer})
    @action(detail=False, methods=["get"], url_path="cidr-map")
    def cidr_map(self, request: Request) -> Response:
        """The local IP blacklist as the Postfix `cidr:` access map the hosts get."""
        organisation = organisation_for(request, request.query_params.get("organisation"))
        text = services.cidr_map_of(organisation)
        return Response({"organisation": organisation.slug, "map": text})


class BlacklistEntryViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[BlacklistEntry],
):
    """The local IP blacklist (v4 and v6 addresses and networks, a reason, an optional expiry)."""

    serializer_class = BlacklistEntrySerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[BlacklistEntry]:
        queryset = selectors.entries_visible(self.request.user)
        slug = self.request.query_params.get("organisation")
        if slug:
            queryset = queryset.filter(organisation__slug=slug)
        return queryset

    @extend_schema(parameters=[ORGANISATION_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=BlacklistEntryCreateSerializer, responses={201: BlacklistEntrySerializer}
    )
    def create(self, request: Request) -> Response:
        payload = BlacklistEntryCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        entry = services.blacklist_entry_add(
            organisation=organisation_for(request, data.get("organisation")),
            network=data["network"], reason=data["reason"], expires_at=data["expires_at"],
            actor=request.user,
        )  # fmt: skip
        return Response(BlacklistEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: BlacklistEntry) -> None:
        services.blacklist_entry_remove(entry=instance, actor=self.request.user)


class BlocklistZoneViewSet(
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[BlocklistZone],
):
    """The blocklists each organisation polls; `PATCH {"enabled": false}` pauses one."""

    serializer_class = BlocklistZoneSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[BlocklistZone]:
        queryset = BlocklistZone.objects.filter(
            organisation__in=organisations_visible(self.request.user)
        ).select_related("organisation")
        slug = self.request.query_params.get("organisation")
        if slug:
            queryset = queryset.filter(organisation__slug=slug)
        return queryset.order_by("organisation__name", "kind", "name")

    @extend_schema(parameters=[ORGANISATION_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        for organisation in organisations_visible(request.user):
            services.zones_ensure(organisation)
        return super().list(request, *args, **kwargs)

    @extend_schema(request=BlocklistZoneCreateSerializer, responses={201: BlocklistZoneSerializer})
    def create(self, request: Request) -> Response:
        payload = BlocklistZoneCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        zone = services.zone_add(
            organisation=organisation_for(request, data.get("organisation")),
            name=data["name"], kind=data["kind"], actor=request.user,
        )  # fmt: skip
        return Response(BlocklistZoneSerializer(zone).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=BlocklistZoneSerializer, responses={200: BlocklistZoneSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        zone = get_object_or_404(self.get_queryset(), pk=int(pk))
        payload = BlocklistZoneSerializer(zone, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        if "enabled" in payload.validated_data:
            zone = services.zone_set_enabled(
                zone=zone, enabled=payload.validated_data["enabled"], actor=request.user
            )
        return Response(BlocklistZoneSerializer(zone).data)

    def perform_destroy(self, instance: BlocklistZone) -> None:
        services.zone_remove(zone=instance, actor=self.request.user)
