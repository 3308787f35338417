"""The managed-hosts API's shapes. mailsec's SSH private key and rendered secrets (DKIM private
keys) appear in none of them."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Any

from django.contrib.auth.models import User
from rest_framework import serializers

from hosts import selectors
from hosts.models import Deployment, Host, HostEvent, Policy, ProbeResult, ProbeStatus
from hosts.policy import (
    BOOL_FIELDS,
    CHOICE_FIELDS,
    DOMAIN_LIST_FIELDS,
    FIELD_HELP,
    INT_BOUNDS,
    MAX_LIST,
    PolicyValues,
)
from mailsec.models import Organisation

DEFAULTS = selectors.policy_values_json(PolicyValues())


class DnsblSiteSerializer(serializers.Serializer[Any]):
    zone = serializers.CharField(max_length=253)
    weight = serializers.IntegerField(default=1, min_value=-20, max_value=20)


def policy_value_fields() -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    """One API field per PolicyValues field, in its order, with its default and help text."""
    made: dict[str, serializers.Field[Any, Any, Any, Any]] = {}
    for field in dataclass_fields(PolicyValues):
        name, help_text, default = field.name, FIELD_HELP[field.name], DEFAULTS[field.name]
        if name in INT_BOUNDS:
            low, high = INT_BOUNDS[name]
            made[name] = serializers.IntegerField(
                min_value=low, max_value=high, default=default, help_text=help_text
            )
        elif name in BOOL_FIELDS:
            made[name] = serializers.BooleanField(default=default, help_text=help_text)
        elif name in CHOICE_FIELDS:
            choices = [str(member) for member in CHOICE_FIELDS[name]]
            made[name] = serializers.ChoiceField(
                choices=choices, default=default, help_text=help_text
            )
        elif name in DOMAIN_LIST_FIELDS or name == "mynetworks":
            made[name] = serializers.ListField(
                child=serializers.CharField(max_length=253, trim_whitespace=False),
                max_length=MAX_LIST,
                default=list(default),
                help_text=help_text,
            )
        elif name == "dnsbl_sites":
            made[name] = serializers.ListField(
                child=DnsblSiteSerializer(), max_length=MAX_LIST, default=list, help_text=help_text
            )
        else:  # a new PolicyValues field must be given an API field here
            raise AssertionError(f"no API field for policy field {name}")
    return made


class PolicySerializer(serializers.Serializer[Policy]):
    """A policy: its name and every control's value, flattened; defaults fill what is left out."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    organisation = serializers.SlugField(
        required=False, help_text="Slug of the organisation; needed when you belong to several"
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    hosts = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Names of the hosts using it"
    )

    def get_fields(self) -> dict[str, Any]:
        return {**super().get_fields(), **policy_value_fields()}

    def to_representation(self, instance: Policy) -> dict[str, Any]:
        return {
            "id": instance.pk,
            "name": instance.name,
            "organisation": instance.organisation.slug,
            "created_at": serializers.DateTimeField().to_representation(instance.created_at),
            "updated_at": serializers.DateTimeField().to_representation(instance.updated_at),
            "hosts": [h.name for h in instance.hosts.all()],
            **selectors.policy_values_json(selectors.policy_values(instance)),
        }


class HostSerializer(serializers.ModelSerializer[Host]):
    """A managed host. `ssh_public_key` is mailsec's client key, to install in the deploy
    user's authorized_keys; nothing is written to the host until `host_key_confirmed`."""

    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    domains = serializers.ManyRelatedField(
        child_relation=serializers.SlugRelatedField(slug_field="name", read_only=True),
        read_only=True,
    )
    policy: serializers.PrimaryKeyRelatedField[Policy] = serializers.PrimaryKeyRelatedField(
        read_only=True
    )
    host_key_confirmed_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Host
        fields = [
            "id", "name", "organisation", "address", "ssh_port", "ssh_user",
            "postfix_config_dir", "dovecot_config_dir", "opendkim_config_dir", "domains",
            "policy", "host_key_fingerprint", "host_key_confirmed", "host_key_confirmed_at",
            "host_key_confirmed_by", "ssh_public_key", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class HostWriteSerializer(serializers.Serializer[Host]):
    """Register a host (POST) or change it (PATCH: only what is given)."""

    name = serializers.CharField(max_length=253, help_text="The host's mail name (myhostname)")
    address = serializers.CharField(max_length=253, help_text="IP address or name SSH connects to")
    ssh_port = serializers.IntegerField(default=22, min_value=1, max_value=65535)
    ssh_user = serializers.CharField(default="mailsec", max_length=32)
    postfix_config_dir = serializers.CharField(default="/etc/postfix", max_length=255)
    dovecot_config_dir = serializers.CharField(default="/etc/dovecot", max_length=255)
    opendkim_config_dir = serializers.CharField(default="/etc/opendkim", max_length=255)
    domains = serializers.ListField(
        child=serializers.CharField(max_length=300), default=list, max_length=500
    )
    policy = serializers.IntegerField(allow_null=True, default=None, help_text="A policy's id")
    organisation = serializers.SlugField(
        required=False, help_text="Slug of the organisation; needed when you belong to several"
    )


class ConfirmHostKeySerializer(serializers.Serializer[Any]):
    fingerprint = serializers.CharField(
        max_length=500,
        help_text="SHA256:... as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it",
    )


class RenderedFileSerializer(serializers.Serializer[Any]):
    """A file a deployment would write. A secret (a private key) carries only its path, mode,
    hash and `secret: true`."""

    path = serializers.CharField()
    mode = serializers.CharField(help_text="Octal, e.g. 0644")
    sha256 = serializers.CharField()
    secret = serializers.BooleanField()
    status = serializers.CharField(
        required=False, help_text="Against the host's file: added, changed or unchanged"
    )
    content = serializers.CharField(
        required=False, allow_null=True, help_text="The text; null for a binary file"
    )
    diff = serializers.CharField(required=False, help_text="Unified diff from the host's file")


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    requested_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    host: serializers.PrimaryKeyRelatedField[Host] = serializers.PrimaryKeyRelatedField(
        read_only=True
    )

    class Meta:
        model = Deployment
        fields = [
            "id", "uid", "host", "state", "requested_by", "files", "diff", "log",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class DeployAcceptedSerializer(serializers.Serializer[Any]):
    """The 202 of a deployment: where to poll, and the deployment (joined when one was
    already pending)."""

    task_id = serializers.UUIDField(allow_null=True)
    state = serializers.CharField()
    url = serializers.CharField(allow_null=True)
    deployment = DeploymentSerializer()


class HostEventSerializer(serializers.ModelSerializer[HostEvent]):
    class Meta:
        model = HostEvent
        fields = ["id", "kind", "summary", "details", "created_at"]
        read_only_fields = fields


class ProbeResultSerializer(serializers.ModelSerializer[ProbeResult]):
    """One probe result in the contract's check shape; details carry the address and port."""

    status = serializers.ChoiceField(choices=ProbeStatus.choices, read_only=True)
    details = serializers.SerializerMethodField()
    checked_at = serializers.DateTimeField(source="probed_at", read_only=True)

    class Meta:
        model = ProbeResult
        fields = ["name", "status", "summary", "details", "checked_at"]
        read_only_fields = fields

    def get_details(self, row: ProbeResult) -> dict[str, Any]:
        return {**(row.details or {}), "address": row.address, "port": row.port}
