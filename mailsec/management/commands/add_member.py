"""manage.py add_member USER ORGANISATION [--role owner|admin|viewer]: give a user a role."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mailsec.models import Organisation, Role
from mailsec.services import membership_set, organisation_create


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
        User = get_user_model()
        with transaction.atomic():
            organisation = Organisation.objects.filter(slug=options["organisation"]).first()
            if organisation is None:
                if not options["create_organisation"]:
                    raise CommandError(
                        f"no organisation with slug {options['organisation']!r} "
                        "(pass --create-organisation to create one with that name)"
                    )
                organisation = organisation_create(name=options["organisation"], actor=None)
            user = User.objects.filter(username=options["user"]).first()
            password = None
            if user is None:
                password = secrets.token_urlsafe(12)
                user = User.objects.create_user(username=options["user"], password=password)
            membership_set(
                organisation=organisation, user=user, role=Role(options["role"]), actor=None
            )
        self.stdout.write(
            f"{user.get_username()} is {options['role']} of {organisation.name} ({organisation.slug})"
        )
        if password:
            self.stdout.write(f"New user's password, shown only this once: {password}")
