"""manage.py add_member USER ORGANISATION [--role owner|admin|viewer]: give a user a role."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mailsec.models import Organisation, Role
from mailsec.services.members import member_add, organisation_create


class Command(BaseCommand):
    help = (
        "Give a user a role in an organisation, creating the user (with a generated password, "
        "printed once) and the organisation (with --create-organisation) when missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="username")
        parser.add_argument(
            "organisation", help="organisation slug, or its name with --create-organisation"
        )
        parser.add_argument("--role", choices=Role.values, default=Role.VIEWER)
        parser.add_argument("--create-organisation", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            organisation = Organisation.objects.filter(slug=options["organisation"]).first()
            if organisation is None:
                if not options["create_organisation"]:
                    raise CommandError(
                        f"no organisation with slug {options['organisation']!r} "
                        "(pass --create-organisation to create one with that name)"
                    )
                organisation = organisation_create(name=options["organisation"], actor=None)
            try:
                # The operator at the server's command line acts as the system (actor None).
                membership, password = member_add(
                    organisation=organisation,
                    username=options["user"],
                    role=Role(options["role"]),
                    actor=None,
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
        user = membership.user
        self.stdout.write(
            f"{user.get_username()} is {options['role']} of {organisation.name} ({organisation.slug})"
        )
        if password:
            self.stdout.write(f"New user's password, shown only this once: {password}")
