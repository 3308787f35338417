"""The blocklists app: its encrypted field, its target providers, the blacklist it gives the
managed hosts, and its settings check."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class BlocklistsConfig(AppConfig):
    name = "blocklists"
    verbose_name = "Blocklists"

    def ready(self) -> None:
        from blocklists.models import BlocklistSettings
        from blocklists.services import blacklist_for_hosts
        from blocklists.targets import register_builtin_providers
        from hosts.assemble import register_blacklist_provider
        from mailsec.secrets import register_encrypted_field

        register_encrypted_field(BlocklistSettings, "dqs_key", lambda row: row.secret_context)
        register_builtin_providers()
        # The managed hosts push the local blacklist; hosts sits below and asks its providers.
        register_blacklist_provider(blacklist_for_hosts)
        checks.register(check_zone_settings)


def check_zone_settings(**_kwargs: Any) -> list[checks.CheckMessage]:
    """MAILSEC_DNSBL_IP_ZONES and MAILSEC_DNSBL_DOMAIN_ZONES hold zone names mailsec can query."""
    from django.conf import settings

    from blocklists.zones import InvalidZone, normalise_zone

    errors: list[checks.CheckMessage] = []
    for variable in ("MAILSEC_DNSBL_IP_ZONES", "MAILSEC_DNSBL_DOMAIN_ZONES"):
        for name in getattr(settings, variable, []):
            try:
                normalise_zone(name)
            except InvalidZone as exc:
                errors.append(checks.Error(f"{variable}: {exc}", id="blocklists.E001"))
    return errors
