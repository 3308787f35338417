"""Managed hosts: the list and the form to register one; a host's page with the fingerprint to
confirm, mailsec's public key to install, what it serves, the files a deployment would write
with their diff, the Deploy button, deployments (polled while one is unfinished) and drift
events, live probe results with "Probe now" (polled while a probe is queued); and the hosts
serving a domain with their probe results, on the domain's page.

Reads go through hosts' selectors, writes through its services, which check the role and audit.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.forms import HostConnectionForm, HostForm, HostKeyConfirmForm, HostSettingsForm
from dashboard.http import HtmxRequest, error_text
from dns_records import selectors as domain_selectors
from hosts import selectors, services
from hosts.models import Host
from mailsec.models import Organisation
from mailsec.selectors import can_write, organisations_visible, organisations_writable

HOST_KEY_COMMAND = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
CONNECTION_FIELDS = (
    "name", "address", "ssh_port", "ssh_user",
    "postfix_config_dir", "dovecot_config_dir", "opendkim_config_dir",
)  # fmt: skip


def _form_errors(form: Any, exc: ValidationError) -> None:
    """A service's field errors shown on the form's fields (the others at the top)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _host(request: HtmxRequest, pk: int) -> Host:
    host = selectors.host_visible(request.user, pk)
    if host is None:
        raise Http404("No such host.")
    return host


def _choices(organisation: Organisation) -> dict[str, Any]:
    return {
        "domain_names": selectors.domain_names_of(organisation),
        "policies": selectors.policy_choices_of(organisation),
    }


# --- the list and registration -----------------------------------------------------------------


def _list_context(request: HtmxRequest, form: HostForm | None = None) -> dict[str, Any]:
    writable = list(organisations_writable(request.user).order_by("name"))
    if form is None and writable:
        form = HostForm(organisations=writable, **_choices(writable[0]))
    return {
        "hosts": selectors.hosts_visible(request.user),
        "form": form,
        "writable": writable,
        "has_organisation": organisations_visible(request.user).exists(),
    }


@require_GET
def host_list(request: HtmxRequest) -> HttpResponse:
    return render(request, "dashboard/hosts.html", _list_context(request))


@require_POST
def host_add(request: HtmxRequest) -> HttpResponse:
    writable = list(organisations_writable(request.user).order_by("name"))
    slug = request.POST.get("organisation", "")
    organisation = next((o for o in writable if o.slug == slug), writable[0] if writable else None)
    if organisation is None:
        raise PermissionDenied("You cannot add hosts to any organisation.")
    form = HostForm(request.POST, organisations=writable, **_choices(organisation))
    if form.is_valid():
        data = form.cleaned_data
        try:
            host = services.host_register(
                organisation=organisation,
                data=services.HostInput(
                    name=data["name"],
                    address=data["address"],
                    ssh_port=data["ssh_port"],
                    ssh_user=data["ssh_user"],
                    postfix_config_dir=data["postfix_config_dir"],
                    dovecot_config_dir=data["dovecot_config_dir"],
                    opendkim_config_dir=data["opendkim_config_dir"],
                ),
                domains=data["domains"],
                policy_id=data["policy"],
                actor=request.user,
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            url = reverse("dashboard:host_detail", args=[host.pk])
            if request.htmx:
                response = HttpResponse(status=204)
                response["HX-Redirect"] = url
                return response
            return redirect(url)
    return render(request, "dashboard/partials/hosts/add_form.html", _list_context(request, form))


# --- one host -------------------------------------------------------------------------------


def _key_context(request: HtmxRequest, host: Host, **extra: Any) -> dict[str, Any]:
    return {
        "host": host,
        "can_write": can_write(request.user, host.organisation),
        "key_command": HOST_KEY_COMMAND,
        "key_form": extra.pop("key_form", None) or HostKeyConfirmForm(),
        **extra,
    }


def _deployments_context(request: HtmxRequest, host: Host, **extra: Any) -> dict[str, Any]:
    deployments = list(selectors.deployments_of(host)[:20])
    return {
        "host": host,
        "deployments": deployments,
        "unfinished": any(d.state in selectors.UNFINISHED_DEPLOYMENT_STATES for d in deployments),
        "can_write": can_write(request.user, host.organisation),
        **extra,
    }


def _settings_context(request: HtmxRequest, host: Host, **extra: Any) -> dict[str, Any]:
    form = extra.pop("settings_form", None) or HostSettingsForm(
        initial={
            "domains": [d.name for d in host.domains.all()],
            "policy": str(host.policy_id or ""),
        },
        **_choices(host.organisation),
    )
    connection = extra.pop("connection_form", None) or HostConnectionForm(
        initial={name: getattr(host, name) for name in CONNECTION_FIELDS}
    )
    return {
        "host": host,
        "settings_form": form,
        "connection_form": connection,
        "can_write": can_write(request.user, host.organisation),
        **extra,
    }


def _probes_context(request: HtmxRequest, host: Host, **extra: Any) -> dict[str, Any]:
    return {
        "host": host,
        "probes": selectors.probe_results_current(host),
        "probe_pending": selectors.probe_pending(host) is not None,
        "can_write": can_write(request.user, host.organisation),
        **extra,
    }


@require_GET
def host_probes(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    return render(request, "dashboard/partials/hosts/probes.html", _probes_context(request, host))


@require_POST
def host_probe(request: HtmxRequest, pk: int) -> HttpResponse:
    """Probe now: queue a probe (or join the one queued); the section polls until it ends."""
    host = _host(request, pk)
    error = ""
    try:
        services.host_probe_request(host=host, actor=request.user)
    except services.ProbeRateLimited as exc:
        error = str(exc)
    except PermissionDenied as exc:
        error = error_text(exc)
    return render(
        request,
        "dashboard/partials/hosts/probes.html",
        _probes_context(request, host, probe_error=error),
    )


def _rendered_context(host: Host) -> dict[str, Any]:
    try:
        return {"rendered": selectors.host_rendered(host), "rendered_error": ""}
    except ValidationError as exc:
        return {"rendered": [], "rendered_error": error_text(exc)}


@require_GET
def host_detail(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    context = {
        **_key_context(request, host),
        **_settings_context(request, host),
        **_deployments_context(request, host),
        **_rendered_context(host),
        **_probes_context(request, host),
        "events": list(selectors.events_of(host)[:50]),
        "authorized_keys_line": host.ssh_public_key.strip(),
    }
    return render(request, "dashboard/hosts_detail.html", context)


@require_POST
def host_confirm_key(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    form = HostKeyConfirmForm(request.POST)
    if form.is_valid():
        try:
            host = services.host_confirm_key(
                host=host, fingerprint=form.cleaned_data["fingerprint"], actor=request.user
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            # The Deploy button comes alive with the confirmation: its section is swapped too.
            response = render(
                request, "dashboard/partials/hosts/key.html", _key_context(request, host)
            )
            deployments = _deployments_context(request, host, oob=True)
            response.write(
                render_to_string(
                    "dashboard/partials/hosts/deployments.html", deployments, request=request
                )
            )
            return response
    return render(
        request, "dashboard/partials/hosts/key.html", _key_context(request, host, key_form=form)
    )


@require_POST
def host_settings(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    form = HostSettingsForm(request.POST, **_choices(host.organisation))
    if form.is_valid():
        try:
            host = services.host_update(
                host=host,
                actor=request.user,
                domains=form.cleaned_data["domains"],
                policy_id=form.cleaned_data["policy"],
                set_policy=True,
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            response = HttpResponse(status=204)
            response["HX-Redirect"] = reverse("dashboard:host_detail", args=[host.pk])
            return response
    return render(
        request,
        "dashboard/partials/hosts/settings.html",
        _settings_context(request, host, settings_form=form),
    )


@require_POST
def host_connection(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    form = HostConnectionForm(request.POST)
    if form.is_valid():
        try:
            host = services.host_update(
                host=host,
                actor=request.user,
                data=services.HostInput(**{n: form.cleaned_data[n] for n in CONNECTION_FIELDS}),
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            response = HttpResponse(status=204)
            response["HX-Redirect"] = reverse("dashboard:host_detail", args=[host.pk])
            return response
    return render(
        request,
        "dashboard/partials/hosts/settings.html",
        _settings_context(request, host, connection_form=form),
    )


@require_GET
def host_deployments(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    return render(
        request, "dashboard/partials/hosts/deployments.html", _deployments_context(request, host)
    )


@require_POST
def host_deploy(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    error = ""
    try:
        services.deployment_request(host_id=host.pk, actor=request.user)
    except (ValidationError, PermissionDenied) as exc:
        error = error_text(exc)
    return render(
        request,
        "dashboard/partials/hosts/deployments.html",
        _deployments_context(request, host, deploy_error=error),
    )


@require_http_methods(["POST"])
def host_delete(request: HtmxRequest, pk: int) -> HttpResponse:
    host = _host(request, pk)
    try:
        services.host_delete(host=host, actor=request.user)
    except PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    url = reverse("dashboard:host_list")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@require_GET
def domain_hosts(request: HtmxRequest, pk: int) -> HttpResponse:
    """The hosts serving a domain: a section of the domain's page."""
    domain = domain_selectors.domains_visible(request.user).filter(pk=pk).first()
    if domain is None:
        raise Http404("No such domain.")
    return render(
        request,
        "dashboard/partials/hosts/domain_hosts.html",
        {
            "domain": domain,
            "hosts": list(selectors.hosts_serving(domain)),
            # The MX view's live side: each serving host's current probe results.
            "host_probes": selectors.probe_results_for_domain(domain),
            # Its MX targets that are no managed host, probed on port 25.
            "mx_probes": selectors.mx_probe_results_current(domain),
        },
    )
