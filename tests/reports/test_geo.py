"""Offline AS and country lookups from an installed MaxMind DB, written by a tiny writer here."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from reports import geo

# --- a minimal MaxMind DB writer (format 2.0: a 24-bit record search tree, then data) ------


def _control(type_number: int, size: int) -> bytes:
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, struct.pack(">H", size - 285)
    else:
        size_bits, extra = 31, struct.pack(">I", size - 65821)[1:]
    if type_number <= 7:
        return bytes([(type_number << 5) | size_bits]) + extra
    return bytes([size_bits, type_number - 7]) + extra


def _uint(type_number: int, value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_number, len(raw)) + raw


def encode(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, int):
        return _uint(6 if value < 2**32 else 9, value)
    if isinstance(value, dict):
        body = b"".join(encode(str(k)) + encode(v) for k, v in value.items())
        return _control(7, len(value)) + body
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(type(value))


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]], database_type: str) -> Path:
    """An IPv6-tree database (IPv4 networks under ::/96) mapping each network to its record."""
    data = b""
    nodes: list[list[Any]] = [[None, None]]
    for network, record in networks.items():
        net = ipaddress.ip_network(network)
        # An IPv4 network sits under ::/96, where its address is the low 32 bits.
        bits = int(net.network_address)
        length = net.prefixlen + (96 if net.version == 4 else 0)
        offset = len(data)
        data += encode(record)
        node = 0
        for depth in range(length):
            bit = (bits >> (127 - depth)) & 1
            if depth == length - 1:
                nodes[node][bit] = ("data", offset)
            else:
                child = nodes[node][bit]
                if child is None:
                    nodes.append([None, None])
                    child = ("node", len(nodes) - 1)
                    nodes[node][bit] = child
                node = child[1]
    count = len(nodes)

    def value(record: Any) -> int:
        if record is None:
            return count
        kind, number = record
        return number if kind == "node" else count + 16 + number

    tree = b"".join(
        value(left).to_bytes(3, "big") + value(right).to_bytes(3, "big") for left, right in nodes
    )
    metadata = {
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "build_epoch": 1767225600,
        "database_type": database_type,
        "description": {"en": f"{database_type} test data"},
        "ip_version": 6,
        "languages": ["en"],
        "node_count": count,
        "record_size": 24,
    }
    metadata_bytes = encode(metadata)
    # record_size and ip_version are uint16 in the format; the reader accepts either width.
    path.write_bytes(tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + metadata_bytes)
    return path


ASN_NETWORKS = {
    "192.0.2.0/24": {
        "autonomous_system_number": 64500,
        "autonomous_system_organization": "Example Net",
    },
    "1.1.1.0/24": {
        "autonomous_system_number": 13335,
        "autonomous_system_organization": "Cloudflare",
    },
    "2001:db8::/32": {
        "autonomous_system_number": 64501,
        "autonomous_system_organization": "Six Net",
    },
}
COUNTRY_NETWORKS = {
    "192.0.2.0/24": {"country": {"iso_code": "NL", "names": {"en": "Netherlands"}}},
    "8.8.8.0/24": {"country": {"iso_code": "US"}},
}


@pytest.fixture
def ip_dir(tmp_path, settings):
    settings.MAILSEC_IP_DATABASE_DIR = str(tmp_path / "installed")
    geo._readers.clear()
    yield tmp_path / "installed"
    geo._readers.clear()


@pytest.fixture
def asn_file(tmp_path):
    return write_mmdb(
        tmp_path / "dbip-asn-lite.mmdb", ASN_NETWORKS, "DBIP-ASN-Lite (compat=GeoLite2-ASN)"
    )


@pytest.fixture
def country_file(tmp_path):
    return write_mmdb(tmp_path / "dbip-country-lite.mmdb", COUNTRY_NETWORKS, "DBIP-Country-Lite")


def test_nothing_installed_answers_nothing(ip_dir):
    assert geo.lookup("192.0.2.1") == geo.IpFacts()
    assert geo.attribution() == []
    assert geo.installed() == []


@pytest.mark.django_db
def test_install_updates_the_sources_already_known(ip_dir, asn_file, capsys):
    from reports.models import SourceInfo

    SourceInfo.objects.create(ip="192.0.2.8", ptr="mail.example.com", ptr_status="ok")
    SourceInfo.objects.create(ip="203.0.113.8", ptr="", ptr_status="none")
    call_command("install_ip_database", str(asn_file), "--kind", "asn")
    assert "1 known sources updated" in capsys.readouterr().out
    known = SourceInfo.objects.get(ip="192.0.2.8")
    assert (known.asn, known.as_org, known.ptr) == (64500, "Example Net", "mail.example.com")
    assert SourceInfo.objects.get(ip="203.0.113.8").asn is None


@pytest.mark.django_db
def test_install_then_lookup_asn_and_country(ip_dir, asn_file, country_file, capsys):
    call_command("install_ip_database", str(asn_file), "--kind", "asn")
    assert "Installed asn database" in capsys.readouterr().out
    call_command("install_ip_database", str(country_file), "--kind", "country")
    assert (ip_dir / "asn.mmdb").is_file() and (ip_dir / "country.mmdb").is_file()
    assert geo.lookup("192.0.2.77") == geo.IpFacts(64500, "Example Net", "NL")
    assert geo.lookup("2001:db8::25") == geo.IpFacts(64501, "Six Net", "")
    assert geo.lookup("8.8.8.8") == geo.IpFacts(None, "", "US")
    assert geo.lookup("203.0.113.1") == geo.IpFacts()
    assert geo.lookup("not an address") == geo.IpFacts()


def test_attribution_names_the_database_and_its_licence(ip_dir, asn_file):
    geo.install(asn_file, kind="asn")
    lines = geo.attribution()
    assert len(lines) == 1
    assert "DBIP-ASN-Lite" in lines[0]
    assert "DB-IP" in lines[0] and "CC BY 4.0" in lines[0]
    assert "2026-01-01" in lines[0]


def test_a_new_install_replaces_the_old_file_for_readers(ip_dir, asn_file, tmp_path):
    geo.install(asn_file, kind="asn")
    assert geo.lookup("192.0.2.1").asn == 64500
    newer = write_mmdb(
        tmp_path / "newer.mmdb",
        {
            "192.0.2.0/24": {
                "autonomous_system_number": 64999,
                "autonomous_system_organization": "New",
            }
        },
        "DBIP-ASN-Lite",
    )
    geo.install(newer, kind="asn")
    assert geo.lookup("192.0.2.1") == geo.IpFacts(64999, "New", "")


def test_a_file_that_is_not_a_database_is_refused_and_nothing_installed(ip_dir, tmp_path):
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"<html>a download page, not a database</html>")
    with pytest.raises(CommandError, match="not a MaxMind DB"):
        call_command("install_ip_database", str(junk))
    assert not (ip_dir / "asn.mmdb").exists()
    with pytest.raises(CommandError, match="not a file"):
        call_command("install_ip_database", str(tmp_path / "missing.mmdb"))


def test_the_wrong_kind_is_refused(ip_dir, asn_file, country_file):
    with pytest.raises(geo.IpDatabaseError):
        geo.install(asn_file, kind="country")
    with pytest.raises(geo.IpDatabaseError):
        geo.install(country_file, kind="asn")
    assert geo.installed() == []


@pytest.mark.django_db
def test_sources_get_asn_and_country_when_resolved(ip_dir, asn_file, country_file):
    from reports.models import SourceInfo
    from reports.sources import SourceName, source_store

    geo.install(asn_file, kind="asn")
    geo.install(country_file, kind="country")
    from django.utils import timezone

    info = source_store(SourceName("192.0.2.9", "", "none"), now=timezone.now())
    info = SourceInfo.objects.get(pk=info.pk)
    assert (info.asn, info.as_org, info.country) == (64500, "Example Net", "NL")


def test_hostile_records_are_bounded(ip_dir, tmp_path):
    weird = write_mmdb(
        tmp_path / "weird.mmdb",
        {
            "1.1.1.0/24": {
                "autonomous_system_number": 13335,
                "autonomous_system_organization": "x" * 1000,
            },
            "192.0.2.0/24": {"autonomous_system_number": "AS64500"},
            "198.51.100.0/24": {"autonomous_system_number": 2**40},
        },
        "Weird-ASN",
    )
    geo.install(weird, kind="asn")
    assert len(geo.lookup("1.1.1.1").as_org) == 255
    assert geo.lookup("192.0.2.1").asn == 64500
    assert geo.lookup("198.51.100.1").asn is None
