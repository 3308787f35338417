"""manage.py probe HOST [--json]: probe a managed host's mail services now, in this process."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosts.models import Host
from hosts.services import host_probe_run


class Command(BaseCommand):
    help = (
        "Probe a managed host's SMTP, IMAP and POP3 services (by name or id) and print each "
        "result; exits 1 when any result is fail or error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("host", help="The host's name (or its id)")
        parser.add_argument("--json", action="store_true", help="Print the results as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["host"]
        hosts = Host.objects.filter(name=name)
        if not hosts.exists() and name.isdigit():
            hosts = Host.objects.filter(pk=int(name))
        if hosts.count() != 1:
            raise CommandError(
                f"{name}: no such host"
                if not hosts.exists()
                else f"{name}: several hosts; use the id"
            )
        outcome = host_probe_run(hosts.get().pk)
        results = outcome["results"]
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2))
        else:
            for result in results:
                port = result["details"].get("port")
                self.stdout.write(
                    f"{result['status']:8} {result['name']:24} {port or '-':>5}  {result['summary']}"
                )
        if any(result["status"] in ("fail", "error") for result in results):
            raise SystemExit(1)
