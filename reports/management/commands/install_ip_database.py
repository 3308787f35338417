"""manage.py install_ip_database FILE [--kind asn|country]: install an offline IP database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailsec.services.audit import audit_record
from reports.geo import KINDS, IpDatabaseError, install
from reports.sources import sources_refresh_geo


class Command(BaseCommand):
    help = (
        "Install a MaxMind DB (.mmdb) file you downloaded, e.g. DB-IP's free IP-to-ASN Lite or "
        "IP-to-Country Lite (CC BY 4.0), so report pages show each source's AS and country. "
        "The file is checked and copied under MAILSEC_IP_DATABASE_DIR (var/ip-databases/); "
        "mailsec never downloads it. Run it again with a newer file to update."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The .mmdb file")
        parser.add_argument(
            "--kind", choices=KINDS, default="asn", help="What the file maps addresses to"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            database = install(options["file"], kind=options["kind"])
        except IpDatabaseError as exc:
            raise CommandError(f"{options['file']}: {exc}") from None
        changed = sources_refresh_geo()
        audit_record(
            actor=None,
            action="report.ip_database.install",
            obj=database.path.name,
            organisation=None,
            after={
                "kind": database.kind,
                "database_type": database.database_type,
                "build_date": database.build_date,
                "source_name": database.source_name,
                "sources_updated": changed,
            },
        )
        self.stdout.write(
            f"Installed {database.kind} database {database.database_type or '(untyped)'} "
            f"built {database.build_date} at {database.path}; {changed} known sources updated, "
            "new ones get theirs as they are named."
        )
