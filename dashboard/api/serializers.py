"""The overview's shape in the API (documentation: the view builds plain dicts)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

STATUS_HELP = "ok, warning, fail, error or unmeasured (not yet measured)"


class OffenderSerializer(serializers.Serializer[Any]):
    kind = serializers.CharField(help_text="domain, host or address")
    name = serializers.CharField()
    status = serializers.CharField(help_text=STATUS_HELP)
    summary = serializers.CharField()
    url = serializers.CharField(help_text="The dashboard page to open")


class ControlSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField(help_text="1 to 13, as in the design's table")
    key = serializers.CharField()
    title = serializers.CharField()
    status = serializers.CharField(help_text=STATUS_HELP)
    summary = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Per status")
    offenders = OffenderSerializer(many=True, help_text="The worst first, at most five")


class OrganisationRefSerializer(serializers.Serializer[Any]):
    slug = serializers.CharField()
    name = serializers.CharField()


class CountsSerializer(serializers.Serializer[Any]):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class TrendSerializer(serializers.Serializer[Any]):
    last_7_days = serializers.IntegerField()
    previous_7_days = serializers.IntegerField()
    direction = serializers.CharField(help_text="up, down or same")


class ScorecardSerializer(serializers.Serializer[Any]):
    organisation = OrganisationRefSerializer()
    status = serializers.CharField(help_text="The worst control: " + STATUS_HELP)
    generated_at = serializers.DateTimeField()
    controls = ControlSerializer(many=True)
    action_first = serializers.ListField(
        child=serializers.CharField(), help_text="Control keys: fails, errors, then warnings"
    )
    domains = CountsSerializer()
    hosts = CountsSerializer()
    trends = serializers.DictField(child=TrendSerializer())


class OverviewSerializer(serializers.Serializer[Any]):
    organisations = ScorecardSerializer(many=True)
