"""Offline IP-to-ASN and IP-to-country lookups: the one module that reads MaxMind DB files.

The admin downloads a freely licensed database (for example DB-IP's IP-to-ASN Lite and
IP-to-Country Lite, CC BY 4.0) and installs it with `manage.py install_ip_database FILE --kind
asn|country`, which checks it and copies it under MAILSEC_IP_DATABASE_DIR (default
`var/ip-databases/`). Nothing here ever reaches the network: without an installed file, lookups
answer nothing, and the pages show no AS or country.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
from django.conf import settings

KINDS = ("asn", "country")
# What a database of each kind must answer for some address, to be accepted.
_PROBES = ("1.1.1.1", "8.8.8.8", "9.9.9.9", "2001:4860:4860::8888")


class IpDatabaseError(ValueError):
    """The file is not a usable MaxMind DB of the kind named."""


@dataclass(frozen=True)
class IpFacts:
    asn: int | None = None
    as_org: str = ""
    country: str = ""


@dataclass(frozen=True)
class InstalledDatabase:
    kind: str
    path: Path
    database_type: str
    description: str
    build_date: str
    source_name: str
    installed_at: str


def database_dir() -> Path:
    configured = getattr(settings, "MAILSEC_IP_DATABASE_DIR", "")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "ip-databases"


def database_path(kind: str) -> Path:
    if kind not in KINDS:
        raise IpDatabaseError(f"kind must be one of {', '.join(KINDS)}")
    return database_dir() / f"{kind}.mmdb"


def _info_path(kind: str) -> Path:
    return database_dir() / f"{kind}.json"


def _asn_fields(record: Any) -> IpFacts:
    if not isinstance(record, dict):
        return IpFacts()
    number = record.get("autonomous_system_number", record.get("asn"))
    org = record.get("autonomous_system_organization", record.get("as_org", ""))
    if isinstance(number, str) and number.upper().startswith("AS"):
        number = number[2:]
    try:
        asn = int(number) if number is not None else None
    except (TypeError, ValueError):
        asn = None
    if asn is not None and not 0 < asn < 2**32:
        asn = None
    return IpFacts(asn=asn, as_org=str(org or "")[:255])


def _country_field(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    country = record.get("country", record.get("country_code", ""))
    if isinstance(country, dict):
        country = country.get("iso_code", "")
    code = str(country or "").upper()
    return code if len(code) == 2 and code.isalpha() and code.isascii() else ""


def _validate(path: Path, kind: str) -> Any:
    """Open the file and make sure it answers like a database of `kind`; its metadata."""
    try:
        reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise IpDatabaseError(f"not a MaxMind DB file: {exc}") from None
    try:
        metadata = reader.metadata()
        answered = False
        for probe in _PROBES:
            try:
                record = reader.get(probe)
            except (ValueError, maxminddb.InvalidDatabaseError):
                continue
            if kind == "asn" and _asn_fields(record).asn is not None:
                answered = True
            if kind == "country" and _country_field(record):
                answered = True
        if not answered and metadata.node_count > 0:
            # A small or regional database may not cover the probes: accept it only if its type
            # names the kind, so an ASN file is never installed as the country database.
            words = metadata.database_type.lower()
            if ("asn" in words) != (kind == "asn"):
                raise IpDatabaseError(
                    f"database type {metadata.database_type!r} is not an {kind} database"
                )
        return metadata
    finally:
        reader.close()


def install(source: Path, *, kind: str) -> InstalledDatabase:
    """Check `source` and copy it into place atomically (readers never see half a file)."""
    target = database_path(kind)
    if not source.is_file():
        raise IpDatabaseError(f"{source} is not a file")
    metadata = _validate(source, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{kind}-", suffix=".mmdb")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        _validate(Path(temporary), kind)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    description = metadata.description.get("en") or next(iter(metadata.description.values()), "")
    info = {
        "database_type": metadata.database_type,
        "description": description,
        "build_date": dt.datetime.fromtimestamp(metadata.build_epoch, dt.UTC).date().isoformat(),
        "source_name": source.name,
        "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _info_path(kind).write_text(json.dumps(info, indent=1))
    _readers.clear()
    return InstalledDatabase(kind=kind, path=target, **info)


def installed() -> list[InstalledDatabase]:
    found = []
    for kind in KINDS:
        path = database_path(kind)
        if not path.is_file():
            continue
        try:
            info = json.loads(_info_path(kind).read_text())
        except (OSError, ValueError):
            info = {}
        found.append(
            InstalledDatabase(
                kind=kind,
                path=path,
                database_type=str(info.get("database_type", "")),
                description=str(info.get("description", "")),
                build_date=str(info.get("build_date", "")),
                source_name=str(info.get("source_name", "")),
                installed_at=str(info.get("installed_at", "")),
            )
        )
    return found


def attribution() -> list[str]:
    """The credit lines the pages show while a database is in use (CC BY requires it)."""
    lines = []
    for database in installed():
        name = database.description or database.database_type or database.source_name
        text = f"{database.kind.upper()} data: {name}"
        if database.build_date:
            text += f" ({database.build_date})"
        if "db-ip" in f"{name} {database.source_name}".lower().replace("dbip", "db-ip"):
            text += " by DB-IP (https://db-ip.com), licensed under CC BY 4.0"
        lines.append(text)
    return lines


# Open readers, keyed by kind, reopened when the file changes (a new install, another directory).
_readers: dict[str, tuple[tuple[str, float], Any]] = {}
_lock = threading.Lock()


def _reader(kind: str) -> Any:
    path = database_path(kind)
    try:
        version = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    with _lock:
        cached = _readers.get(kind)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError):
            return None
        _readers[kind] = (version, reader)
        return reader


def _get(kind: str, address: str) -> Any:
    reader = _reader(kind)
    if reader is None:
        return None
    try:
        return reader.get(address)
    except (ValueError, maxminddb.InvalidDatabaseError):
        return None  # an IPv6 address in an IPv4-only database, or a damaged file


def lookup(address: str) -> IpFacts:
    """AS number, AS organisation and country of an address, from what is installed."""
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        return IpFacts()
    asn = _asn_fields(_get("asn", address))
    return IpFacts(asn=asn.asn, as_org=asn.as_org, country=_country_field(_get("country", address)))
