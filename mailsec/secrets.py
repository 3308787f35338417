"""Secrets at rest: AES-256-GCM under MAILSEC_ENCRYPTION_KEYS, each bound to its row and field.

A token is `v1:<key_id>:<base64url(nonce || ciphertext+tag)>`. The caller's `context` (the row's
identity and field, e.g. `dns_records.DkimKey:<uid>:private_key`) is the associated data, so a
token copied into another row or field does not decrypt. The first key encrypts; any configured
key decrypts, so tokens under an earlier key keep working until `reencrypt_all` (the
`rotate_encryption_key` command) moves them to the first.

No message or log line here carries a plaintext, a key or a token; the functions that hold them
are marked sensitive, so Django's error reports leave their local variables out.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.views.decorators.debug import sensitive_variables

logger = logging.getLogger(__name__)

VERSION = "v1"
_NONCE_BYTES = 12  # 96 bits, the size GCM is specified for; random per encryption
_TAG_BYTES = 16
_TOKEN = re.compile(r"v1:([A-Za-z0-9_-]{1,32}):([A-Za-z0-9_-]+={0,2})")


class SecretError(Exception):
    """A ciphertext that cannot be decrypted: tampered, moved to another row, or under an unknown key."""


class SecretsUnavailable(ImproperlyConfigured):
    """No encryption key is configured."""


@dataclass(frozen=True)
class EncryptedField:
    """A model field holding tokens, and the context each row's token is bound to."""

    model: type[models.Model]
    field: str
    context: Callable[[Any], str]

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field}"


_registry: dict[tuple[type[models.Model], str], EncryptedField] = {}


def _keys() -> dict[str, bytes]:
    keys: dict[str, bytes] = settings.MAILSEC_ENCRYPTION_KEYS
    if not keys:
        raise SecretsUnavailable(
            "no encryption key is configured: set MAILSEC_ENCRYPTION_KEYS "
            "(id:base64 of 32 random bytes) to store or read secrets"
        )
    return keys


@sensitive_variables()
def encrypt(plaintext: bytes, *, context: str) -> str:
    """Encrypt plaintext under the first configured key, bound to context."""
    if not context:
        raise ValueError("a secret needs a context naming its row and field")
    key_id, key = next(iter(_keys().items()))
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext, context.encode("utf-8"))
    return f"{VERSION}:{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def _parse(token: str) -> tuple[str, bytes]:
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise SecretError("not an encrypted secret (malformed token)")
    try:
        payload = base64.b64decode(match[2], altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("not an encrypted secret (malformed token)") from None
    if len(payload) < _NONCE_BYTES + _TAG_BYTES:
        raise SecretError("not an encrypted secret (token too short)")
    return match[1], payload


@sensitive_variables()
def decrypt(token: str, *, context: str) -> bytes:
    """The plaintext of token, if it was encrypted for context under a configured key."""
    key_id, payload = _parse(token)
    key = _keys().get(key_id)
    if key is None:
        raise SecretError(
            f"the secret was encrypted under key id {key_id!r}, which is not in "
            "MAILSEC_ENCRYPTION_KEYS"
        )
    try:
        return AESGCM(key).decrypt(
            payload[:_NONCE_BYTES], payload[_NONCE_BYTES:], context.encode("utf-8")
        )
    except InvalidTag:
        raise SecretError(
            f"the secret under key id {key_id!r} does not decrypt: it was altered, or belongs "
            "to another row or field"
        ) from None


def key_id_of(token: str) -> str:
    """The id of the key token was encrypted under."""
    return _parse(token)[0]


def register_encrypted_field(
    model: type[models.Model], field: str, context: Callable[[Any], str]
) -> None:
    """Declare that model.field holds tokens bound to context(row), for rotation and checks."""
    model._meta.get_field(field)  # a typo fails at start-up, not at the first rotation
    if (model, field) in _registry:
        raise ValueError(f"{model._meta.label}.{field} is registered already")
    _registry[model, field] = EncryptedField(model=model, field=field, context=context)


def _unregister_encrypted_field(model: type[models.Model], field: str) -> None:
    """Undo register_encrypted_field (tests register existing fields for a while)."""
    del _registry[model, field]


def encrypted_fields() -> list[EncryptedField]:
    """Every registered field, in registration order."""
    return list(_registry.values())


def _stored(entry: EncryptedField) -> models.QuerySet[Any]:
    """Rows of entry's model whose field holds a token."""
    return (
        entry.model._base_manager.exclude(**{f"{entry.field}__isnull": True})
        .exclude(**{entry.field: ""})
        .order_by("pk")
    )


def secrets_stored() -> bool:
    """Whether any registered field holds a secret in the database."""
    return any(_stored(entry).exists() for entry in _registry.values())


@sensitive_variables()
def reencrypt_all(*, batch_size: int = 500) -> int:
    """Re-encrypt every stored secret under the first key; the number of rows changed.

    Rows already under the first key are left alone, so a second run changes nothing. Each batch
    is one transaction holding its rows locked, so a concurrent write is not lost.
    """
    key_id = next(iter(_keys()))
    current = f"{VERSION}:{key_id}:"
    changed = 0
    for entry in _registry.values():
        pending = _stored(entry).exclude(**{f"{entry.field}__startswith": current})
        last_pk: Any = None
        while True:
            with transaction.atomic():
                batch = pending if last_pk is None else pending.filter(pk__gt=last_pk)
                rows = list(batch.select_for_update()[:batch_size])
                for row in rows:
                    token = getattr(row, entry.field)
                    context = entry.context(row)
                    try:
                        plaintext = decrypt(token, context=context)
                    except SecretError as exc:
                        raise SecretError(f"{entry.label} of row {row.pk}: {exc}") from None
                    entry.model._base_manager.filter(pk=row.pk).update(
                        **{entry.field: encrypt(plaintext, context=context)}
                    )
                changed += len(rows)
            if len(rows) < batch_size:
                break
            last_pk = rows[-1].pk
    logger.info("re-encrypted %d stored secrets under key id %s", changed, key_id)
    return changed
