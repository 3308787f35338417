"""SPF records (RFC 7208): parsing, and the verdict over a domain's record and its includes.

Pure: the lookups are made by `dns_records.checks`, which hands over an `SpfNode` tree.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from dns_records.models import CheckName, CheckStatus
from dns_records.resolver import Lookup, LookupStatus
from dns_records.results import CheckOutcome, Finding, outcome_from_findings

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

    @property
    def has_macro(self) -> bool:
        return "%" in self.value

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


@dataclass
class SpfNode:
    """A domain's SPF lookup, with the records its include/redirect terms lead to."""

    domain: str
    txt: Lookup
    via: str = ""  # the term that led here, e.g. "include:_spf.example.net"
    children: list[SpfNode] = field(default_factory=list)
    # Lookups the terms of this record make (a, mx, exists, mx targets), by term text.
    term_lookups: dict[str, list[Lookup]] = field(default_factory=dict)
    loop: bool = False
    unexpanded: bool = False  # a macro in the target: the real name is known only at receipt
    truncated: bool = False  # not fetched: the tree had grown past MAX_SPF_NODES records

    def spf_records(self) -> list[str]:
        return [r for r in self.txt.records if is_spf(r)] if self.txt.ok else []

    def record(self) -> SpfRecord | None:
        """The domain's one valid SPF record; None when it has none, several, or a broken one."""
        records = self.spf_records()
        if len(records) != 1:
            return None
        try:
            return parse_spf(records[0])
        except SpfSyntaxError:
            return None


@dataclass
class SpfTally:
    lookups: int = 0
    void: int = 0
    truncated: bool = False
    findings: list[Finding] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def _is_void(lookup: Lookup) -> bool:
    return lookup.status in {LookupStatus.NXDOMAIN, LookupStatus.NODATA}


def _walk(node: SpfNode, tally: SpfTally, depth: int) -> SpfRecord | None:
    """Count lookups and collect problems of one node and those below it."""
    where = node.via or node.domain
    if node.loop:
        tally.findings.append(
            Finding(CheckStatus.FAIL, f"{where} loops back to a record already included")
        )
        return None
    if node.unexpanded:
        return None
    if node.truncated:
        tally.truncated = True
        return None
    if node.txt.failed:
        tally.findings.append(
            Finding(
                CheckStatus.ERROR,
                f"Could not look up the SPF record of {node.domain}: {node.txt.reason}",
            )
        )
        return None
    records = node.spf_records()
    if not records:
        if depth > 0:
            tally.void += 1 if _is_void(node.txt) else 0
            tally.findings.append(
                Finding(
                    CheckStatus.FAIL, f"{where} points to {node.domain}, which has no SPF record"
                )
            )
        return None
    if len(records) > 1:
        tally.findings.append(
            Finding(
                CheckStatus.FAIL,
                f"{node.domain} publishes {len(records)} SPF records; receivers return permerror",
            )
        )
        return None
    try:
        record = parse_spf(records[0])
    except SpfSyntaxError as exc:
        tally.findings.append(
            Finding(CheckStatus.FAIL, f"SPF syntax error at {node.domain}: {exc}")
        )
        return None
    tally.records.append({"domain": node.domain, "record": record.text, "via": node.via})
    for term in effective_terms(record):
        counts = term.kind == "mechanism" and term.name in LOOKUP_MECHANISMS
        counts = counts or (term.kind == "modifier" and term.name == "redirect")
        if counts:
            tally.lookups += 1
        for lookup in node.term_lookups.get(str(term), []):
            if lookup.failed:
                tally.findings.append(
                    Finding(
                        CheckStatus.ERROR,
                        f"Could not resolve {term} at {node.domain}: {lookup.reason}",
                    )
                )
            elif (
                _is_void(lookup)
                and term.name in {"a", "mx", "exists"}
                and lookup.rdtype in {"MX", "A"}
            ):
                tally.void += 1
        if term.name == "mx":
            mx = next(
                (lk for lk in node.term_lookups.get(str(term), []) if lk.rdtype == "MX"), None
            )
            if mx is not None and mx.ok and len(mx.records) > MAX_MX_OR_PTR_NAMES:
                tally.findings.append(
                    Finding(CheckStatus.FAIL, f"{term} at {node.domain} has more than 10 MX names")
                )
        if term.name == "ptr" and term.kind == "mechanism":
            tally.findings.append(
                Finding(
                    CheckStatus.WARNING,
                    f"{term} at {node.domain}: the ptr mechanism is slow and deprecated (RFC 7208 5.5)",
                )
            )
    for child in node.children:
        _walk(child, tally, depth + 1)
    return record


def _effective_all(node: SpfNode) -> str | None:
    """The qualifier of the 'all' that ends evaluation, following redirect= when there is none."""
    record = node.record()
    if record is None:
        return None
    if record.all_qualifier is not None:
        return record.all_qualifier
    redirect = record.modifier("redirect")
    if redirect is None:
        return None
    child = next((c for c in node.children if c.via == str(redirect)), None)
    return _effective_all(child) if child is not None else None


def evaluate_spf_tree(
    root: SpfNode, evaluations: list[dict[str, str]] | None = None
) -> CheckOutcome:
    """The spf check's verdict from the looked-up tree and the per-address evaluations."""
    details: dict[str, Any] = {"domain": root.domain}
    if root.txt.failed:
        return CheckOutcome(
            CheckName.SPF, CheckStatus.ERROR,
            f"Could not look up the SPF record: {root.txt.reason}", details,
        )  # fmt: skip
    records = root.spf_records()
    if not records:
        return CheckOutcome(
            CheckName.SPF, CheckStatus.FAIL,
            f"{root.domain} has no SPF record: anyone can send mail in its name.", details,
        )  # fmt: skip
    tally = SpfTally()
    _walk(root, tally, 0)
    details.update(
        record=records[0] if len(records) == 1 else records,
        lookups=tally.lookups,
        void_lookups=tally.void,
        includes=tally.records,
    )
    findings = list(tally.findings)
    if tally.truncated:
        findings.append(
            Finding(
                CheckStatus.FAIL,
                f"SPF expands to more than {tally.lookups} DNS lookups (mailsec stopped counting); receivers stop at 10",
            )
        )
    elif tally.lookups > MAX_LOOKUPS:
        findings.append(
            Finding(
                CheckStatus.FAIL,
                f"SPF needs {tally.lookups} DNS lookups; receivers stop at 10 and return permerror",
            )
        )
    if tally.void > MAX_VOID_LOOKUPS:
        findings.append(
            Finding(
                CheckStatus.FAIL, f"SPF makes {tally.void} void lookups; receivers stop after 2"
            )
        )
    qualifier = _effective_all(root)
    details["all"] = qualifier
    if len(records) == 1 and not any(f.status is CheckStatus.FAIL for f in findings):
        if qualifier in {"+", "?"}:
            findings.append(
                Finding(CheckStatus.FAIL, f"SPF ends in {qualifier}all: it authorises every sender")
            )
        elif qualifier is None:
            findings.append(
                Finding(CheckStatus.FAIL, "SPF has no 'all' term: unlisted senders get neutral")
            )
        elif qualifier == "~":
            findings.append(
                Finding(
                    CheckStatus.WARNING,
                    "SPF ends in ~all (softfail); -all tells receivers to reject",
                )
            )
    for evaluation in evaluations or []:
        if evaluation["result"] == "temperror":
            findings.append(
                Finding(
                    CheckStatus.ERROR,
                    f"Could not evaluate SPF for {evaluation['ip']}: {evaluation.get('explanation', '')}",
                )
            )
        elif evaluation["result"] != "pass":
            findings.append(
                Finding(
                    CheckStatus(evaluation.get("severity", "warning")),
                    f"{evaluation['role']} {evaluation['ip']} does not pass SPF ({evaluation['result']})",
                )
            )
    details["evaluations"] = evaluations or []
    ok = f"SPF is valid, ends in -all, {tally.lookups} of 10 lookups"
    return outcome_from_findings(CheckName.SPF, findings, ok, details)


def suggest_spf(
    domain: str, current: str | None, host_addresses: list[str], *, authorise_mx: bool = False
) -> str:
    """A record to publish: the current one made strict, or one built from MX and hosts.

    `authorise_mx` adds the `mx` mechanism when the domain's own mail servers would not pass.
    """
    extra = [f"ip6:{a}" if ":" in a else f"ip4:{a}" for a in host_addresses]
    record = None
    if current:
        try:
            record = parse_spf(current)
        except SpfSyntaxError:
            record = None
    if record is None:
        return " ".join(["v=spf1", "mx", *extra, "-all"])
    if record.all_qualifier is None and record.modifier("redirect") is not None:
        # The redirect target decides; strengthening it is that domain's business.
        return record.text
    terms = [str(t) for t in record.terms if t.kind == "mechanism" and t.name != "all"]
    if authorise_mx and "mx" not in terms:
        terms.insert(0, "mx")
    terms += [a for a in extra if a not in terms]
    modifiers = [str(t) for t in record.terms if t.kind == "modifier" and t.name != "redirect"]
    return " ".join(["v=spf1", *terms, "-all", *modifiers])
