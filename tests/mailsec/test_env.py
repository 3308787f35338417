"""The strict environment readers: good values parse, malformed ones stop start-up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mailsec.env import (
    Nameserver,
    env_bool,
    env_int,
    env_list,
    env_nameservers,
    env_networks,
    env_secret_key,
    parse_database_url,
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
