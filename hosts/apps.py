"""The managed-hosts app: policies rendered into mail-server config and deployed over SSH."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from dns_records.context import ContextExtras
    from dns_records.models import Domain


def spf_host_addresses(domains: Sequence[Domain]) -> Mapping[int, ContextExtras]:
    """The SPF check's managed senders: each domain's hosts' addresses (one query)."""
    from dns_records.context import ContextExtras
    from hosts.selectors import addresses_by_domain

    return {
        pk: ContextExtras(host_addresses=tuple(addresses))
        for pk, addresses in addresses_by_domain(domains).items()
        if addresses
    }


class HostsConfig(AppConfig):
    name = "hosts"
    verbose_name = "Managed hosts"

    def ready(self) -> None:
        from dns_records.context import register_context_provider
        from hosts.models import Host
        from mailsec.secrets import register_encrypted_field

        register_encrypted_field(Host, "ssh_private_key", lambda host: host.secret_context)
        # A host serving a domain must get SPF `pass` for it (dns_records never imports hosts).
        register_context_provider(spf_host_addresses)
        # The probe tasks live outside hosts.tasks; importing them registers them with workers.
        import hosts.probe_tasks  # noqa: F401
