"""The blocklists app: its encrypted field, its target providers and its settings check."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class BlocklistsConfig(AppConfig):
    name = "blocklists"
    verbose_name = "Blocklists"

    def ready(self) -> None:
        from blocklists.models import BlocklistSettings
        from blocklists.targets import register_builtin_providers
        from mailsec.secrets import register_encrypted_field

        register_encrypted_field(BlocklistSettings, "dqs_key", lambda row: row.secret_context)
        register_builtin_providers()
        checks.register(check_zone_settings)

        from hosts.assemble import register_blacklist_provider

        register_blacklist_provider(local_blacklist_of)


def local_blacklist_of(organisation_id: int) -> list[Any]:
    """The organisation's unexpired local blacklist entries, for the hosts it deploys to."""
    from django.db.models import Q
    from django.utils import timezone

    from blocklists.models import BlacklistEntry
    from hosts.policy import BlacklistEntry as Entry

    rows = BlacklistEntry.objects.filter(organisation_id=organisation_id).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )
    return [Entry(row.network, row.reason) for row in rows.order_by("network")]


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
