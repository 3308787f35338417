"""The alerts API: channels, alert rules, and the current alert states."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alerts import selectors, services
from alerts.api.serializers import (
    AlertRuleCreateSerializer,
    AlertRuleSerializer,
    AlertStateSerializer,
    ChannelCreatedSerializer,
    ChannelCreateSerializer,
    ChannelSerializer,
    SnoozeSerializer,
    TestQueuedSerializer,
)
from alerts.models import AlertRule, AlertState, Channel
from mailsec.models import Organisation
from mailsec.selectors import organisations_visible

ORGANISATION_PARAM = OpenApiParameter("organisation", str, description="Organisation slug")


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


def _by_organisation(request: Request, queryset: QuerySet) -> QuerySet:  # type: ignore[type-arg]
    slug = request.query_params.get("organisation")
    return queryset.filter(organisation__slug=slug) if slug else queryset


class ChannelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Channel],
):
    """Where alerts go: email, signed webhook, Slack, Teams workflow, ntfy."""

    serializer_class = ChannelSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[Channel]:
        return _by_organisation(self.request, selectors.channels_visible(self.request.user))

    @extend_schema(parameters=[ORGANISATION_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ChannelCreateSerializer, responses={201: ChannelCreatedSerializer})
    def create(self, request: Request) -> Response:
        payload = ChannelCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        channel, secret = services.channel_create(
            organisation=organisation_for(request, data.get("organisation")),
            kind=data["kind"], name=data["name"], target=data["target"], actor=request.user,
        )  # fmt: skip
        body = ChannelSerializer(channel).data
        if secret:
            body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Channel) -> None:
        services.channel_delete(channel=instance, actor=self.request.user)

    @extend_schema(request=None, responses={202: TestQueuedSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        """Send a test message through the channel, in the worker."""
        channel = get_object_or_404(self.get_queryset(), pk=int(pk))
        notification = services.channel_test(channel=channel, actor=request.user)
        return Response(
            {"notification": notification.pk, "state": notification.state},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=None, responses={200: ChannelSerializer})
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        """Re-enable a channel disabled after repeated failures."""
        channel = get_object_or_404(self.get_queryset(), pk=int(pk))
        channel = services.channel_enable(channel=channel, actor=request.user)
        return Response(ChannelSerializer(channel).data)


class AlertRuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[AlertRule],
):
    """Which changes (events, minimum status, domains, hosts) go to which channels. With no rule
    at all, fail and listed go to the owners' email."""

    serializer_class = AlertRuleSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[AlertRule]:
        return _by_organisation(self.request, selectors.rules_visible(self.request.user))

    @extend_schema(parameters=[ORGANISATION_PARAM])
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=AlertRuleCreateSerializer, responses={201: AlertRuleSerializer})
    def create(self, request: Request) -> Response:
        payload = AlertRuleCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        rule = services.rule_create(
            organisation=organisation_for(request, data.get("organisation")),
            channels=data["channels"], min_status=data["min_status"], events=data["events"],
            domains=data["domains"], hosts=data["hosts"], actor=request.user,
        )  # fmt: skip
        return Response(AlertRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: AlertRule) -> None:
        services.rule_delete(rule=instance, actor=self.request.user)


class AlertStateViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[AlertState]
):
    """Every subject alerts follow, with its status; acknowledge or snooze a problem."""

    serializer_class = AlertStateSerializer
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[AlertState]:
        queryset = _by_organisation(self.request, selectors.states_visible(self.request.user))
        wanted = self.request.query_params.get("status")
        if wanted in {"ok", "warning", "fail", "error"}:
            queryset = queryset.filter(status=wanted)
        return queryset

    @extend_schema(
        parameters=[ORGANISATION_PARAM, OpenApiParameter("status", str)],
    )
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: AlertStateSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str) -> Response:
        """Silence this problem until it recovers (the recovery is still told)."""
        state = get_object_or_404(self.get_queryset(), pk=int(pk))
        state = services.state_acknowledge(state=state, actor=request.user)
        return Response(AlertStateSerializer(state).data)

    @extend_schema(request=SnoozeSerializer, responses={200: AlertStateSerializer})
    @action(detail=True, methods=["post"])
    def snooze(self, request: Request, pk: str) -> Response:
        """Silence this subject until `until` (or for `minutes`)."""
        state = get_object_or_404(self.get_queryset(), pk=int(pk))
        payload = SnoozeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        until = data.get("until") or timezone.now() + timedelta(minutes=data["minutes"])
        state = services.state_snooze(state=state, until=until, actor=request.user)
        return Response(AlertStateSerializer(state).data)
