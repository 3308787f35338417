from __future__ import annotations

from typing import Any

from rest_framework import serializers

from blocklists.models import (
    KIND_CHOICES,
    BlacklistEntry,
    BlocklistZone,
    Listing,
    ListingEvent,
)
from blocklists.zones import ZoneKind, zone_info
from mailsec.models import Organisation

KINDS = KIND_CHOICES


class ListingSerializer(serializers.ModelSerializer[Listing]):
    """One target on one blocklist: `status` is listed, clean or error (never known yet);
    `stale` means the latest poll failed (`error` says why) and `status` is the last known."""

    organisation = serializers.CharField(source="target.organisation.slug", read_only=True)
    target = serializers.CharField(source="target.value", read_only=True)
    kind = serializers.ChoiceField(source="target.kind", choices=KINDS, read_only=True)
    sources = serializers.ListField(
        source="target.sources", child=serializers.CharField(), read_only=True
    )
    delist_url = serializers.SerializerMethodField()

    class Meta:
        model = Listing
        fields = [
            "organisation", "target", "kind", "sources", "zone", "status", "code", "meaning",
            "reason", "stale", "error", "checked_at", "known_at", "changed_at", "delist_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_delist_url(self, obj: Listing) -> str:
        if obj.status != "listed":
            return ""
        return zone_info(obj.zone, ZoneKind(obj.target.kind)).delisting(obj.target.value)


class ListingEventSerializer(serializers.ModelSerializer[ListingEvent]):
    target = serializers.CharField(source="target.value", read_only=True)

    class Meta:
        model = ListingEvent
        fields = ["target", "zone", "previous_status", "status", "code", "reason", "created_at"]
        read_only_fields = fields


class OrganisationChoice(serializers.Serializer[Any]):
    organisation = serializers.SlugField(
        required=False, help_text="Slug of the organisation; needed when you belong to several"
    )


class BlacklistEntrySerializer(serializers.ModelSerializer[BlacklistEntry]):
    """A network the organisation's mail servers refuse; gone once `expires_at` passes."""

    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = BlacklistEntry
        fields = [
            "id",
            "organisation",
            "network",
            "reason",
            "expires_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "organisation", "created_by", "created_at"]
        # Uniqueness is the service's to check (per organisation), with a clear message.
        validators: list[Any] = []


class BlacklistEntryCreateSerializer(OrganisationChoice):
    network = serializers.CharField(max_length=100)
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class BlocklistZoneSerializer(serializers.ModelSerializer[BlocklistZone]):
    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    delist_url = serializers.SerializerMethodField()

    class Meta:
        model = BlocklistZone
        fields = ["id", "organisation", "name", "kind", "enabled", "delist_url"]
        read_only_fields = ["id", "organisation", "name", "kind", "delist_url"]

    def get_delist_url(self, obj: BlocklistZone) -> str:
        return zone_info(obj.name, ZoneKind(obj.kind)).delist_url


class BlocklistZoneCreateSerializer(OrganisationChoice):
    name = serializers.CharField(max_length=253)
    kind = serializers.ChoiceField(choices=KINDS)


class CidrMapSerializer(serializers.Serializer[Any]):
    organisation = serializers.CharField()
    map = serializers.CharField(help_text="The Postfix cidr: access map")
