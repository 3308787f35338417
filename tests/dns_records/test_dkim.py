"""DKIM keys and key records: generation, names and values, the RFC 6376 3.6.1 tag list."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dns_records.dkim import (
    DkimAlgorithm,
    DkimRecordError,
    dated_selector,
    generate_key,
    parse_dkim_record,
    public_keys_equal,
    record_name,
    record_value,
    validate_selector,
)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dkim"
# RFC 8463 A.2: the Ed25519 public key of the RFC 8032 7.1 TEST 1 seed.
RFC8463_P = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


@pytest.mark.parametrize("bits", [2048, 3072])
def test_generated_rsa_key_is_pkcs8_with_its_spki_in_p(bits):
    key = generate_key(DkimAlgorithm.RSA, bits)
    assert key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == bits
    assert private.public_key().public_numbers().e == 65537
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64decode(key.public_b64) == spki
    assert (key.algorithm, key.bits) == (DkimAlgorithm.RSA, bits)


def test_rsa_keys_are_2048_bits_by_default():
    key = generate_key(DkimAlgorithm.RSA)
    assert key.bits == 2048
    assert parse_dkim_record(record_value(key.algorithm, key.public_b64)).rsa_bits() == 2048


def test_generated_ed25519_key_publishes_the_raw_32_byte_public_key():
    key = generate_key(DkimAlgorithm.ED25519)
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert base64.b64decode(key.public_b64) == raw
    assert len(raw) == 32
    assert key.bits is None


def test_the_rfc8032_seed_gives_the_rfc8463_record_key():
    seed = base64.b64decode((SAMPLES / "rfc8032_7_1.key").read_text().strip())
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(raw).decode() == RFC8463_P


@pytest.mark.parametrize("bits", [1024, 2047, 8192])
def test_rsa_sizes_outside_the_list_are_refused(bits):
    with pytest.raises(ValueError, match="2048, 3072, 4096"):
        generate_key(DkimAlgorithm.RSA, bits)


def test_ed25519_takes_no_size():
    with pytest.raises(ValueError, match="no size"):
        generate_key(DkimAlgorithm.ED25519, 256)


def test_record_name_puts_the_selector_under_domainkey():
    assert record_name("ms202612r", "example.org") == "ms202612r._domainkey.example.org"
    assert record_name("a.b", "example.org.") == "a.b._domainkey.example.org"


def test_record_value_names_version_key_type_and_key():
    assert record_value(DkimAlgorithm.RSA, "QUJD") == "v=DKIM1; k=rsa; p=QUJD"
    assert record_value(DkimAlgorithm.ED25519, "QUJD", testing=True) == (
        "v=DKIM1; k=ed25519; t=y; p=QUJD"
    )


def test_the_published_vector_records_parse():
    rsa_record = parse_dkim_record((SAMPLES / "test.txt").read_text().strip())
    assert (rsa_record.key_type, rsa_record.rsa_bits(), rsa_record.revoked) == ("rsa", 1024, False)
    assert rsa_record.tags["g"] == "*"
    ed = parse_dkim_record((SAMPLES / "ed25519test.dns").read_text().strip())
    assert (ed.key_type, ed.rsa_bits()) == ("ed25519", None)


def test_whitespace_inside_p_is_ignored_and_trailing_semicolon_allowed():
    key = generate_key(DkimAlgorithm.ED25519)
    spaced = f"v=DKIM1 ; k = ed25519 ; p={key.public_b64[:10]} \t {key.public_b64[10:]} ;"
    assert parse_dkim_record(spaced).public_b64 == key.public_b64


def test_k_defaults_to_rsa_and_v_is_optional():
    key = generate_key(DkimAlgorithm.RSA)
    record = parse_dkim_record(f"p={key.public_b64}")
    assert record.key_type == "rsa"
    assert record.rsa_bits() == 2048


def test_empty_p_is_a_revoked_key():
    record = parse_dkim_record("v=DKIM1; k=rsa; p=")
    assert record.revoked
    assert record.rsa_bits() is None


def test_t_flags_are_colon_separated():
    assert parse_dkim_record("v=DKIM1; t=s:y; p=").testing
    assert not parse_dkim_record("v=DKIM1; t=s; p=").testing


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("k=rsa; v=DKIM1; p=", "v= must be the first tag"),
        ("v=DKIM2; p=", "v=DKIM2 is not DKIM1"),
        ("v=DKIM1; k=dsa; p=", "k=dsa"),
        ("v=DKIM1; k=rsa", "p= tag is missing"),
        ("v=DKIM1; p=; p=", "appears twice"),
        ("v=DKIM1; nonsense; p=", "not a tag=value pair"),
        ("v=DKIM1; p=!!!notbase64", "not valid base64"),
        ("v=DKIM1; k=rsa; p=QUJDRA==", "not an RSA public key"),
        ("v=DKIM1; k=ed25519; p=QUJDRA==", "4 bytes"),
        ("v=DKIM1; s=tlsrpt; p=", "s=tlsrpt"),
        ("v=DKIM1; h=sha1; p=", "h=sha1"),
    ],
)
def test_unusable_records_say_why(text, reason):
    with pytest.raises(DkimRecordError, match=reason):
        parse_dkim_record(text)


def test_tag_names_are_case_sensitive():
    # RFC 6376 3.2: "P=" is an unknown tag, so the required p= is missing.
    with pytest.raises(DkimRecordError, match="p= tag is missing"):
        parse_dkim_record("v=DKIM1; P=")


def test_public_keys_compare_by_bytes_not_text():
    key = generate_key(DkimAlgorithm.ED25519).public_b64
    assert public_keys_equal(key, f" {key[:8]}\n{key[8:]} ")
    assert not public_keys_equal(key, generate_key(DkimAlgorithm.ED25519).public_b64)
    assert not public_keys_equal(key, "not base64!")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Google", "google"), ("ms202612r", "ms202612r"), ("s1.eu", "s1.eu"), ("k-1", "k-1")],
)
def test_valid_selectors_are_lower_cased(text, expected):
    assert validate_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "Enter a selector"),
        ("-abc", "cannot start or end with '-'"),
        ("abc-", "cannot start or end with '-'"),
        ("a..b", "two in a row"),
        (".abc", "dot"),
        ("under_score", "only the letters"),
        ("sp ace", "only the letters"),
        ("sélecteur", "only the letters"),
        ("a" * 64, "at most 63"),
    ],
)
def test_invalid_selectors_say_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match=reason):
        validate_selector(text)


def test_dated_selector_is_year_month_and_algorithm_letter():
    now = datetime(2026, 12, 3, tzinfo=UTC)
    assert dated_selector(now, DkimAlgorithm.RSA, set()) == "ms202612r"
    assert dated_selector(now, DkimAlgorithm.ED25519, {"ms202612r"}) == "ms202612e"


def test_dated_selector_is_numbered_when_taken():
    now = datetime(2026, 1, 31, tzinfo=UTC)
    assert dated_selector(now, DkimAlgorithm.RSA, {"ms202601r"}) == "ms202601r2"
    assert dated_selector(now, DkimAlgorithm.RSA, ["ms202601r", "MS202601R2"]) == "ms202601r3"
