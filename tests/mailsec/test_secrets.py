"""Secrets at rest: AES-256-GCM tokens bound to their row, key rotation, and what a dump shows.

No core model holds a secret yet, so these tests register an existing text field (TaskRun.error)
for their duration, exactly as an app registers its own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from mailsec.checks import check_encryption_keys
from mailsec.models import Organisation, TaskKind, TaskRun
from mailsec.secrets import (
    EncryptedField,
    SecretError,
    SecretsUnavailable,
    _unregister_encrypted_field,
    decrypt,
    encrypt,
    encrypted_fields,
    key_id_of,
    reencrypt_all,
    register_encrypted_field,
    secrets_stored,
)
from tests.servers import missing

KEY_A = hashlib.sha256(b"test key a").digest()
KEY_B = hashlib.sha256(b"test key b").digest()
ONLY_A = {"a": KEY_A}
B_THEN_A = {"b": KEY_B, "a": KEY_A}


def _context(row: TaskRun) -> str:
    return f"mailsec.TaskRun:{row.id}:error"


@pytest.fixture
def registered() -> Iterator[EncryptedField]:
    """TaskRun.error registered as an encrypted field for one test."""
    register_encrypted_field(TaskRun, "error", _context)
    try:
        yield next(e for e in encrypted_fields() if e.model is TaskRun and e.field == "error")
    finally:
        _unregister_encrypted_field(TaskRun, "error")


def _store(org: Organisation, plaintext: bytes) -> TaskRun:
    """A row whose registered field holds plaintext, encrypted for that row."""
    row = TaskRun(organisation=org, kind=TaskKind.DOMAIN_CHECK)
    row.error = encrypt(plaintext, context=_context(row))
    row.save()
    return row


def _key_ids(rows: list[TaskRun]) -> set[str]:
    return {
        key_id_of(t)
        for t in TaskRun.objects.filter(pk__in=[r.pk for r in rows]).values_list("error", flat=True)
    }


def _plaintext(row: TaskRun) -> bytes:
    row.refresh_from_db()
    return decrypt(row.error, context=_context(row))


@pytest.mark.parametrize("plaintext", [b"", b"x", bytes(range(256)) * 40])
def test_a_secret_decrypts_to_its_plaintext(plaintext):
    token = encrypt(plaintext, context="mailsec.Thing:1:secret")
    assert decrypt(token, context="mailsec.Thing:1:secret") == plaintext


def test_a_token_is_versioned_ascii_naming_its_key():
    token = encrypt(b"secret", context="c")
    version, key_id, payload = token.split(":")
    assert (version, key_id) == ("v1", "tests")
    assert key_id_of(token) == "tests"
    assert token.isascii()
    # A 96-bit nonce, the ciphertext (as long as the plaintext) and a 128-bit tag.
    assert len(base64.urlsafe_b64decode(payload)) == 12 + len(b"secret") + 16


def test_each_encryption_uses_a_fresh_nonce():
    tokens = {encrypt(b"same", context="c") for _ in range(50)}
    assert len(tokens) == 50
    assert len({base64.urlsafe_b64decode(t.split(":")[2])[:12] for t in tokens}) == 50


def test_a_secret_moved_to_another_row_does_not_decrypt():
    token = encrypt(b"private key", context="dns_records.DkimKey:1:private_key")
    with pytest.raises(SecretError, match="another row or field"):
        decrypt(token, context="dns_records.DkimKey:2:private_key")
    with pytest.raises(SecretError):
        decrypt(token, context="dns_records.DkimKey:1:other_field")


def _flip(token: str, position: int) -> str:
    prefix, payload = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[position] ^= 0x01
    return f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"


@pytest.mark.parametrize("position", [0, 11, 12, -1], ids=["nonce", "nonce-end", "body", "tag"])
def test_a_tampered_token_does_not_decrypt(position):
    token = encrypt(b"private key", context="c")
    with pytest.raises(SecretError):
        decrypt(_flip(token, position), context="c")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "plaintext",
        "v2:tests:AAAA",
        "v1:tests:",
        "v1:tests:AAAAAAAA",  # shorter than a nonce and a tag
        "v1:bad id:" + "A" * 40,
        "v1:tests:" + "A" * 40 + "*",
        "v1:tests:" + "A" * 40 + "\n",
    ],
)
def test_a_malformed_token_is_refused(token):
    with pytest.raises(SecretError, match=r"malformed|too short"):
        decrypt(token, context="c")
    with pytest.raises(SecretError):
        key_id_of(token)


def test_a_token_under_an_unknown_key_does_not_decrypt():
    token = encrypt(b"private key", context="c")
    with override_settings(MAILSEC_ENCRYPTION_KEYS=ONLY_A), pytest.raises(SecretError) as caught:
        decrypt(token, context="c")
    assert "'tests'" in str(caught.value)
    assert "MAILSEC_ENCRYPTION_KEYS" in str(caught.value)


def test_a_token_relabelled_with_another_key_id_does_not_decrypt():
    with override_settings(MAILSEC_ENCRYPTION_KEYS=B_THEN_A):
        token = encrypt(b"private key", context="c")
        with pytest.raises(SecretError):
            decrypt(token.replace("v1:b:", "v1:a:"), context="c")


def test_errors_carry_no_plaintext_key_or_token():
    plaintext = b"-----BEGIN PRIVATE KEY-----MIIEvQ"
    token = encrypt(plaintext, context="row:1")
    payload = token.split(":")[2]
    failures = []
    for bad, context in [(token, "row:2"), (_flip(token, 20), "row:1"), (token + "*", "row:1")]:
        with pytest.raises(SecretError) as caught:
            decrypt(bad, context=context)
        failures.append(str(caught.value))
    with override_settings(MAILSEC_ENCRYPTION_KEYS=ONLY_A), pytest.raises(SecretError) as caught:
        decrypt(token, context="row:1")
    failures.append(str(caught.value))
    key = settings.MAILSEC_ENCRYPTION_KEYS["tests"]
    for message in failures:
        assert payload[:16] not in message
        assert plaintext.decode() not in message
        assert "MIIEvQ" not in message
        assert base64.b64encode(key).decode()[:16] not in message
        assert key.hex()[:16] not in message


def test_without_a_key_encrypting_refuses_naming_the_variable():
    with (
        override_settings(MAILSEC_ENCRYPTION_KEYS={}),
        pytest.raises(SecretsUnavailable, match="MAILSEC_ENCRYPTION_KEYS"),
    ):
        encrypt(b"secret", context="c")
    assert issubclass(SecretsUnavailable, ImproperlyConfigured)


def test_without_a_key_decrypting_refuses_naming_the_variable():
    token = encrypt(b"secret", context="c")
    with (
        override_settings(MAILSEC_ENCRYPTION_KEYS={}),
        pytest.raises(SecretsUnavailable, match="MAILSEC_ENCRYPTION_KEYS"),
    ):
        decrypt(token, context="c")


def test_a_secret_needs_a_context():
    with pytest.raises(ValueError, match="context"):
        encrypt(b"secret", context="")


def test_error_reports_leave_out_keys_and_tokens():
    token = encrypt(b"private key", context="row:1")
    with pytest.raises(SecretError) as caught:
        decrypt(token, context="row:2")
    reporter = ExceptionReporter(None, caught.type, caught.value, caught.tb)
    # The frames below this test's own, which holds the token itself.
    frames = [f for f in reporter.get_traceback_data()["frames"] if f["filename"] != __file__]
    shown = "\n".join(f"{name} = {value}" for frame in frames for name, value in frame["vars"])
    assert any(frame["function"] == "decrypt" for frame in frames)
    assert token.split(":")[2][:16] not in shown
    assert "private key" not in shown
    assert repr(settings.MAILSEC_ENCRYPTION_KEYS["tests"])[:20] not in shown
    safe = SafeExceptionReporterFilter().get_safe_settings()
    assert safe["MAILSEC_ENCRYPTION_KEYS"] == SafeExceptionReporterFilter.cleansed_substitute


# --- registered fields --------------------------------------------------------------------


def test_a_registered_field_is_listed(registered):
    assert registered.model is TaskRun
    assert registered.field == "error"
    assert registered.context is _context


def test_registering_an_unknown_or_registered_field_is_refused(registered):
    from django.core.exceptions import FieldDoesNotExist

    with pytest.raises(FieldDoesNotExist):
        register_encrypted_field(TaskRun, "no_such_field", _context)
    with pytest.raises(ValueError, match="registered already"):
        register_encrypted_field(TaskRun, "error", _context)


def test_secrets_stored_sees_only_non_empty_registered_fields(registered, org):
    assert not secrets_stored()
    TaskRun.objects.create(organisation=org, kind=TaskKind.DOMAIN_CHECK, error="")
    assert not secrets_stored()
    _store(org, b"")  # an empty secret is still a secret
    assert secrets_stored()


def test_an_unregistered_field_holds_no_stored_secret(org):
    TaskRun.objects.create(organisation=org, kind=TaskKind.DOMAIN_CHECK, error="v1:x:y")
    assert not secrets_stored()


def test_rotation_moves_every_secret_to_the_first_key(registered, org):
    with override_settings(MAILSEC_ENCRYPTION_KEYS=ONLY_A):
        rows = [_store(org, f"secret {i}".encode()) for i in range(3)]
    blank = TaskRun.objects.create(organisation=org, kind=TaskKind.DOMAIN_CHECK, error="")
    with override_settings(MAILSEC_ENCRYPTION_KEYS=B_THEN_A):
        assert [_plaintext(row) for row in rows] == [b"secret 0", b"secret 1", b"secret 2"]
        assert reencrypt_all() == 3
        assert _key_ids(rows) == {"b"}
        assert reencrypt_all() == 0
    with override_settings(MAILSEC_ENCRYPTION_KEYS={"b": KEY_B}):
        assert [_plaintext(row) for row in rows] == [b"secret 0", b"secret 1", b"secret 2"]
    blank.refresh_from_db()
    assert blank.error == ""


def test_rotation_works_through_every_batch(registered, org):
    with override_settings(MAILSEC_ENCRYPTION_KEYS=ONLY_A):
        rows = [_store(org, bytes([i])) for i in range(7)]
    with override_settings(MAILSEC_ENCRYPTION_KEYS=B_THEN_A):
        assert reencrypt_all(batch_size=2) == 7
        assert [_plaintext(row) for row in rows] == [bytes([i]) for i in range(7)]
        assert _key_ids(rows) == {"b"}


def test_rotation_stops_at_a_secret_that_does_not_decrypt_naming_its_row(registered, org):
    with override_settings(MAILSEC_ENCRYPTION_KEYS=ONLY_A):
        moved = _store(org, b"secret")
        other = _store(org, b"other")
    TaskRun.objects.filter(pk=other.pk).update(error=moved.error)
    with (
        override_settings(MAILSEC_ENCRYPTION_KEYS=B_THEN_A),
        pytest.raises(SecretError, match=f"mailsec.TaskRun.error of row {other.pk}"),
    ):
        reencrypt_all(batch_size=10)
    assert _key_ids([moved, other]) == {"a"}  # the failing batch was rolled back


def test_rotate_encryption_key_command_reports_the_keys_still_in_use(registered, org):
    with override_settings(MAILSEC_ENCRYPTION_KEYS=ONLY_A):
        _store(org, b"one")
        _store(org, b"two")
    out = io.StringIO()
    with override_settings(MAILSEC_ENCRYPTION_KEYS=B_THEN_A):
        call_command("rotate_encryption_key", stdout=out)
    text = out.getvalue()
    assert "Re-encrypted 2 stored secret(s) under key 'b'." in text
    assert "Key ids in use: 'b' (2)." in text
    assert "may be removed from MAILSEC_ENCRYPTION_KEYS: 'a'." in text


def test_rotate_encryption_key_command_without_keys_names_the_variable(registered):
    with (
        override_settings(MAILSEC_ENCRYPTION_KEYS={}),
        pytest.raises(CommandError, match="MAILSEC_ENCRYPTION_KEYS"),
    ):
        call_command("rotate_encryption_key", stdout=io.StringIO())


# --- the system check ---------------------------------------------------------------------


def test_check_errors_when_secrets_are_stored_and_no_key_is_configured(registered, org):
    _store(org, b"secret")
    with override_settings(MAILSEC_ENCRYPTION_KEYS={}):
        errors = check_encryption_keys(None)
    assert [e.id for e in errors] == ["mailsec.E003"]
    assert "MAILSEC_ENCRYPTION_KEYS" in errors[0].msg
    assert check_encryption_keys(None) == []


def test_check_passes_without_a_key_while_no_secret_is_stored(registered, org):
    TaskRun.objects.create(organisation=org, kind=TaskKind.DOMAIN_CHECK, error="")
    with override_settings(MAILSEC_ENCRYPTION_KEYS={}):
        assert check_encryption_keys(None) == []


# --- what a database dump shows -----------------------------------------------------------


def _pem_key() -> tuple[bytes, bytes]:
    """A freshly generated RSA private key, as PEM and as DER."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, der


def _database_dumps() -> dict[str, str]:
    """The database as `dumpdata` shows it, and as the database's own dump tool does."""
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    dumps = {"dumpdata": out.getvalue()}
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        pg_dump = shutil.which("pg_dump") or shutil.which("/usr/bin/pg_dump")
        if pg_dump is None:
            missing("pg_dump is not installed")
            return dumps
        env = {"PGPASSWORD": db["PASSWORD"]} if db["PASSWORD"] else {}
        result = subprocess.run(
            [pg_dump, "--host", db["HOST"] or "127.0.0.1", "--port", str(db["PORT"] or 5432),
             "--username", db["USER"], "--no-password", db["NAME"]],
            capture_output=True, text=True, timeout=120, check=False,
            env={"PATH": "/usr/bin:/bin", **env},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        dumps["pg_dump"] = result.stdout
    elif connection.vendor == "sqlite":
        connection.ensure_connection()
        dumps["sqlite"] = "\n".join(connection.connection.iterdump())
    return dumps


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_holds_no_plaintext_secret(registered):
    pem, der = _pem_key()
    org = Organisation.objects.create(name="Dump", slug="dump")
    row = _store(org, pem)
    assert _plaintext(row) == pem
    body = b"".join(pem.splitlines()[1:-1]).decode()
    forms = {
        "pem": pem.decode(),
        "pem line": pem.splitlines()[1].decode(),
        "pem body": body,
        "base64 of the pem": base64.b64encode(pem).decode()[:64],
        "url-safe base64 of the pem": base64.urlsafe_b64encode(pem).decode()[:64],
        "hex of the pem": pem.hex()[:64],
        "base64 of the der": base64.b64encode(der).decode()[:64],
        "url-safe base64 of the der": base64.urlsafe_b64encode(der).decode()[:64],
        "hex of the der": der.hex()[:64],
        "middle of the der": base64.b64encode(der[600:648]).decode(),
    }
    dumps = _database_dumps()
    if connection.vendor == "postgresql":
        assert "pg_dump" in dumps
    for tool, dump in dumps.items():
        assert row.error in dump, f"{tool} did not dump the secret's row"
        for name, form in forms.items():
            assert form not in dump, f"{tool} shows the {name}"
            assert form.lower() not in dump.lower(), f"{tool} shows the {name}"
