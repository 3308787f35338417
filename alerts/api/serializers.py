from __future__ import annotations

from typing import Any

from rest_framework import serializers

from alerts.models import AlertRule, AlertState, Channel, ChannelKind, MinStatus
from alerts.services import EVENT_KINDS


class ChannelSerializer(serializers.ModelSerializer[Channel]):
    organisation = serializers.CharField(source="organisation.slug", read_only=True)
    enabled = serializers.BooleanField(read_only=True)
    target = serializers.CharField(
        source="target_display", read_only=True,
        help_text="A URL's path and query are hidden: they often are the credential",
    )  # fmt: skip

    class Meta:
        model = Channel
        fields = [
            "id", "organisation", "kind", "name", "target", "enabled", "created_at",
            "last_delivery_at", "last_error", "last_error_at", "consecutive_failures",
            "disabled_at",
        ]  # fmt: skip
        read_only_fields = fields


class ChannelCreateSerializer(serializers.Serializer[Any]):
    organisation = serializers.SlugField(required=False)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    name = serializers.CharField(max_length=100)
    target = serializers.CharField(max_length=500)


class ChannelCreatedSerializer(ChannelSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Webhooks: the HMAC key, shown only in this answer"
    )

    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class TestQueuedSerializer(serializers.Serializer[Any]):
    notification = serializers.IntegerField()
    state = serializers.CharField()


class AlertRuleSerializer(serializers.ModelSerializer[AlertRule]):
    organisation = serializers.CharField(source="organisation.slug", read_only=True)
    channels: serializers.PrimaryKeyRelatedField[Channel] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )

    class Meta:
        model = AlertRule
        fields = ["id", "organisation", "channels", "min_status", "events", "domains", "hosts",
                  "created_at"]  # fmt: skip
        read_only_fields = fields


class AlertRuleCreateSerializer(serializers.Serializer[Any]):
    organisation = serializers.SlugField(required=False)
    channels = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=50)
    min_status = serializers.ChoiceField(choices=MinStatus.choices)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_KINDS), required=False, default=list
    )
    domains = serializers.ListField(
        child=serializers.CharField(max_length=253), required=False, default=list, max_length=500
    )
    hosts = serializers.ListField(
        child=serializers.CharField(max_length=253), required=False, default=list, max_length=500
    )


class AlertStateSerializer(serializers.ModelSerializer[AlertState]):
    organisation = serializers.CharField(source="organisation.slug", read_only=True)

    class Meta:
        model = AlertState
        fields = [
            "id", "organisation", "key", "event", "domain", "host", "status", "summary",
            "since", "notified_status", "acknowledged_at", "snoozed_until", "flapping_notified",
        ]  # fmt: skip
        read_only_fields = fields


class SnoozeSerializer(serializers.Serializer[Any]):
    until = serializers.DateTimeField(required=False)
    minutes = serializers.IntegerField(min_value=1, max_value=90 * 24 * 60, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("until" in attrs) == ("minutes" in attrs):
            raise serializers.ValidationError("Give either until or minutes.")
        return attrs
