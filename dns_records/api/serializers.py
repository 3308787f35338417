from __future__ import annotations

import base64
import binascii
from typing import Any

from rest_framework import serializers

from dns_records.checks import check_names
from dns_records.models import (
    CheckEvent,
    CheckState,
    DkimKey,
    DkimKeyState,
    DkimSelector,
    DnsUpdateTarget,
    Domain,
)
from mailsec.models import Organisation


class DomainSerializer(serializers.ModelSerializer[Domain]):
    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    display_name = serializers.CharField(read_only=True)
    status = serializers.SerializerMethodField(help_text="Worst current check status, or null")
    check_pending = serializers.SerializerMethodField()

    class Meta:
        model = Domain
        fields = ["name", "display_name", "organisation", "created_at", "status", "check_pending"]
        read_only_fields = fields

    def get_status(self, obj: Domain) -> str | None:
        return obj.worst_status or None

    def get_check_pending(self, obj: Any) -> bool:
        return bool(getattr(obj, "check_pending", False))


class DomainCreateSerializer(serializers.Serializer[Domain]):
    name = serializers.CharField(max_length=300)
    organisation = serializers.SlugField(
        required=False, help_text="Slug of the organisation; needed when you belong to several"
    )


class CheckResultSerializer(serializers.ModelSerializer[CheckState]):
    """One check's current result, in the contract's shape."""

    name = serializers.ChoiceField(choices=check_names(), read_only=True)

    class Meta:
        model = CheckState
        fields = ["name", "status", "summary", "details", "checked_at"]
        read_only_fields = fields


class CheckEventSerializer(serializers.ModelSerializer[CheckEvent]):
    """A change of one check's status."""

    name = serializers.ChoiceField(choices=check_names(), read_only=True)

    class Meta:
        model = CheckEvent
        fields = ["name", "previous_status", "status", "summary", "created_at"]
        read_only_fields = fields


class DkimKeySerializer(serializers.ModelSerializer[DkimKey]):
    """A DKIM key with its record as published: `dns_name` and `dns_value`; never its private half."""

    domain = serializers.CharField(source="domain.name", read_only=True)
    dns_name = serializers.CharField(read_only=True)
    dns_value = serializers.CharField(read_only=True)
    successor = serializers.SerializerMethodField()
    record_may_be_removed = serializers.SerializerMethodField(
        help_text="Retired and not removed by mailsec: delete the record from the zone"
    )

    class Meta:
        model = DkimKey
        fields = [
            "id", "domain", "selector", "algorithm", "bits", "state", "dns_name", "dns_value",
            "created_at", "published_at", "activated_at", "retiring_at", "retired_at",
            "predecessor", "successor", "signing_verified", "signing_checked_at",
            "signing_error", "record_may_be_removed",
        ]  # fmt: skip
        read_only_fields = fields

    def get_successor(self, obj: DkimKey) -> int | None:
        successor = getattr(obj, "successor", None)
        return successor.pk if successor is not None else None

    def get_record_may_be_removed(self, obj: DkimKey) -> bool:
        return obj.state == DkimKeyState.RETIRED and obj.record_removed_at is None


class DkimKeyCreateSerializer(serializers.Serializer[DkimKey]):
    algorithm = serializers.ChoiceField(choices=["rsa", "ed25519"], default="rsa")
    selector = serializers.CharField(
        required=False, allow_blank=True, max_length=63, help_text="Generated when left out"
    )
    bits = serializers.IntegerField(required=False, help_text="RSA only: 2048, 3072 or 4096")


class DkimKeyAcceptedSerializer(serializers.Serializer[Any]):
    """The 202 of a key being generated: the key as reserved, and its generation task."""

    key = DkimKeySerializer()
    task_id = serializers.UUIDField()
    url = serializers.CharField()


class DkimSelectorSerializer(serializers.ModelSerializer[DkimSelector]):
    """A selector another sender signs the domain's mail with, watched by the dkim check."""

    domain = serializers.CharField(source="domain.name", read_only=True)

    class Meta:
        model = DkimSelector
        fields = ["id", "domain", "selector", "note", "created_at"]
        read_only_fields = ["id", "domain", "created_at"]


class DnsUpdateSerializer(serializers.ModelSerializer[DnsUpdateTarget]):
    """The RFC 2136 server mailsec publishes DKIM records through; the secret is write-only."""

    tsig_secret = serializers.CharField(
        write_only=True, help_text="Base64, as in the server's key file"
    )

    class Meta:
        model = DnsUpdateTarget
        fields = [
            "server", "zone", "tsig_name", "tsig_algorithm", "tsig_secret",
            "last_update_at", "last_error",
        ]  # fmt: skip
        read_only_fields = ["last_update_at", "last_error"]

    def validate_tsig_secret(self, value: str) -> bytes:
        try:
            return base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not base64.") from None
