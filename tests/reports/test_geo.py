"""Offline AS and country lookups from an installed MaxMind DB, written by a tiny writer here."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from reports import geo
from tests.reports.mmdb import write_mmdb

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
COUNTRY_NETWORKS: dict[str, dict[str, Any]] = {
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
    from mailsec.models import AuditLog

    entry = AuditLog.objects.get(action="report.ip_database.install")
    assert entry.after is not None
    assert entry.after["kind"] == "asn" and entry.after["sources_updated"] == 1
    assert entry.actor_name == "system"
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
