"""manage.py poll_blacklists [--json] [--organisation SLUG]: poll now, in this process."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from blocklists.services import organisation_poll
from mailsec.models import Organisation

MARK = {"listed": "LISTED", "clean": "clean ", "error": "ERROR "}


class Command(BaseCommand):
    help = "Poll every organisation's (or one's) addresses and domains on its blocklists now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organisation", help="slug of one organisation (default: all)")
        parser.add_argument("--json", action="store_true", help="print a JSON list")

    def handle(self, *args: Any, **options: Any) -> None:
        organisations = Organisation.objects.order_by("slug")
        if options["organisation"]:
            organisations = organisations.filter(slug=options["organisation"])
            if not organisations.exists():
                raise CommandError(f"No organisation {options['organisation']!r}.")
        rows = []
        for organisation in organisations:
            for result in organisation_poll(organisation_id=organisation.pk):
                rows.append(result.as_dict())
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            detail = f" {row['code']} {row['reason']}".rstrip() if row["status"] != "clean" else ""
            self.stdout.write(f"{MARK[row['status']]} {row['target']:<40} {row['zone']}{detail}")
