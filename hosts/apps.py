"""The managed-hosts app: policies rendered into mail-server config and deployed over SSH."""

from __future__ import annotations

from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "hosts"
    verbose_name = "Managed hosts"

    def ready(self) -> None:
        from hosts.models import Host
        from mailsec.secrets import register_encrypted_field

        register_encrypted_field(Host, "ssh_private_key", lambda host: host.secret_context)
