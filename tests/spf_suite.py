"""The RFC 7208 SPF test suite (openspf.org YAML) as test cases and Knot zone files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUITE = Path(
    os.environ.get(
        "MAILSEC_SPF_SUITE", str(Path(__file__).parent / "fixtures" / "spf" / "rfc7208-tests.yml")
    )
)
ROOT = "."
TIMEOUT = "TIMEOUT"
NONE = "NONE"
NAMESERVER = "ns.spf-suite.invalid."
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class NotRepresentable(ValueError):
    """Zonedata that a zone file served by Knot cannot reproduce."""


@dataclass(frozen=True)
class SpfCase:
    """One test: check_host for `host` and the MAIL FROM (or HELO) identity."""

    scenario: str
    name: str
    host: str
    mailfrom: str
    helo: str
    results: tuple[str, ...]
    explanation: str | None
    spec: str

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"

    @property
    def sender(self) -> str | None:
        return self.mailfrom or None

    @property
    def domain(self) -> str:
        """check_host's <domain>, split from the sender as pyspf (and RFC 7208 4.3) do."""
        if not self.mailfrom:
            return self.helo
        _local, at, domain = self.mailfrom.partition("@")
        return domain if at else self.mailfrom


@dataclass
class ZoneSet:
    """The zone files for one scenario: text by apex, and the apexes left unloaded."""

    files: dict[str, str] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)

    def file_name(self, apex: str) -> str:
        return "root.zone" if apex == ROOT else f"{apex}.zone"

    def write(self, directory: Path) -> dict[str, str | None]:
        """Write the zone files; returns KnotServer's `zone_files` mapping."""
        directory.mkdir(parents=True, exist_ok=True)
        mapping: dict[str, str | None] = {}
        for apex, text in self.files.items():
            (directory / self.file_name(apex)).write_text(text, encoding="ascii")
            mapping[apex] = self.file_name(apex)
        for apex in self.failing:
            mapping[apex] = None
        return mapping


@dataclass(frozen=True)
class Scenario:
    """One YAML document: its test cases and the DNS data they run against."""

    slug: str
    description: str
    zonedata: Mapping[str, list[Any]]
    cases: tuple[SpfCase, ...]

    def zones(self) -> ZoneSet:
        return build_zones(self.zonedata)


def slugify(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def load_suite(path: Path = SUITE) -> list[Scenario]:
    with path.open("rb") as stream:
        documents = list(yaml.safe_load_all(stream))
    scenarios = []
    for document in documents:
        slug = slugify(document["description"])
        cases = tuple(
            SpfCase(
                scenario=slug,
                name=name,
                host=str(test["host"]),
                mailfrom=str(test["mailfrom"]),
                helo=str(test["helo"]),
                results=_results(test["result"]),
                explanation=test.get("explanation"),
                spec=str(test.get("spec", "")),
            )
            for name, test in document["tests"].items()
        )
        scenarios.append(Scenario(slug, document["description"], document["zonedata"], cases))
    return scenarios


def _results(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


# --- zone files -----------------------------------------------------------------------------


def _normal(name: str) -> str:
    return name.rstrip(".").lower()


def _is_below(name: str, apex: str) -> bool:
    return apex == ROOT or name == apex or name.endswith("." + apex)


def _enclosing(name: str, apexes: Iterable[str]) -> str:
    """The closest apex at or above `name` (the zone Knot answers it from)."""
    return max((a for a in apexes if _is_below(name, a)), key=lambda a: 0 if a == ROOT else len(a))


# Each scenario's zonedata becomes the zones of one Knot server, answering as the suite's own
# driver (pyspf's test/testspf.py) does:
# - One root zone "." holds every name, so a name the scenario does not define is NXDOMAIN; with
#   a zone per domain, Knot would REFUSE such names and the Resolver would report an error.
# - SPF (type 99) records are published as SPF, and also as TXT at names without TXT data (even
#   "TXT: NONE"), as the driver duplicates them.
# - A name given TIMEOUT must fail to resolve. It becomes a zone Knot is configured to serve but
#   has no file for, which Knot answers with SERVFAIL, so the Resolver returns an error; the
#   zonedata names below it get zones of their own so that they still answer. Knot cannot fail
#   one query type and answer another: a name with TXT data before its TIMEOUT (the driver answers
#   TXT, times out the rest) keeps its records and answers other types with no data; a name
#   without (its TXT query times out) fails for every type and loses its SPF (type 99) records,
#   which RFC 7208 evaluation never asks for. Other combinations raise NotRepresentable.
# - A TXT record with no strings ("SPF: []") cannot exist on the wire and is left out; pyspf
#   skips such a record anyway.
def build_zones(zonedata: Mapping[str, list[Any]]) -> ZoneSet:
    records: dict[str, list[tuple[str, Any]]] = {}
    failing: set[str] = set()
    for raw_name, entries in zonedata.items():
        name = _normal(raw_name)
        name_records, fails = _name_records(raw_name, entries)
        if fails:
            failing.add(name)
        else:
            records.setdefault(name, []).extend(name_records)

    apexes = {ROOT, *failing}
    # Shortest names first, so a name below a failing zone is only given a zone of its own when
    # no working zone under the failing one already holds it.
    for name in sorted(records, key=lambda n: n.count(".")):
        if _enclosing(name, apexes) in failing:
            apexes.add(name)

    texts: dict[str, list[str]] = {apex: _zone_head(apex) for apex in apexes - failing}
    for name, name_records in sorted(records.items()):
        owner = _fqdn(name)
        texts[_enclosing(name, apexes)].extend(
            f"{owner} {rtype} {rdata}" for rtype, rdata in name_records
        )
    return ZoneSet(
        files={apex: "\n".join(lines) + "\n" for apex, lines in texts.items()},
        failing=sorted(failing),
    )


def _zone_head(apex: str) -> list[str]:
    origin = _fqdn(apex)
    return [
        "$TTL 300",
        f"{origin} SOA {NAMESERVER} hostmaster.spf-suite.invalid. 1 7200 3600 1209600 300",
        f"{origin} NS {NAMESERVER}",
    ]


def _name_records(name: str, entries: list[Any]) -> tuple[list[tuple[str, str]], bool]:
    """One name's records as (type, rdata text), and whether the name must fail to resolve."""
    typed: list[tuple[str, Any]] = []
    has_txt = False
    txt_before_timeout = False
    timeout = False
    for entry in entries:
        if entry == TIMEOUT:
            timeout = True
            continue
        if not isinstance(entry, dict):
            raise NotRepresentable(f"{name}: unknown zonedata entry {entry!r}")
        for rtype, value in entry.items():
            if value == TIMEOUT:
                raise NotRepresentable(f"{name}: a timeout for {rtype} only")
            if rtype == "TXT":
                has_txt = True
                if not timeout and value != NONE:
                    txt_before_timeout = True
            if value != NONE:
                typed.append((rtype, value))
    if not has_txt:
        typed += [("TXT", value) for rtype, value in typed if rtype == "SPF"]
    fails = timeout and not txt_before_timeout
    if fails:
        lost = sorted({rtype for rtype, _ in typed} - {"SPF"})
        if lost:
            raise NotRepresentable(f"{name}: {', '.join(lost)} data on a name that times out")
        return [], True
    rendered = [(rtype, _rdata(name, rtype, value)) for rtype, value in typed]
    return [(rtype, rdata) for rtype, rdata in rendered if rdata is not None], False


def _rdata(name: str, rtype: str, value: Any) -> str | None:
    if rtype in {"TXT", "SPF"}:
        strings = [value] if isinstance(value, str) else list(value)
        if not strings:
            return None  # no character-strings at all: not a valid record
        return " ".join(_character_strings(s) for s in strings)
    if rtype in {"A", "AAAA"}:
        return str(value)
    if rtype == "MX":
        preference, host = value
        return f"{int(preference)} {_fqdn(str(host))}"
    if rtype in {"PTR", "CNAME"}:
        return _fqdn(str(value))
    raise NotRepresentable(f"{name}: record type {rtype}")


def _character_strings(text: str) -> str:
    """Zone-file text for one string, split at 255 bytes as a character-string must be."""
    data = text.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + "".join(_escape_text(b) for b in chunk) + '"' for chunk in chunks)


def _escape_text(byte: int) -> str:
    if 0x20 <= byte < 0x7F and byte not in b'"\\':
        return chr(byte)
    return f"\\{byte:03d}"


def _fqdn(name: str) -> str:
    name = name.rstrip(".")
    if not name:
        return "."
    return ".".join(_label(label) for label in name.split(".")) + "."


def _label(label: str) -> str:
    if label == "*":
        return label
    return "".join(c if c in _PLAIN else "".join(f"\\{b:03d}" for b in c.encode()) for c in label)
