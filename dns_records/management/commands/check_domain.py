"""manage.py check_domain NAME [--json]: run every DNS check of any domain and print the results."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from dns_records.context import context_for_name
from dns_records.names import InvalidDomainName, normalise_domain
from dns_records.resolver import Resolver
from dns_records.runner import run_domain_checks

MARK = {"ok": "ok  ", "warning": "WARN", "fail": "FAIL", "error": "ERR "}


class Command(BaseCommand):
    help = "Check a domain's mail DNS (in the database or not) and print one result per check."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="domain name, e.g. example.org")
        parser.add_argument("--json", action="store_true", help="print the API's JSON shape")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            name = normalise_domain(options["name"])
        except InvalidDomainName as exc:
            raise CommandError(str(exc)) from None
        outcomes = run_domain_checks(context_for_name(name), Resolver())
        checked_at = timezone.now()
        if options["json"]:
            payload = {"domain": name, "checks": [o.as_dict(checked_at) for o in outcomes]}
            self.stdout.write(json.dumps(payload, indent=2))
            return
        self.stdout.write(f"{name}")
        for outcome in outcomes:
            self.stdout.write(f"  {MARK[outcome.status]} {outcome.name:<10} {outcome.summary}")
            suggestion = outcome.details.get("suggested_record")
            if suggestion:
                self.stdout.write(
                    f"       publish {suggestion['type']} {suggestion['name']}: {suggestion['value']}"
                )
                if suggestion.get("note"):
                    self.stdout.write(f"       ({suggestion['note']})")
