"""manage.py ensure_admin: on first run, create the `admin` account in a first organisation."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from mailsec.models import Role
from mailsec.services.members import membership_set, organisation_create


class Command(BaseCommand):
    help = (
        "Create the admin account and a first organisation when no user exists yet. "
        "Prints the generated password once; MAILSEC_ADMIN_PASSWORD sets it instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--organisation", default="My organisation")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write("ensure_admin: users exist already; nothing to do.")
            return
        given = os.environ.get("MAILSEC_ADMIN_PASSWORD", "")
        password = given or secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(
                username=options["username"], email="", password=password
            )
            organisation = organisation_create(name=options["organisation"], actor=user)
            membership_set(organisation=organisation, user=user, role=Role.OWNER, actor=user)
        self.stdout.write(
            self.style.SUCCESS(f"Created user {options['username']!r} in {organisation.name!r}.")
        )
        if not given:
            self.stdout.write(f"Its password, shown only this once: {password}")
