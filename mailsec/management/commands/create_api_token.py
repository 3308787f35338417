"""manage.py create_api_token USER [--scope read|write] [--expires-days N] [--name TEXT]"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mailsec.models import TokenScope
from mailsec.services.tokens import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print its key once (only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="username the token acts as")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.READ)
        parser.add_argument("--expires-days", type=int, default=None, help="default: never")
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["user"]})
        except User.DoesNotExist:
            raise CommandError(f"no user named {options['user']!r}") from None
        days = options["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be at least 1")
        _token, key = api_token_create(
            user=user,
            scope=TokenScope(options["scope"]),
            actor=None,
            name=options["name"] or "created by manage.py",
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        self.stdout.write(key)
