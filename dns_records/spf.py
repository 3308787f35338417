"""SPF records (RFC 7208): the grammar, parsed into terms. Pure.

The verdict over a domain's record and everything it includes is the spf check
(`dns_records.checks.spf`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_OR_PTR_NAMES = 10

QUALIFIERS = "+-~?"
LOOKUP_MECHANISMS = {"include", "a", "mx", "ptr", "exists"}
_MACRO = re.compile(r"%(?:\{[slodiphcrtv]\d*r?[.\-+,/_=]*\}|%|_|-)", re.IGNORECASE)
_MODIFIER_NAME = re.compile(r"^[a-z][a-z0-9_.\-]*$", re.IGNORECASE)
_DOMAIN_END = re.compile(r"(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.?|%\{[^}]*\})$", re.IGNORECASE)
_CIDR = re.compile(r"^(?P<spec>.*?)(?:/(?P<v4>\d{1,2}))?(?://(?P<v6>\d{1,3}))?$")


class SpfSyntaxError(ValueError):
    """The record breaks RFC 7208's grammar: receivers return permerror for it."""


@dataclass(frozen=True)
class Term:
    """A mechanism (`-include:x`) or a modifier (`redirect=x`) of a record."""

    kind: str  # "mechanism" or "modifier"
    name: str
    qualifier: str = "+"
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "modifier":
            return f"{self.name}={self.value}"
        qualifier = "" if self.qualifier == "+" else self.qualifier
        if not self.value:
            return f"{qualifier}{self.name}"
        separator = "" if self.value.startswith("/") else ":"  # a/24, mx//64: a prefix, no domain
        return f"{qualifier}{self.name}{separator}{self.value}"


@dataclass(frozen=True)
class SpfRecord:
    text: str
    terms: tuple[Term, ...]

    def mechanisms(self) -> list[Term]:
        return [t for t in self.terms if t.kind == "mechanism"]

    def modifier(self, name: str) -> Term | None:
        return next((t for t in self.terms if t.kind == "modifier" and t.name == name), None)

    @property
    def all_qualifier(self) -> str | None:
        term = next((t for t in self.mechanisms() if t.name == "all"), None)
        return term.qualifier if term else None


def is_spf(text: str) -> bool:
    lowered = text.lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def first_control_character(text: str, *, allowed: str = "") -> tuple[int, str] | None:
    """The first C0 or C1 control character (or DEL) in `text` and its index, None if none.

    DNS carries any byte in a TXT record, NUL included; the record grammars do not.
    """
    for position, char in enumerate(text):
        code = ord(char)
        if (code < 0x20 or 0x7F <= code <= 0x9F) and char not in allowed:
            return position, char
    return None


def _check_macro_string(value: str, term: str) -> None:
    stripped = _MACRO.sub("", value)
    if "%" in stripped:
        raise SpfSyntaxError(f"bad macro in {term!r}")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise SpfSyntaxError(f"bad character in {term!r}")


def _check_domain_spec(value: str, term: str) -> None:
    if not value:
        raise SpfSyntaxError(f"{term!r} needs a domain")
    _check_macro_string(value, term)
    if "%" not in value and not _DOMAIN_END.search("." + value.lstrip(".")):
        raise SpfSyntaxError(f"{term!r} does not end in a domain name")
    if "%" not in value and "." not in value.strip("."):
        raise SpfSyntaxError(f"{term!r} names a single-label domain")


def _split_cidr(value: str, term: str) -> str:
    """Check a/mx's optional dual CIDR lengths; return the domain part."""
    match = _CIDR.match(value)
    if match is None:  # pragma: no cover - the pattern matches any string
        raise SpfSyntaxError(f"bad {term!r}")
    v4, v6 = match.group("v4"), match.group("v6")
    if v4 is not None and int(v4) > 32:
        raise SpfSyntaxError(f"IPv4 prefix too long in {term!r}")
    if v6 is not None and int(v6) > 128:
        raise SpfSyntaxError(f"IPv6 prefix too long in {term!r}")
    return match.group("spec")


def _parse_mechanism(token: str) -> Term:
    qualifier = "+"
    body = token
    if body and body[0] in QUALIFIERS:
        qualifier, body = body[0], body[1:]
    name, sep, value = body.partition(":")
    name = name.lower()
    if "/" in name:  # a/24 and mx//64 carry the prefix without a domain
        name, slash, rest = name.partition("/")
        value, sep = slash + rest, ""
    if name == "all":
        if sep or value:
            raise SpfSyntaxError(f"'all' takes no argument: {token!r}")
    elif name in {"include", "exists"}:
        _check_domain_spec(value, token)
    elif name in {"a", "mx"}:
        spec = _split_cidr(value, token)
        if sep:
            _check_domain_spec(spec, token)
    elif name == "ptr":
        if sep:
            _check_domain_spec(value, token)
    elif name in {"ip4", "ip6"}:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SpfSyntaxError(f"bad address in {token!r}") from None
        if (name == "ip4") != (network.version == 4):
            raise SpfSyntaxError(f"wrong address family in {token!r}")
        if "/" not in value and value != str(network.network_address):
            raise SpfSyntaxError(f"bad address in {token!r}")
    else:
        raise SpfSyntaxError(f"unknown mechanism {token!r}")
    return Term("mechanism", name, qualifier, value)


def parse_spf(text: str) -> SpfRecord:
    """Parse one SPF record, raising SpfSyntaxError where a receiver would return permerror."""
    if not is_spf(text):
        raise SpfSyntaxError("record does not start with v=spf1")
    control = first_control_character(text)
    if control is not None:
        position, char = control
        raise SpfSyntaxError(
            f"control character {ascii(char)[1:-1]} at position {position}: RFC 7208 allows only "
            "printable characters, separated by spaces"
        )
    terms: list[Term] = []
    seen_modifiers: set[str] = set()
    for token in text.split(" ")[1:]:
        if token == "":
            continue
        name, eq, value = token.partition("=")
        if eq and _MODIFIER_NAME.match(name) and ":" not in name and "/" not in name:
            key = name.lower()
            if key in {"redirect", "exp"}:
                if key in seen_modifiers:
                    raise SpfSyntaxError(f"more than one {key}= modifier")
                _check_domain_spec(value, token)
            else:
                _check_macro_string(value, token)
            seen_modifiers.add(key)
            terms.append(Term("modifier", key, "", value))
        else:
            terms.append(_parse_mechanism(token))
    return SpfRecord(text=text, terms=tuple(terms))


def effective_terms(record: SpfRecord) -> list[Term]:
    """The terms evaluation can reach: redirect= is ignored when the record has 'all' (RFC 7208 6.1)."""
    if record.all_qualifier is None:
        return list(record.terms)
    return [t for t in record.terms if not (t.kind == "modifier" and t.name == "redirect")]


def term_target(term: Term, domain: str) -> str | None:
    """The name a term makes a lookup for; None when a macro hides it until a message arrives."""
    if term.name not in LOOKUP_MECHANISMS | {"redirect"} or term.name == "ptr":
        return None
    value = term.value
    if term.name in {"a", "mx"}:
        value = _split_cidr(value, str(term))
    if not value:
        return domain
    if "%" in value:
        return None
    return value.lower().rstrip(".")


def cidr_lengths(term: Term) -> tuple[int | None, int | None]:
    """The IPv4 and IPv6 prefix lengths of an a or mx term (`a:x/24//64`), None where absent."""
    match = _CIDR.match(term.value)
    if match is None:  # pragma: no cover - the pattern matches any string
        return None, None
    v4, v6 = match.group("v4"), match.group("v6")
    return (int(v4) if v4 else None), (int(v6) if v6 else None)
