"""A Host row as the renderer's `HostFacts`, and the files a deployment would write for it.

What comes from where:

- `name`, `hostname`: the host's name (its myhostname); config directories: the host's fields.
- `addresses`: `host.facts["addresses"]`, else the host's address when it is an IP address,
  else its A/AAAA records from mailsec's resolver.
- `postfix_version`, `dovecot_version`: `host.facts`, as the last deployment detected them
  (`postconf -h mail_version`, `dovecot --version`); the renderer's defaults until then.
- `domains`: the host's domains; `dkim_keys`: the ACTIVE DKIM keys of those domains, private
  halves decrypted here and nowhere else.
- `blacklist`: the local IP blacklist of the host's organisation, from the providers registered
  with `register_blacklist_provider` (the blocklists app sits above hosts and registers its
  unexpired entries in its `ready()`).

Host-specific settings that differ from a stock Debian host are overrides in `host.facts`
(FACT_OVERRIDES names them, with the HostFacts field each sets), so a test instance and a
production host take the same code path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from dns_records.lookups import LookupStatus
from dns_records.models import DkimKey, DkimKeyState
from dns_records.opendkim import SigningKey
from dns_records.resolver import Resolver
from hosts.models import DeployedFile, Host
from hosts.policy import BlacklistEntry, FieldError
from hosts.render import HostFacts, RenderedFiles, RenderError, render_host
from mailsec import secrets

__all__ = [
    "FACT_OVERRIDES",
    "BlacklistProvider",
    "blacklist_of",
    "host_facts",
    "last_known_files",
    "register_blacklist_provider",
    "render_for_host",
]

BlacklistProvider = Callable[[int], list[BlacklistEntry]]
_blacklist_providers: list[BlacklistProvider] = []

# host.facts keys that set a HostFacts field of the same name (strings unless noted).
FACT_OVERRIDES = (
    "postfix_queue_directory",  # Postfix's queue_directory (the SASL socket lives under it)
    "postfix_user",
    "tls_cert_file",  # the certificate smtpd and Dovecot present
    "tls_key_file",
    "smtp_service",  # master.cf service name of the public smtpd ("smtp", "127.0.0.1:2525")
    "submission_service",  # master.cf service name of submission ("submission", "ADDR:PORT")
    "opendkim_user",
    "opendkim_run_dir",
    "opendkim_address",  # where the two OpenDKIM instances listen
    "opendkim_ports",  # [RSA port, Ed25519 port]
    "extra_milters",  # the host's own milters, before OpenDKIM (list)
)


def register_blacklist_provider(provider: BlacklistProvider) -> None:
    """Add a source of local blacklist entries: called with an organisation id."""
    if provider not in _blacklist_providers:
        _blacklist_providers.append(provider)


def blacklist_of(organisation_id: int) -> tuple[BlacklistEntry, ...]:
    entries: list[BlacklistEntry] = []
    for provider in _blacklist_providers:
        entries += provider(organisation_id)
    return tuple(entries)


def _addresses(host: Host) -> tuple[str, ...]:
    listed = host.facts.get("addresses") if isinstance(host.facts, Mapping) else None
    if isinstance(listed, list):
        return tuple(str(a) for a in listed)
    try:
        return (str(ipaddress.ip_address(host.address)),)
    except ValueError:
        pass
    found: list[str] = []
    for lookup in Resolver().addresses(host.address):
        if lookup.status is LookupStatus.OK:
            found += list(lookup.records)
    return tuple(found)


def signing_keys(domain_ids: list[int]) -> tuple[SigningKey, ...]:
    """The ACTIVE DKIM keys of these domains with their private halves decrypted."""
    keys = DkimKey.objects.filter(domain_id__in=domain_ids, state=DkimKeyState.ACTIVE)
    return tuple(
        SigningKey(
            domain=key.domain.name,
            selector=key.selector,
            algorithm=key.algorithm,
            private_pem=secrets.decrypt(key.private_key, context=key.secret_context),
        )
        for key in keys.select_related("domain").order_by("domain__name", "selector")
    )


def host_facts(host: Host) -> HostFacts:
    """The renderer's view of the host (see the module docstring for each field's source)."""
    facts: Mapping[str, Any] = host.facts if isinstance(host.facts, Mapping) else {}
    domains = list(host.domains.order_by("name"))
    kwargs: dict[str, Any] = {
        "name": host.name,
        "hostname": host.name,
        "addresses": _addresses(host),
        "domains": tuple(d.name for d in domains),
        "dkim_keys": signing_keys([d.pk for d in domains]),
        "blacklist": blacklist_of(host.organisation_id),
        "postfix_config_dir": host.postfix_config_dir,
        "dovecot_config_dir": host.dovecot_config_dir,
        "opendkim_config_dir": host.opendkim_config_dir,
    }
    for name in ("postfix_version", "dovecot_version"):
        if isinstance(facts.get(name), str):
            kwargs[name] = facts[name]
    for name in FACT_OVERRIDES:
        if name not in facts:
            continue
        value = facts[name]
        if name in {"opendkim_ports", "extra_milters"} and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return HostFacts(**kwargs)


def render_for_host(
    host: Host, current_files: Mapping[str, bytes], *, facts: HostFacts | None = None
) -> RenderedFiles:
    """Every file the host's policy needs; RenderError lists every problem."""
    from hosts.selectors import policy_values

    if host.policy is None:
        raise RenderError([FieldError("policy", "The host has no policy assigned.")])
    return render_host(
        policy_values(host.policy), facts if facts is not None else host_facts(host), current_files
    )


def last_known_files(host: Host) -> dict[str, bytes]:
    """The files as mailsec last deployed them (secrets are not kept: absent here)."""
    return {
        row.path: bytes(row.content)
        for row in DeployedFile.objects.filter(host=host, secret=False).order_by("path")
    }
