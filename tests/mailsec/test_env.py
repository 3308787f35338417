"""The strict environment readers: good values parse, malformed ones stop start-up."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mailsec.env import (
    Nameserver,
    env_bool,
    env_encryption_keys,
    env_int,
    env_list,
    env_nameservers,
    env_networks,
    env_secret_key,
    parse_database_url,
    parse_encryption_keys,
)


@pytest.mark.parametrize(
    ("text", "expected"), [("1", True), ("yes", True), ("OFF", False), ("0", False)]
)
def test_env_bool_reads_common_spellings(text, expected):
    assert env_bool("X", default=not expected, environ={"X": text}) is expected


def test_env_bool_refuses_a_guess():
    with pytest.raises(ImproperlyConfigured, match="X must be one of"):
        env_bool("X", default=False, environ={"X": "maybe"})


def test_env_bool_uses_default_when_unset_or_blank():
    assert env_bool("X", default=True, environ={}) is True
    assert env_bool("X", default=False, environ={"X": "  "}) is False


def test_env_int_enforces_bounds():
    assert env_int("N", 1, minimum=1, environ={"N": "7"}) == 7
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("N", 1, minimum=1, environ={"N": "0"})
    with pytest.raises(ImproperlyConfigured, match="integer"):
        env_int("N", 1, environ={"N": "seven"})


def test_env_list_refuses_empty_items():
    assert env_list("L", environ={"L": "a, b"}) == ["a", "b"]
    with pytest.raises(ImproperlyConfigured, match="empty item"):
        env_list("L", environ={"L": "a,,b"})


def test_nameservers_accept_ip_and_port_forms():
    servers = env_nameservers(
        "NS", environ={"NS": "127.0.0.10:5353, 192.0.2.1, [::1]:53, 2001:db8::1"}
    )
    assert servers == [
        Nameserver("127.0.0.10", 5353),
        Nameserver("192.0.2.1", 53),
        Nameserver("::1", 53),
        Nameserver("2001:db8::1", 53),
    ]


@pytest.mark.parametrize("bad", ["dns.example", "127.0.0.1:0", "127.0.0.1:99999", "1.2.3.4:x"])
def test_nameservers_refuse_names_and_bad_ports(bad):
    with pytest.raises(ImproperlyConfigured, match="NS"):
        env_nameservers("NS", environ={"NS": bad})


def test_networks_must_be_exact_cidrs():
    assert [str(n) for n in env_networks("N", environ={"N": "10.0.0.0/8"})] == ["10.0.0.0/8"]
    with pytest.raises(ImproperlyConfigured):
        env_networks("N", environ={"N": "10.0.0.1/8"})


def test_database_url_postgres():
    db = parse_database_url(
        "postgres://u:p%40ss@db.internal:6543/mail?sslmode=require", base_dir=Path("/")
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "mail",
        "u",
        "p@ss",
        "db.internal",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_database_url_sqlite_relative_and_absolute():
    assert (
        parse_database_url("sqlite:///var/x.db", base_dir=Path("/srv"))["NAME"] == "/srv/var/x.db"
    )
    assert parse_database_url("sqlite:////tmp/x.db", base_dir=Path("/srv"))["NAME"] == "/tmp/x.db"


def test_database_url_refuses_unknown_scheme():
    with pytest.raises(ValueError, match="unsupported"):
        parse_database_url("mysql://x/y", base_dir=Path("/"))


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "0"])
def test_env_float_refuses_non_finite_and_non_positive(bad):
    from mailsec.env import env_float

    with pytest.raises(ImproperlyConfigured):
        env_float("T", 5.0, environ={"T": bad})


@pytest.mark.parametrize("bad", ["1_0", "+5", " 1 0", "0x10", "٣"])
def test_env_int_accepts_plain_digits_only(bad):
    with pytest.raises(ImproperlyConfigured):
        env_int("N", 1, environ={"N": bad})


def test_secret_key_from_the_environment_comes_first(tmp_path):
    key_file = tmp_path / "secret_key"
    key = env_secret_key("K", local_file=key_file, create=True, environ={"K": "from-env"})
    assert key == "from-env"
    assert not key_file.exists()


def test_local_secret_key_is_created_with_mode_0600_whatever_the_umask(tmp_path):
    key_file = tmp_path / "var" / "secret_key"
    previous = os.umask(0)
    try:
        key = env_secret_key("K", local_file=key_file, create=True, environ={})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == key
    assert len(key) >= 50
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]


def test_local_secret_key_is_reused(tmp_path):
    key_file = tmp_path / "secret_key"
    first = env_secret_key("K", local_file=key_file, create=True, environ={})
    assert env_secret_key("K", local_file=key_file, create=True, environ={}) == first
    assert env_secret_key("K", local_file=key_file, create=False, environ={}) == first


def test_without_key_or_file_the_key_is_empty_and_nothing_is_created(tmp_path):
    key_file = tmp_path / "secret_key"
    assert env_secret_key("K", local_file=key_file, create=False, environ={}) == ""
    assert not key_file.exists()


def test_a_process_losing_the_creation_race_uses_the_winners_key(tmp_path, monkeypatch):
    key_file = tmp_path / "secret_key"
    real_link = os.link

    def winner_first(source, target):
        key_file.write_text("the-winners-key\n")
        key_file.chmod(0o600)
        real_link(source, target)

    monkeypatch.setattr("mailsec.env.os.link", winner_first)
    assert env_secret_key("K", local_file=key_file, create=True, environ={}) == "the-winners-key"
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_local_secret_key_open_to_other_users_is_refused(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 60)
    key_file.chmod(0o644)
    with pytest.raises(ImproperlyConfigured, match="chmod 600"):
        env_secret_key("K", local_file=key_file, create=False, environ={})


def test_empty_local_secret_key_is_refused(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("\n")
    key_file.chmod(0o600)
    with pytest.raises(ImproperlyConfigured, match="empty"):
        env_secret_key("K", local_file=key_file, create=True, environ={})


KEY = bytes(range(32))
KEY_TEXT = base64.urlsafe_b64encode(KEY).decode()


def test_encryption_keys_need_32_bytes_and_unique_ids():
    assert parse_encryption_keys(f"k1:{KEY_TEXT}", source="K") == {"k1": KEY}
    with pytest.raises(ImproperlyConfigured, match="32 bytes"):
        parse_encryption_keys("k1:c2hvcnQ=", source="K")
    with pytest.raises(ImproperlyConfigured, match="repeats"):
        parse_encryption_keys(f"k1:{KEY_TEXT},k1:{KEY_TEXT}", source="K")


def test_encryption_keys_keep_their_order_in_either_base64_alphabet():
    other = bytes(range(200, 232))
    standard = base64.b64encode(other).decode().rstrip("=")
    assert "+" in standard or "/" in standard
    keys = parse_encryption_keys(f"new:{standard} , old:{KEY_TEXT}", source="K")
    assert list(keys.items()) == [("new", other), ("old", KEY)]


def test_encryption_key_with_stray_characters_is_refused():
    with pytest.raises(ImproperlyConfigured, match="not base64"):
        parse_encryption_keys(f"k1:{KEY_TEXT.rstrip('=')}*!", source="K")


@pytest.mark.parametrize(
    "key_id", ["", "a b", "a.b", "x" * 33, "clé"], ids=["empty", "space", "dot", "long", "accent"]
)
def test_encryption_key_ids_are_letters_digits_dash_underscore(key_id):
    with pytest.raises(ImproperlyConfigured, match="must be id:base64key"):
        parse_encryption_keys(f"{key_id}:{KEY_TEXT}", source="K")


@pytest.mark.parametrize("bad", ["k1", "k1:", f"k1:{KEY_TEXT},", f",k1:{KEY_TEXT}"])
def test_encryption_keys_refuse_incomplete_items(bad):
    with pytest.raises(ImproperlyConfigured, match="K: item"):
        parse_encryption_keys(bad, source="K")


@pytest.mark.parametrize(
    "text",
    [f"k1:{KEY_TEXT},k2:{KEY_TEXT}x", f"k1:{KEY_TEXT[:-4]}", f"k1:{KEY_TEXT},k2:{KEY_TEXT},"],
)
def test_encryption_key_errors_never_show_a_key(text):
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_encryption_keys(text, source="K")
    assert KEY_TEXT[:12] not in str(caught.value)


def test_encryption_keys_from_the_environment_come_first(tmp_path):
    key_file = tmp_path / "encryption_keys"
    keys = env_encryption_keys(
        "K", local_file=key_file, create=True, environ={"K": f"env:{KEY_TEXT}"}
    )
    assert keys == {"env": KEY}
    assert not key_file.exists()


def test_local_encryption_keys_are_created_with_mode_0600_whatever_the_umask(tmp_path):
    key_file = tmp_path / "var" / "encryption_keys"
    previous = os.umask(0)
    try:
        keys = env_encryption_keys("K", local_file=key_file, create=True, environ={})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert list(keys) == ["local"]
    assert len(keys["local"]) == 32
    assert parse_encryption_keys(key_file.read_text().strip(), source="file") == keys
    assert [p.name for p in key_file.parent.iterdir()] == ["encryption_keys"]


def test_local_encryption_keys_are_reused_with_or_without_debug(tmp_path):
    key_file = tmp_path / "encryption_keys"
    first = env_encryption_keys("K", local_file=key_file, create=True, environ={})
    assert env_encryption_keys("K", local_file=key_file, create=True, environ={}) == first
    assert env_encryption_keys("K", local_file=key_file, create=False, environ={}) == first


def test_without_keys_or_file_there_is_no_key_and_nothing_is_created(tmp_path):
    key_file = tmp_path / "encryption_keys"
    assert env_encryption_keys("K", local_file=key_file, create=False, environ={}) == {}
    assert not key_file.exists()


def test_a_process_losing_the_key_file_race_uses_the_winners_keys(tmp_path, monkeypatch):
    key_file = tmp_path / "encryption_keys"
    real_link = os.link

    def winner_first(source, target):
        key_file.write_text(f"winner:{KEY_TEXT}\n")
        key_file.chmod(0o600)
        real_link(source, target)

    monkeypatch.setattr("mailsec.env.os.link", winner_first)
    keys = env_encryption_keys("K", local_file=key_file, create=True, environ={})
    assert keys == {"winner": KEY}
    assert [p.name for p in tmp_path.iterdir()] == ["encryption_keys"]


def test_local_encryption_keys_open_to_other_users_are_refused(tmp_path):
    key_file = tmp_path / "encryption_keys"
    key_file.write_text(f"local:{KEY_TEXT}\n")
    key_file.chmod(0o640)
    with pytest.raises(ImproperlyConfigured, match="chmod 600"):
        env_encryption_keys("K", local_file=key_file, create=True, environ={})


def test_a_malformed_local_key_file_names_the_file_not_the_key(tmp_path):
    key_file = tmp_path / "encryption_keys"
    key_file.write_text(f"local:{KEY_TEXT[:-8]}\n")
    key_file.chmod(0o600)
    with pytest.raises(ImproperlyConfigured, match="32 bytes") as caught:
        env_encryption_keys("K", local_file=key_file, create=False, environ={})
    assert str(key_file) in str(caught.value)
    assert KEY_TEXT[:12] not in str(caught.value)
