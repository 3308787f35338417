from __future__ import annotations

from typing import Any

from rest_framework import serializers

from dns_records.checks import check_names
from dns_records.models import CheckEvent, CheckState, Domain
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
