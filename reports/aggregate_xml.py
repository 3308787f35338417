"""A streaming parser for DMARC aggregate reports (RFC 7489, the older draft, RFC 9990).

The XML is untrusted and may be large. It is never held whole, decompressed or parsed:

1. The prolog (everything before the root element) is scanned as text: any `<!DOCTYPE` or
   other `<!` declaration there is refused (`forbidden_dtd`), so no external entity (XXE) and no
   entity expansion (billion laughs) can ever be reached. Reports never carry a DTD.
2. A scan of the whole stream with bytes operations only (C speed) drains the decompressor,
   so a truncated, corrupt or oversized archive is refused before the first record is handed
   out; it refuses `<!DOCTYPE` and `<!ENTITY` anywhere, checks that a UTF-8 document is valid
   UTF-8 and that it ends with `</feedback>` (a report cut off is refused, not half-read).
3. lxml's `iterparse` (entities, DTD loading and network off, no huge trees) streams the
   records strictly: each finished `<record>` becomes an `AggregateRecord` (`parse_record_fast`,
   one flat pass over its descendants), then is cleared with its predecessors, so memory
   stays flat however many records there are.

The slow path, for what the fast path cannot read as it is: a root element other than
`<feedback>`, invalid UTF-8, or a syntax error before the header is complete. An expat pass
finds the first error and counts the closing record tags; the document is then parsed in
lxml's recover mode (invalid UTF-8 replaced), and kept when that gives a sound header (a
report id, a date range, a policy domain) and exactly as many records as the document closes,
with the problem recorded in `header.errors` (the samples parsedmarc recovers: an unclosed
wrapper element, a stray `<` in a field, an invalid UTF-8 byte). Otherwise it is
`malformed_xml`, with the line. A syntax error the fast path meets after records were handed
out is `malformed_xml` raised from `records()`: the storage layer keeps nothing of the report.

Tags are matched by local name, so namespaced (RFC 9990's `urn:ietf:params:xml:ns:dmarc-2.0`,
prefixed) and plain reports read alike. Result words are lower-cased; domains lower-cased
without a trailing dot; source addresses in ipaddress' compressed form.

A record whose `source_ip` is not an IP address or whose `count` is not a non-negative integer
rejects the whole report (`missing_field`, raised from `records()`): the storage layer then
keeps nothing of it and quarantines the message, which can be re-processed once understood.
Skipping such a record would silently change the report's totals.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any
from xml.parsers import expat

from lxml import etree

from reports.extract import CHUNK, Opener, Reader, is_blank
from reports.parsed import (
    AggregateHeader,
    AggregateRecord,
    DkimAuth,
    PolicyOverride,
    PublishedPolicy,
    Rejection,
    SpfAuth,
)

DMARC2_NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"
# The prolog (XML declaration, comments) must end within this many bytes.
MAX_PROLOG_BYTES = 1024 * 1024
# Records that may precede a complete header (policy_published after the first records).
MAX_EARLY_RECORDS = 10_000
# Counts above this are no real report's (and would overflow a sum of millions of them).
MAX_COUNT = 10**12
# Timestamps beyond the year 9999 are refused.
MAX_TIMESTAMP = 253_402_300_799

_DECLARATION = b"<!DOCTYPE"
_ENTITY = b"<!ENTITY"
# What lxml raises on input it cannot read (an unknown declared encoding is a LookupError).
_LXML_ERRORS = (etree.LxmlError, LookupError, ValueError)

_TAGS = ("{*}record", "{*}report_metadata", "{*}policy_published", "{*}version")


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""  # a comment or processing instruction
    return tag[tag.rfind("}") + 1 :]


def _text(element: Any) -> str:
    text = element.text
    return text.strip() if text else ""


# --- 1. the prolog -------------------------------------------------------------------------


def _prolog_encoding(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head[:2] == b"<\x00":
        return "utf-16-le"
    if head[:2] == b"\x00<":
        return "utf-16-be"
    return "utf-8"


def _root_name(text: str) -> str | None:
    """The root element's name, or None when more of the prolog is needed.

    Raises `forbidden_dtd` for a DOCTYPE or any other declaration, `malformed_xml` for text
    before the root.
    """
    at = 1 if text.startswith("\ufeff") else 0
    length = len(text)
    while True:
        while at < length and text[at] in " \t\r\n":
            at += 1
        if at >= length:
            return None
        if text.startswith("<?", at):
            end = text.find("?>", at + 2)
            if end < 0:
                return None
            at = end + 2
        elif text.startswith("<!--", at):
            end = text.find("-->", at + 4)
            if end < 0:
                return None
            at = end + 3
        elif text.startswith("<!", at):
            if length - at < 9:
                return None
            raise Rejection("forbidden_dtd", f"the prolog declares {text[at : at + 9]!r}")
        elif text.startswith("<", at):
            end = at + 1
            while end < length and text[end] not in " \t\r\n/>":
                end += 1
            if end >= length:
                return None
            return text[at + 1 : end]
        else:
            raise Rejection(
                "malformed_xml", f"text before the root element: {text[at : at + 20]!r}"
            )


def read_prolog(stream: Reader) -> tuple[bytes, str]:
    """Read up to the root element's start: (the bytes read, the root element's name)."""
    head = b""
    while True:
        data = stream.read(CHUNK)
        if data:
            head += data
        encoding = _prolog_encoding(head)
        text = head.decode(encoding, errors="replace")
        name = _root_name(text)
        if name is not None:
            return head, name
        if not data:
            if is_blank(head):
                raise Rejection("empty", "the XML document is empty")
            raise Rejection("malformed_xml", "the document ends before its root element")
        if len(head) > MAX_PROLOG_BYTES:
            raise Rejection(
                "malformed_xml", f"no root element within the first {MAX_PROLOG_BYTES} bytes"
            )


# --- 2. well-formedness -----------------------------------------------------------------


def _refuse_declaration(*_args: object) -> None:
    raise Rejection("forbidden_dtd", "the document declares a DTD or an entity")


def _occurrences(pattern: bytes, previous: bytes, data: bytes) -> int:
    """Occurrences of `pattern` in `data` or straddling the end of `previous` and `data`."""
    reach = len(pattern) - 1
    return data.count(pattern) + (previous[-reach:] + data[:reach]).count(pattern)


def _occurs(pattern: bytes, previous: bytes, data: bytes) -> bool:
    reach = len(pattern) - 1
    return pattern in data or pattern in previous[-reach:] + data[:reach]


class WellFormedness:
    """What the expat pass found: the first error, and what recovery must account for."""

    def __init__(self) -> None:
        self.error: str | None = None
        # Closing record tags ("</record>", and prefixed "<x:record>" / "</x:record>" pairs).
        self.plain_record_ends = 0
        self.prefixed_record_tags = 0
        self.tail = b""

    @property
    def expected_records(self) -> int:
        return self.plain_record_ends + self.prefixed_record_tags // 2

    @property
    def closes_feedback(self) -> bool:
        """Whether the document ends with </feedback> (then perhaps a wrapper's end tags)."""
        return _closes_feedback(self.tail)


_CLOSED_FEEDBACK = re.compile(
    rb"</(?:[A-Za-z_][\w.-]*:)?feedback\s*>(?:\s*</[^<>]*>|\s*<!--.*?-->|\s*<\?.*?\?>)*\s*$",
    re.DOTALL,
)


def _closes_feedback(tail: bytes) -> bool:
    """Whether the document's last bytes end its <feedback> (UTF-16 read as such)."""
    if tail.count(b"\x00") * 3 > len(tail):  # UTF-16: every other byte is NUL for markup
        encoding = "utf-16-le" if tail[-1:] == b"\x00" else "utf-16-be"
        tail = tail.decode(encoding, errors="ignore").encode("ascii", errors="replace")
    return _CLOSED_FEEDBACK.search(tail) is not None


def check_well_formed(stream: Reader) -> WellFormedness:
    """Read the whole stream with expat, noting the first error as 'message: line L, column C'.

    The stream is read to its end even after an error, so a truncated or oversized archive is
    still refused here. A DTD or entity declaration anywhere, even past the root element where
    it is only a syntax error, is refused outright: recovery must never meet one. Record end
    tags are counted (with `bytes.count`, at C speed) so that a recovered parse that lost
    records is caught.
    """
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    found = WellFormedness()
    previous = b""
    while True:
        data = stream.read(CHUNK)
        if _occurs(_DECLARATION, previous, data) or _occurs(_ENTITY, previous, data):
            raise Rejection("forbidden_dtd", "the document declares a DTD or an entity")
        found.plain_record_ends += _occurrences(b"</record>", previous, data)
        found.prefixed_record_tags += _occurrences(b":record>", previous, data)
        if data:
            previous = data
            found.tail = (found.tail + data)[-512:]
        if found.error is None:
            try:
                parser.Parse(data, not data)
            except expat.ExpatError as problem:
                found.error = str(problem)
            except (LookupError, ValueError) as problem:  # an encoding expat cannot read
                found.error = f"unreadable: {problem}"
        if not data:
            return found


# --- 3. the header and the records ---------------------------------------------------------


def _timestamp(value: str, what: str) -> datetime:
    try:
        seconds = float(value) if "." in value else int(value)
    except ValueError:
        raise Rejection("missing_field", f"{what} is not a timestamp: {value[:40]!r}") from None
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise Rejection("missing_field", f"{what} is out of range: {value[:40]!r}")
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _email_domain(email: str) -> str:
    domain = email.rpartition("@")[2] if "@" in email else ""
    return domain.strip(" <>\t").rstrip(".").lower()


class _Header:
    """Header fields gathered as their elements end."""

    def __init__(self) -> None:
        self.version = ""
        self.metadata: dict[str, str] | None = None
        self.errors: list[str] = []
        self.policy: PublishedPolicy | None = None
        self.saw_rfc9990_field = False

    @property
    def complete(self) -> bool:
        return self.metadata is not None and self.policy is not None

    def read_metadata(self, element: Any) -> None:
        fields: dict[str, str] = {}
        for child in element:
            name = _local(child.tag)
            if name == "date_range":
                for part in child:
                    part_name = _local(part.tag)
                    if part_name in ("begin", "end"):
                        fields[part_name] = _text(part)
            elif name == "error":
                text = _text(child)
                if text:
                    self.errors.append(text)
            elif name in ("org_name", "email", "extra_contact_info", "report_id", "generator"):
                fields[name] = " ".join("".join(child.itertext()).split())
        if "generator" in fields:
            self.saw_rfc9990_field = True
        self.metadata = fields

    def read_policy(self, element: Any) -> None:
        fields: dict[str, str] = {}
        for child in element:
            name = _local(child.tag)
            if name:
                fields[name] = _text(child)
        if "testing" in fields or "discovery_method" in fields:
            self.saw_rfc9990_field = True
        pct: int | None = None
        if fields.get("pct"):
            try:
                pct = int(fields["pct"])
            except ValueError:
                self.errors.append(f"policy_published pct is not a number: {fields['pct'][:20]!r}")
            else:
                if not 0 <= pct <= 100:
                    self.errors.append(f"policy_published pct out of range: {pct}")
                    pct = None
        self.policy = PublishedPolicy(
            domain=fields.get("domain", "").rstrip(".").lower(),
            p=fields.get("p", "").lower(),
            sp=fields.get("sp", "").lower(),
            np=fields.get("np", "").lower(),
            pct=pct,
            adkim=fields.get("adkim", "").lower(),
            aspf=fields.get("aspf", "").lower(),
            fo=fields.get("fo", "").lower(),
            testing=fields.get("testing", "").lower(),
            discovery_method=fields.get("discovery_method", "").lower(),
        )

    def build(self, *, namespace: str, fallback_org: str) -> AggregateHeader:
        metadata = self.metadata or {}
        policy = self.policy or PublishedPolicy(domain="")
        report_id = metadata.get("report_id", "")
        if not report_id:
            raise Rejection("missing_field", "report_metadata has no report_id")
        if "begin" not in metadata or "end" not in metadata:
            raise Rejection("missing_field", "report_metadata has no complete date_range")
        begin = _timestamp(metadata["begin"], "date_range begin")
        end = _timestamp(metadata["end"], "date_range end")
        if begin > end:
            raise Rejection("missing_field", f"date_range begins ({begin}) after it ends ({end})")
        if not policy.domain:
            raise Rejection("missing_field", "policy_published has no domain")
        email = metadata.get("email", "")
        org_name = metadata.get("org_name", "") or _email_domain(email) or fallback_org
        if not org_name:
            raise Rejection("missing_field", "report_metadata has neither org_name nor email")
        if namespace == DMARC2_NAMESPACE or self.version.startswith("2") or self.saw_rfc9990_field:
            schema = "rfc9990"
        elif self.version:
            schema = "rfc7489"
        else:
            schema = "draft"
        return AggregateHeader(
            org_name=org_name,
            email=email,
            report_id=report_id,
            date_begin=begin,
            date_end=end,
            policy=policy,
            schema=schema,
            extra_contact_info=metadata.get("extra_contact_info", ""),
            generator=metadata.get("generator", ""),
            errors=tuple(self.errors),
        )


# A dotted quad already in canonical form (no leading zeros): most sources, kept as they are.
_CANONICAL_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


def _ip(value: str, number: int) -> str:
    if _CANONICAL_IPV4.fullmatch(value):
        return value
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise Rejection(
            "missing_field", f"record {number}: source_ip is not an IP address: {value[:60]!r}"
        ) from None


def _count(value: str, number: int) -> int:
    if not value.isdigit() or not value.isascii():
        raise Rejection(
            "missing_field", f"record {number}: count is not a whole number: {value[:30]!r}"
        )
    count = int(value)
    if count > MAX_COUNT:
        raise Rejection("missing_field", f"record {number}: count {count} is out of range")
    return count


# Local names by tag, so each distinct tag is split once; bounded against documents that
# invent a new tag for every element.
_LOCAL_NAMES: dict[Any, str] = {}
_MAX_LOCAL_NAMES = 512


def _name(tag: Any) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = _local(tag)
        if len(_LOCAL_NAMES) < _MAX_LOCAL_NAMES:
            _LOCAL_NAMES[tag] = name
    return name


def _auth_fields(result: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    names = _LOCAL_NAMES
    for field in result:
        tag = field.tag
        text = field.text
        fields[names.get(tag) or _name(tag)] = text.strip() if text else ""
    return fields


# AggregateRecord is a frozen dataclass, whose __init__ sets each field through
# object.__setattr__; setting the slots through their descriptors builds the same value in
# less than half the time, which matters a million times over. `new_record` is checked
# against the dataclass' own constructor in the tests.
_RECORD_FIELDS = (
    "source_ip",
    "count",
    "disposition",
    "dkim_aligned",
    "spf_aligned",
    "header_from",
    "envelope_from",
    "envelope_to",
    "reasons",
    "dkim",
    "spf",
)
assert tuple(f.name for f in fields(AggregateRecord)) == _RECORD_FIELDS
assert not hasattr(AggregateRecord, "__post_init__")
(
    _set_source_ip,
    _set_count,
    _set_disposition,
    _set_dkim_aligned,
    _set_spf_aligned,
    _set_header_from,
    _set_envelope_from,
    _set_envelope_to,
    _set_reasons,
    _set_dkim,
    _set_spf,
) = (getattr(AggregateRecord, name).__set__ for name in _RECORD_FIELDS)
_new = object.__new__


def new_record(
    source_ip: str,
    count: int,
    disposition: str,
    dkim_aligned: str,
    spf_aligned: str,
    header_from: str,
    envelope_from: str,
    envelope_to: str,
    reasons: tuple[PolicyOverride, ...],
    dkim: tuple[DkimAuth, ...],
    spf: tuple[SpfAuth, ...],
) -> AggregateRecord:
    """The same as `AggregateRecord(...)` with every field given, only faster."""
    record = _new(AggregateRecord)
    _set_source_ip(record, source_ip)
    _set_count(record, count)
    _set_disposition(record, disposition)
    _set_dkim_aligned(record, dkim_aligned)
    _set_spf_aligned(record, spf_aligned)
    _set_header_from(record, header_from)
    _set_envelope_from(record, envelope_from)
    _set_envelope_to(record, envelope_to)
    _set_reasons(record, reasons)
    _set_dkim(record, dkim)
    _set_spf(record, spf)
    return record


# The fast path's codes for the local names a record holds. A positive code is a leaf whose
# text goes to that slot; a negative one opens a group or a section; 0 is skipped.
_SOURCE_IP, _COUNT, _DISPOSITION, _HEADER_FROM, _ENVELOPE_FROM, _ENVELOPE_TO = range(1, 7)
# The open group's texts: domain or reason type; selector, scope or comment; result; human_result.
_G_FIRST, _G_SECOND, _G_THIRD, _G_FOURTH = range(7, 11)
_SLOTS = 11
_DKIM, _SPF, _REASON, _AUTH_RESULTS, _SECTION = -1, -2, -3, -4, -5
_CODES_BY_NAME = {
    "source_ip": _SOURCE_IP,
    "count": _COUNT,
    "disposition": _DISPOSITION,
    "header_from": _HEADER_FROM,
    "envelope_from": _ENVELOPE_FROM,
    "envelope_to": _ENVELOPE_TO,
    "domain": _G_FIRST,
    "type": _G_FIRST,
    "selector": _G_SECOND,
    "scope": _G_SECOND,
    "comment": _G_SECOND,
    "result": _G_THIRD,
    "human_result": _G_FOURTH,
    "dkim": _DKIM,
    "spf": _SPF,
    "reason": _REASON,
    "auth_results": _AUTH_RESULTS,
    "row": _SECTION,
    "policy_evaluated": _SECTION,
    "identifiers": _SECTION,
}
# Codes by full tag ("{namespace}name" or "name"), bounded like _LOCAL_NAMES.
_CODES: dict[Any, int] = {}


def _code(tag: Any) -> int:
    code = _CODES_BY_NAME.get(_local(tag), 0)
    if len(_CODES) < _MAX_LOCAL_NAMES:
        _CODES[tag] = code
    return code


# Shared auth results by their raw texts, so a repeated result costs one dict lookup. Bounded,
# and cleared when full.
_MAX_SHARED = 4096
_RAW_SHARED: dict[tuple[int, str, str, str, str], Any] = {}


def _group_value(kind: int, first: str, second: str, third: str, fourth: str) -> Any:
    """The DkimAuth, SpfAuth or PolicyOverride of a closed group, shared when seen before.

    DKIM: domain, selector, result, human_result. SPF: domain, scope, result. Reason: type,
    comment. None for a reason with neither.
    """
    key = (kind, first, second, third, fourth)
    value = _RAW_SHARED.get(key)
    if value is None:
        if kind == _DKIM:
            value = DkimAuth(first.rstrip(".").lower(), second, third.lower(), fourth)
        elif kind == _SPF:
            value = SpfAuth(first.rstrip(".").lower(), second.lower(), third.lower())
        else:
            if not first and not second:
                return None
            value = PolicyOverride(first.lower(), second)
        if len(_RAW_SHARED) >= _MAX_SHARED:
            _RAW_SHARED.clear()
        _RAW_SHARED[key] = value
    return value


def _close_group(
    kind: int,
    slots: list[str | None],
    dkims: list[DkimAuth],
    spfs: list[SpfAuth],
    reasons: list[PolicyOverride],
) -> None:
    value = _group_value(
        kind,
        (slots[_G_FIRST] or "").strip(),
        (slots[_G_SECOND] or "").strip(),
        (slots[_G_THIRD] or "").strip(),
        (slots[_G_FOURTH] or "").strip(),
    )
    if kind == _DKIM:
        dkims.append(value)
    elif kind == _SPF:
        spfs.append(value)
    elif value is not None:
        reasons.append(value)


_NO_GROUP: list[str | None] = [None, None, None, None]


def parse_record_fast(element: Any, number: int) -> AggregateRecord:
    """`parse_record` for a well-formed document, in one flat pass over the descendants.

    The parser's hot loop. Each element's tag maps (through a cache) to a code: a leaf's text
    is dropped into its slot with no further test; `<dkim>`, `<spf>` and `<reason>` (within
    auth_results, policy_evaluated) open a group that the next group or section closes; texts
    are stripped and lower-cased once, at the end. The tests check it gives exactly what
    `parse_record` gives.
    """
    codes = _CODES
    slots: list[str | None] = [None] * _SLOTS
    reasons: list[PolicyOverride] = []
    dkims: list[DkimAuth] = []
    spfs: list[SpfAuth] = []
    dkim_aligned = spf_aligned = ""
    in_auth = False
    kind = 0
    descendants = element.iter()
    next(descendants)  # the record itself
    for item in descendants:
        tag = item.tag
        code = codes.get(tag)
        if code is None:
            code = _code(tag)
        if code > 0:
            slots[code] = item.text
        elif not code:
            continue
        elif code >= _SPF and not in_auth:  # policy_evaluated's <dkim> or <spf>
            text = item.text
            if code == _DKIM:
                dkim_aligned = text.strip().lower() if text else ""
            else:
                spf_aligned = text.strip().lower() if text else ""
        else:  # a group opens (dkim, spf, reason) or a section does: the open group closes
            if kind:
                _close_group(kind, slots, dkims, spfs, reasons)
            slots[_G_FIRST:] = _NO_GROUP
            if code >= _REASON:
                kind = code
            else:
                kind = 0
                in_auth = code == _AUTH_RESULTS
    if kind:
        _close_group(kind, slots, dkims, spfs, reasons)
    source_ip = (slots[_SOURCE_IP] or "").strip()
    count = (slots[_COUNT] or "").strip()
    if not source_ip:
        raise Rejection("missing_field", f"record {number} has no source_ip")
    if not count:
        raise Rejection("missing_field", f"record {number} has no count")
    return new_record(
        _ip(source_ip, number),
        _count(count, number),
        (slots[_DISPOSITION] or "").strip().lower(),
        dkim_aligned,
        spf_aligned,
        (slots[_HEADER_FROM] or "").strip().rstrip(".").lower(),
        (slots[_ENVELOPE_FROM] or "").strip().rstrip(".").lower(),
        (slots[_ENVELOPE_TO] or "").strip().rstrip(".").lower(),
        tuple(reasons),
        tuple(dkims),
        tuple(spfs),
    )


def parse_record(element: Any, number: int) -> AggregateRecord:
    """One `<record>` element as an `AggregateRecord` (`number` counts from 1, for details).

    The hot loop of the parser: local names come from a cache and texts are read inline.
    """
    names = _LOCAL_NAMES
    source_ip = count = ""
    disposition = dkim_aligned = spf_aligned = ""
    header_from = envelope_from = envelope_to = ""
    reasons: list[PolicyOverride] = []
    dkims: list[DkimAuth] = []
    spfs: list[SpfAuth] = []
    for part in element:
        tag = part.tag
        name = names.get(tag) or _name(tag)
        if name == "row":
            for field in part:
                tag = field.tag
                field_name = names.get(tag) or _name(tag)
                if field_name == "source_ip":
                    text = field.text
                    source_ip = text.strip() if text else ""
                elif field_name == "count":
                    text = field.text
                    count = text.strip() if text else ""
                elif field_name == "policy_evaluated":
                    for item in field:
                        tag = item.tag
                        item_name = names.get(tag) or _name(tag)
                        text = item.text
                        if item_name == "disposition":
                            disposition = text.strip().lower() if text else ""
                        elif item_name == "dkim":
                            dkim_aligned = text.strip().lower() if text else ""
                        elif item_name == "spf":
                            spf_aligned = text.strip().lower() if text else ""
                        elif item_name == "reason":
                            reason = _auth_fields(item)
                            value = _group_value(
                                _REASON, reason.get("type", ""), reason.get("comment", ""), "", ""
                            )
                            if value is not None:
                                reasons.append(value)
        elif name == "identifiers":
            for field in part:
                if len(field):
                    continue  # markup inside a domain (a recovered stray '<'): no value
                tag = field.tag
                field_name = names.get(tag) or _name(tag)
                text = field.text
                value = text.strip().rstrip(".").lower() if text else ""
                if field_name == "header_from":
                    header_from = value
                elif field_name == "envelope_from":
                    envelope_from = value
                elif field_name == "envelope_to":
                    envelope_to = value
        elif name == "auth_results":
            for result in part:
                tag = result.tag
                result_name = names.get(tag) or _name(tag)
                if result_name == "dkim":
                    fields = _auth_fields(result)
                    dkims.append(
                        _group_value(
                            _DKIM,
                            fields.get("domain", ""),
                            fields.get("selector", ""),
                            fields.get("result", ""),
                            fields.get("human_result", ""),
                        )
                    )
                elif result_name == "spf":
                    fields = _auth_fields(result)
                    spfs.append(
                        _group_value(
                            _SPF,
                            fields.get("domain", ""),
                            fields.get("scope", ""),
                            fields.get("result", ""),
                            "",
                        )
                    )
    if not source_ip:
        raise Rejection("missing_field", f"record {number} has no source_ip")
    if not count:
        raise Rejection("missing_field", f"record {number} has no count")
    return new_record(
        _ip(source_ip, number),
        _count(count, number),
        disposition,
        dkim_aligned,
        spf_aligned,
        header_from,
        envelope_from,
        envelope_to,
        tuple(reasons),
        tuple(dkims),
        tuple(spfs),
    )


def _release(element: Any) -> None:
    """Free a finished element and every sibling before it (the tree stays a spine)."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _syntax_rejection(error: Exception) -> Rejection:
    if isinstance(error, etree.XMLSyntaxError) and error.lineno:
        return Rejection(
            "malformed_xml", f"line {error.lineno}, column {error.offset}: {error.msg}"
        )
    return Rejection("malformed_xml", str(error)[:200])


class AggregateXmlDocument:
    """An aggregate report whose header is read and whose records stream from `records()`."""

    def __init__(
        self,
        header: AggregateHeader,
        events: Iterator[tuple[str, Any]],
        early: list[AggregateRecord],
        stream: Reader,
        *,
        max_records: int,
        expected_records: int | None = None,
    ) -> None:
        self._expected = expected_records
        self._header = header
        self._events = events
        self._early = early
        self._stream = stream
        self._max_records = max_records
        self._started = False

    @property
    def header(self) -> AggregateHeader:
        return self._header

    def records(self) -> Iterator[AggregateRecord]:
        if self._started:
            raise RuntimeError("an aggregate document's records can be read only once")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[AggregateRecord]:
        limit = self._max_records
        parse = parse_record if self._expected is not None else parse_record_fast
        number = len(self._early)
        try:
            yield from self._early
            self._early = []
            names = _LOCAL_NAMES
            for _event, element in self._events:
                tag = element.tag
                if (names.get(tag) or _name(tag)) == "record":
                    number += 1
                    if number > limit:
                        raise Rejection(
                            "too_many_records", f"more than {limit} records in the report"
                        )
                    record = parse(element, number)
                    _release(element)
                    yield record
                else:
                    _release(element)
            if self._expected is not None and number != self._expected:
                raise Rejection(
                    "malformed_xml",
                    f"recovering the malformed XML gave {number} records where the document "
                    f"closes {self._expected}",
                )
        except _LXML_ERRORS as error:
            raise _syntax_rejection(error) from None
        finally:
            self._stream.close()


def parse_aggregate(
    open_stream: Opener, *, max_records: int, fallback_org: str = ""
) -> AggregateXmlDocument:
    """Parse an aggregate report's header from a re-openable stream; its records stream later.

    `fallback_org` names the reporter when the report names neither an organisation nor an
    e-mail address (the sending domain of the message it came in). Raises `Rejection`.
    """
    stream = open_stream()
    try:
        head, root = read_prolog(stream)
        scan = scan_stream(_Chain(head, stream), utf8=_declares_utf8(head))
    finally:
        stream.close()
    if root.rpartition(":")[2] == "feedback" and scan.utf8_error is None:
        if not scan.closes_feedback:
            raise Rejection("malformed_xml", "the report does not end with </feedback>")
        stream = open_stream()
        try:
            return _parse_header(
                stream,
                recover=False,
                error=None,
                expected_records=None,
                root=root,
                max_records=max_records,
                fallback_org=fallback_org,
            )
        except _StrictParseFailed as failed:
            stream.close()
            strict_error: Exception | None = failed.error
        except BaseException:
            stream.close()
            raise
    else:
        strict_error = None
    return _parse_recovering(
        open_stream,
        root=root,
        strict_error=strict_error,
        max_records=max_records,
        fallback_org=fallback_org,
    )


def _parse_recovering(
    open_stream: Opener,
    *,
    root: str,
    strict_error: Exception | None,
    max_records: int,
    fallback_org: str,
) -> AggregateXmlDocument:
    """The slow path, for a document the fast path could not read as it is."""
    stream = open_stream()
    try:
        checked = check_well_formed(stream)
    finally:
        stream.close()
    error = checked.error
    if error is None:
        if root.rpartition(":")[2] != "feedback":
            raise Rejection("not_aggregate_xml", f"the root element is <{root}>, not <feedback>")
        # Well-formed for expat, yet lxml refused it (one of its limits): lxml's word stands.
        raise _syntax_rejection(strict_error or ValueError("unreadable XML"))
    if not checked.closes_feedback:
        # Recovery would close the elements itself and hand out a cut-off report as whole.
        raise Rejection("malformed_xml", f"{error} (the report does not end with </feedback>)")
    stream = _Recoding(open_stream())
    try:
        return _parse_header(
            stream,
            recover=True,
            error=error,
            expected_records=checked.expected_records,
            root=root,
            max_records=max_records,
            fallback_org=fallback_org,
        )
    except BaseException:
        stream.close()
        raise


class _StrictParseFailed(Exception):
    """The fast path met a syntax error before the header was complete: take the slow path."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


_ENCODING_DECLARATION = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _declares_utf8(head: bytes) -> bool:
    """Whether the document is UTF-8: no UTF-16 marks, and no other encoding declared."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")):
        return False
    declaration = (
        head[: head.find(b"?>")]
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<?xml")
        else b""
    )
    match = _ENCODING_DECLARATION.search(declaration)
    return match is None or match.group(1).lower().replace(b"_", b"-") in (b"utf-8", b"utf8")


class StreamScan:
    """What the fast pass over the raw bytes found."""

    def __init__(self) -> None:
        self.utf8_error: str | None = None
        self.tail = b""

    @property
    def closes_feedback(self) -> bool:
        """Whether the document ends with </feedback> (then perhaps a wrapper's end tags)."""
        return _closes_feedback(self.tail)


def scan_stream(stream: Reader, *, utf8: bool) -> StreamScan:
    """Read the whole stream with bytes operations only (C speed, no parsing).

    It drains the decompressor, so a truncated, corrupt or oversized archive is refused
    before any record is handed out; refuses a DTD or entity declaration anywhere; checks
    that a UTF-8 document is valid UTF-8; keeps the tail to tell a report cut off.
    """
    found = StreamScan()
    decoder = codecs.getincrementaldecoder("utf-8")() if utf8 else None
    previous = b""
    offset = 0
    while True:
        data = stream.read(CHUNK)
        if _occurs(_DECLARATION, previous, data) or _occurs(_ENTITY, previous, data):
            raise Rejection("forbidden_dtd", "the document declares a DTD or an entity")
        if (
            decoder is not None
            and found.utf8_error is None
            and (not data.isascii() or decoder.getstate()[0])
        ):
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as problem:
                found.utf8_error = f"invalid UTF-8 at byte {offset + problem.start}"
        if not data:
            return found
        offset += len(data)
        previous = data
        found.tail = (found.tail + data)[-512:]


def _parse_header(
    stream: Reader,
    *,
    recover: bool,
    error: str | None,
    expected_records: int | None,
    root: str,
    max_records: int,
    fallback_org: str,
) -> AggregateXmlDocument:
    events = etree.iterparse(
        stream,
        events=("end",),
        tag=_TAGS,
        recover=recover,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
    )
    header = _Header()
    early: list[AggregateRecord] = []
    namespace = ""
    iterator = iter(events)
    try:
        for _event, element in iterator:
            name = _local(element.tag)
            if name == "record":
                if len(early) >= MAX_EARLY_RECORDS:
                    break
                if len(early) >= max_records:
                    raise Rejection("too_many_records", f"more than {max_records} records")
                parse = parse_record if recover else parse_record_fast
                early.append(parse(element, len(early) + 1))
            elif name == "report_metadata":
                tag = element.tag
                namespace = tag[1 : tag.index("}")] if tag.startswith("{") else ""
                header.read_metadata(element)
            elif name == "policy_published":
                header.read_policy(element)
            elif name == "version":
                header.version = _text(element)
            _release(element)
            if header.complete:
                break
    except _LXML_ERRORS as problem:
        if not recover:
            raise _StrictParseFailed(problem) from None
        raise _syntax_rejection(problem) from None
    if not header.complete:
        if error is not None:
            raise Rejection("malformed_xml", error)
        if header.metadata is None and header.policy is None and not early:
            raise Rejection("not_aggregate_xml", f"<{root}> holds no report_metadata")
        missing = "report_metadata" if header.metadata is None else "policy_published"
        raise Rejection("missing_field", f"the report has no {missing} before its records")
    if error is not None:
        header.errors.append(f"Invalid XML: {error}")
        if _local(root.rpartition(":")[2]) != "feedback":
            header.errors.append(f"the root element is <{root}>, not <feedback>")
    try:
        built = header.build(namespace=namespace, fallback_org=fallback_org)
    except Rejection as problem:
        if error is not None:
            raise Rejection("malformed_xml", f"{error} ({problem.detail})") from None
        raise
    return AggregateXmlDocument(
        built,
        iterator,
        early,
        stream,
        max_records=max_records,
        expected_records=expected_records if recover else None,
    )


class _Chain:
    """Bytes already read, then the rest of a stream (for expat, which only calls read)."""

    def __init__(self, head: bytes, stream: Reader) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int, /) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)

    def close(self) -> None:
        self._stream.close()


class _Recoding:
    """A malformed document's bytes with invalid UTF-8 replaced, for lxml's recover mode.

    libxml2 may stop at an invalid byte; replacing it keeps the rest of the report. Only
    documents in UTF-8 (declared or by default) are touched.
    """

    def __init__(self, stream: Reader) -> None:
        self._stream = stream
        self._decoder: codecs.IncrementalDecoder | None = None
        self._decided = False

    def read(self, size: int, /) -> bytes:
        while True:
            data = self._stream.read(size)
            out = self._recode(data)
            if out or not data:
                return out

    def _recode(self, data: bytes) -> bytes:
        if not self._decided:
            self._decided = True
            declaration = data[:200].lower()
            utf8 = not data.startswith((b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")) and (
                b"encoding" not in declaration.split(b"?>")[0]
                or b"utf-8" in declaration.split(b"?>")[0]
                or b"utf8" in declaration.split(b"?>")[0]
            )
            if utf8:
                self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if self._decoder is None:
            return data
        return self._decoder.decode(data, final=not data).encode("utf-8")

    def close(self) -> None:
        self._stream.close()
