"""The blocklists app: own addresses and domains on public blocklists, and the local blacklist."""

from __future__ import annotations

from django.apps import AppConfig


class BlocklistsConfig(AppConfig):
    name = "blocklists"
    verbose_name = "Blocklists"
