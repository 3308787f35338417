"""manage.py rotate_encryption_key: move every stored secret to the first encryption key."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailsec.secrets import (
    SecretError,
    SecretsUnavailable,
    encrypted_fields,
    key_id_of,
    reencrypt_all,
)


def key_ids_in_use() -> Counter[str]:
    """How many stored secrets each key id holds, over every registered field."""
    counts: Counter[str] = Counter()
    for entry in encrypted_fields():
        tokens = (
            entry.model._base_manager.exclude(**{f"{entry.field}__isnull": True})
            .exclude(**{entry.field: ""})
            .values_list(entry.field, flat=True)
        )
        for token in tokens.iterator(chunk_size=2000):
            try:
                counts[key_id_of(token)] += 1
            except SecretError:
                counts["(malformed)"] += 1
    return counts


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of MAILSEC_ENCRYPTION_KEYS, then "
        "say which key ids are still in use: a key no longer in use may be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="rows re-encrypted per transaction"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            changed = reencrypt_all(batch_size=options["batch_size"])
        except (SecretsUnavailable, SecretError) as exc:
            raise CommandError(str(exc)) from None
        first, *older = settings.MAILSEC_ENCRYPTION_KEYS
        self.stdout.write(f"Re-encrypted {changed} stored secret(s) under key {first!r}.")
        in_use = key_ids_in_use()
        if in_use:
            listed = ", ".join(f"{key_id!r} ({count})" for key_id, count in in_use.items())
            self.stdout.write(f"Key ids in use: {listed}.")
        else:
            self.stdout.write("No secrets are stored.")
        unused = [key_id for key_id in older if key_id not in in_use]
        if unused:
            names = ", ".join(repr(key_id) for key_id in unused)
            self.stdout.write(
                f"No longer in use, may be removed from MAILSEC_ENCRYPTION_KEYS: {names}."
            )
        stale = sorted(key_id for key_id in in_use if key_id != first)
        if stale:
            # A process still running with the old keys first wrote these after the rotation.
            raise CommandError(
                f"secrets under {', '.join(map(repr, stale))} remain: restart every web, worker "
                "and beat process with the new MAILSEC_ENCRYPTION_KEYS and run this again"
            )
