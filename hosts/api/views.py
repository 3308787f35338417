"""Policies and managed hosts over the API: the same services and selectors as the UI."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.request import Request
from rest_framework.response import Response

from dns_records.models import Domain
from dns_records.selectors import domains_visible
from hosts import selectors, services
from hosts.api.serializers import (
    ConfirmHostKeySerializer,
    DeployAcceptedSerializer,
    DeploymentSerializer,
    HostEventSerializer,
    HostSerializer,
    HostWriteSerializer,
    PolicySerializer,
    ProbeResultSerializer,
    RenderedFileSerializer,
)
from hosts.models import Host, Policy, ProbeResult
from mailsec.api.serializers import TaskAcceptedSerializer
from mailsec.models import Organisation
from mailsec.selectors import organisations_visible

ID_REGEX = r"[0-9]{1,18}"  # anything else is a 404 from the router


def organisation_for_create(request: Request, slug: str | None) -> Organisation:
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


class PolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Policy],
):
    """Security policies of the caller's organisations: one field per control's value."""

    serializer_class = PolicySerializer
    lookup_value_regex = ID_REGEX

    def get_queryset(self) -> QuerySet[Policy]:
        return selectors.policies_visible(self.request.user).prefetch_related("hosts")

    @extend_schema(request=PolicySerializer, responses={201: PolicySerializer})
    def create(self, request: Request) -> Response:
        payload = PolicySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        organisation = organisation_for_create(request, data.pop("organisation", None))
        policy = services.policy_create(
            organisation=organisation, name=data.pop("name"), values=data, actor=request.user
        )
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PolicySerializer, responses={200: PolicySerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        policy = self.get_object()
        payload = PolicySerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        data.pop("organisation", None)
        policy = services.policy_update(
            policy=policy, name=data.pop("name", None), values=data, actor=request.user
        )
        return Response(PolicySerializer(policy).data)

    def perform_destroy(self, instance: Policy) -> None:
        services.policy_delete(policy=instance, actor=self.request.user)


def _host_input(data: dict[str, Any], host: Host | None = None) -> services.HostInput:
    def pick(name: str) -> Any:
        return data[name] if name in data or host is None else getattr(host, name)

    return services.HostInput(
        name=pick("name"),
        address=pick("address"),
        ssh_port=pick("ssh_port"),
        ssh_user=pick("ssh_user"),
        postfix_config_dir=pick("postfix_config_dir"),
        dovecot_config_dir=pick("dovecot_config_dir"),
        opendkim_config_dir=pick("opendkim_config_dir"),
    )


HOST_FIELDS = {
    "name", "address", "ssh_port", "ssh_user",
    "postfix_config_dir", "dovecot_config_dir", "opendkim_config_dir",
}  # fmt: skip


class HostViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Host],
):
    """Managed hosts of the caller's organisations."""

    serializer_class = HostSerializer
    lookup_value_regex = ID_REGEX

    def get_queryset(self) -> QuerySet[Host]:
        return selectors.hosts_visible(self.request.user).select_related("host_key_confirmed_by")

    @extend_schema(request=HostWriteSerializer, responses={201: HostSerializer})
    def create(self, request: Request) -> Response:
        """Register a host: mailsec fetches its SSH host key once (confirm its fingerprint
        with `confirm-host-key/`) and makes the client key to install (`ssh_public_key`)."""
        payload = HostWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        organisation = organisation_for_create(request, data.get("organisation"))
        host = services.host_register(
            organisation=organisation,
            data=_host_input(data),
            domains=data["domains"],
            policy_id=data["policy"],
            actor=request.user,
        )
        return Response(HostSerializer(self._fresh(host)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=HostWriteSerializer, responses={200: HostSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change a host; a new address or port fetches the host key again, to be confirmed."""
        host = self.get_object()
        payload = HostWriteSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        host = services.host_update(
            host=host,
            actor=request.user,
            data=_host_input(data, host) if HOST_FIELDS & set(data) else None,
            domains=data.get("domains"),
            policy_id=data.get("policy"),
            set_policy="policy" in data,
        )
        return Response(HostSerializer(self._fresh(host)).data)

    def perform_destroy(self, instance: Host) -> None:
        services.host_delete(host=instance, actor=self.request.user)

    def _fresh(self, host: Host) -> Host:
        return self.get_queryset().get(pk=host.pk)

    @extend_schema(request=ConfirmHostKeySerializer, responses={200: HostSerializer})
    @action(detail=True, methods=["post"], url_path="confirm-host-key")
    def confirm_host_key(self, request: Request, pk: str) -> Response:
        """Pin the host key after comparing its fingerprint with the host's own."""
        host = self.get_object()
        payload = ConfirmHostKeySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.host_confirm_key(
            host=host, fingerprint=payload.validated_data["fingerprint"], actor=request.user
        )
        return Response(HostSerializer(self._fresh(host)).data)

    @extend_schema(responses={200: RenderedFileSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def rendered(self, request: Request, pk: str) -> Response:
        """The files a deployment would write, each with its diff against the host's copy as
        last seen; private keys only by path, mode and hash."""
        return Response(
            RenderedFileSerializer(selectors.host_rendered(self.get_object()), many=True).data
        )

    @extend_schema(request=None, responses={202: DeployAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request: Request, pk: str) -> Response:
        """Queue a deployment (or join the one already pending); poll `url` or `deployments/`."""
        host = self.get_object()
        deployment = services.deployment_request(host_id=host.pk, actor=request.user)
        run = selectors.deployment_task_run(deployment)
        task = (
            TaskAcceptedSerializer(run).data
            if run is not None
            else {"task_id": None, "state": deployment.state, "url": None}
        )
        body = {**task, "deployment": DeploymentSerializer(deployment).data}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: DeploymentSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deployments(self, request: Request, pk: str) -> Response:
        """The host's deployments, newest first (the last 50), each with its state and log."""
        found = selectors.deployments_of(self.get_object())[:50]
        return Response(DeploymentSerializer(found, many=True).data)

    @extend_schema(responses={200: HostEventSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: str) -> Response:
        """What happened to the host, newest first (the last 50): drift, failed deployments."""
        found = selectors.events_of(self.get_object())[:50]
        return Response(HostEventSerializer(found, many=True).data)

    @extend_schema(request=None, responses={202: TaskAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def probe(self, request: Request, pk: str) -> Response:
        """Probe the host's SMTP, IMAP and POP3 services now (or join the probe queued);
        poll the task's `url`, then `probes/`. At most once a minute per host (429)."""
        try:
            run = services.host_probe_request(host=self.get_object(), actor=request.user)
        except services.ProbeRateLimited as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
        return Response(TaskAcceptedSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: ProbeResultSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def probes(self, request: Request, pk: str) -> Response:
        """The current probe result per name and port; `?history=1` gives every result,
        newest first (the last 500)."""
        host = self.get_object()
        if request.query_params.get("history") in ("1", "true", "yes"):
            found = list(selectors.probe_results_history(host))
        else:
            found = selectors.probe_results_current(host)
        return Response(ProbeResultSerializer(found, many=True).data)


class MxProbeResultSerializer(ProbeResultSerializer):
    """A domain MX target's probe result: the check shape, with the target in `details`."""

    def get_details(self, row: ProbeResult) -> dict[str, Any]:
        return {**super().get_details(row), "target": row.target}


def _domain(request: Request, name: str) -> Domain:
    domain = domains_visible(request.user).filter(name=name.lower().rstrip(".")).first()
    if domain is None:
        raise exceptions.NotFound("No such domain.")
    return domain


@extend_schema(request=None, responses={202: TaskAcceptedSerializer})
@api_view(["POST"])
def domain_mx_probe(request: Request, name: str) -> Response:
    """Probe port 25 of the domain's MX targets that are no managed host (those are probed
    as hosts); poll the task's `url`, then `mx-probes/`. Once a minute per domain (429)."""
    try:
        run = services.domain_mx_probe_request(domain=_domain(request, name), actor=request.user)
    except services.ProbeRateLimited as exc:
        raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
    return Response(TaskAcceptedSerializer(run).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: MxProbeResultSerializer(many=True)})
@api_view(["GET"])
def domain_mx_probes(request: Request, name: str) -> Response:
    """The last MX probe's results, one per target, name and port."""
    found = selectors.mx_probe_results_current(_domain(request, name))
    return Response(MxProbeResultSerializer(found, many=True).data)
