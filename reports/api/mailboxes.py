"""`imap-mailboxes/`: an organisation's IMAP mailboxes that receivers send reports to.

Anyone in the organisation lists them; owners and admins (with a write token) add, change,
remove and poll them now. The password is write-only: no answer ever carries it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from mailsec.api.serializers import TaskAcceptedSerializer
from mailsec.models import Organisation
from mailsec.selectors import organisations_visible
from reports import mailboxes
from reports.models import ImapMailbox

SECURITY = [("tls", "TLS (port 993)"), ("starttls", "STARTTLS (port 143)")]


class ImapMailboxSerializer(serializers.ModelSerializer[ImapMailbox]):
    """A report mailbox as shown: never its password."""

    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    poll_pending = serializers.SerializerMethodField(help_text="A poll is queued or running")

    class Meta:
        model = ImapMailbox
        fields = [
            "id", "organisation", "host", "port", "security", "username", "folder",
            "processed_folder", "enabled", "last_polled_at", "last_error", "created_at",
            "poll_pending",
        ]  # fmt: skip
        read_only_fields = fields

    def get_poll_pending(self, obj: ImapMailbox) -> bool:
        return mailboxes.poll_pending(obj) is not None


class ImapMailboxWriteSerializer(serializers.Serializer[ImapMailbox]):
    """What a client sends; the service checks the values and who may send them."""

    organisation = serializers.SlugField(
        required=False, help_text="Slug of the organisation; needed when you belong to several"
    )
    host = serializers.CharField(max_length=253)
    port = serializers.IntegerField(min_value=1, max_value=65535, default=993)
    security = serializers.ChoiceField(choices=SECURITY, default="tls")
    username = serializers.CharField(max_length=320)
    password = serializers.CharField(
        max_length=1000, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    folder = serializers.CharField(max_length=200, default="INBOX")
    processed_folder = serializers.CharField(max_length=200, default="mailsec-processed")
    enabled = serializers.BooleanField(default=True)


class ImapMailboxUpdateSerializer(ImapMailboxWriteSerializer):
    """A change: any field; the password only when it changes."""

    organisation = None  # type: ignore[assignment]  # a mailbox stays in its organisation
    password = serializers.CharField(
        max_length=1000, write_only=True, trim_whitespace=False, required=False, allow_blank=True
    )


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in mailboxes.AUDITED if name in data}


class ImapMailboxViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[ImapMailbox],
):
    serializer_class = ImapMailboxSerializer
    queryset = ImapMailbox.objects.none()  # rows come through the visibility selectors only
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[ImapMailbox]:
        return mailboxes.mailboxes_visible(self.request.user)

    def get_object(self) -> ImapMailbox:
        mailbox = mailboxes.mailbox_visible(self.request.user, int(self.kwargs["pk"]))
        if mailbox is None:
            get_object_or_404(ImapMailbox.objects.none())
        assert mailbox is not None
        return mailbox

    def _organisation(self, slug: str | None) -> Organisation:
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

    @extend_schema(request=ImapMailboxWriteSerializer, responses={201: ImapMailboxSerializer})
    def create(self, request: Request) -> Response:
        payload = ImapMailboxWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        mailbox = mailboxes.mailbox_create(
            organisation=self._organisation(data.get("organisation")),
            password=data["password"],
            actor=request.user,
            **_fields(data),
        )
        return Response(ImapMailboxSerializer(mailbox).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ImapMailboxUpdateSerializer, responses={200: ImapMailboxSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=True)

    @extend_schema(request=ImapMailboxUpdateSerializer, responses={200: ImapMailboxSerializer})
    def update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=False)

    def _update(self, request: Request, *, partial: bool) -> Response:
        mailbox = self.get_object()
        payload = ImapMailboxUpdateSerializer(data=request.data, partial=partial)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        changed = mailboxes.mailbox_update(
            mailbox=mailbox, actor=request.user, password=data.get("password", ""), **_fields(data)
        )
        return Response(ImapMailboxSerializer(changed).data)

    def perform_destroy(self, instance: ImapMailbox) -> None:
        mailboxes.mailbox_delete(mailbox=instance, actor=self.request.user)

    @extend_schema(request=None, responses={202: TaskAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def poll(self, request: Request, pk: str) -> Response:
        """Poll the mailbox now (or join the poll already queued); the outcome is the task's."""
        run = mailboxes.mailbox_poll_request(mailbox=self.get_object(), actor=request.user)
        return Response(TaskAcceptedSerializer(run).data, status=status.HTTP_202_ACCEPTED)
