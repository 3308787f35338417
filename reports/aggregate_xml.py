"""A streaming parser for DMARC aggregate reports (RFC 7489, the older draft, RFC 9990).

The XML is untrusted and may be large, so it is read three ways, each bounded:

1. The prolog (everything before the root element) is scanned as text: any `<!DOCTYPE` or
   other `<!` declaration there is refused (`forbidden_dtd`), so no external entity (XXE) and no
   entity expansion (billion laughs) can ever be reached. Reports never carry a DTD.
2. A well-formedness pass with expat and no handlers (C speed, no tree) reads the whole
   stream. It also drains the decompressor to its end, so a truncated or oversized archive is
   refused before the first record is handed out.
3. lxml's `iterparse` (entities, DTD loading and network off, no huge trees) streams the
   records: each finished `<record>` is turned into an `AggregateRecord`, then cleared with
   its predecessors, so memory stays flat however many records there are.

A document the expat pass finds malformed is parsed in lxml's recover mode instead; when that
still gives a sound header (a report id, a date range, a policy domain) the report is kept
and the problem recorded in `header.errors` (the samples parsedmarc recovers: an unclosed
wrapper element, a stray `<` in a field, an invalid UTF-8 byte). Otherwise it is
`malformed_xml`, with the line.

Tags are matched by local name, so namespaced (RFC 9990's `urn:ietf:params:xml:ns:dmarc-2.0`,
prefixed) and plain reports read alike. Result words are lower-cased.

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
        return _CLOSED_FEEDBACK.search(self.tail) is not None


_CLOSED_FEEDBACK = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?feedback\s*>(?:\s*</[^<>]*>)*\s*$")


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


def _ip(value: str, number: int) -> str:
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


def parse_record(element: Any, number: int) -> AggregateRecord:
    """One `<record>` element as an `AggregateRecord` (`number` counts from 1, for details)."""
    source_ip = ""
    count = ""
    disposition = dkim_aligned = spf_aligned = ""
    header_from = envelope_from = envelope_to = ""
    reasons: list[PolicyOverride] = []
    dkims: list[DkimAuth] = []
    spfs: list[SpfAuth] = []
    for part in element:
        name = _local(part.tag)
        if name == "row":
            for field in part:
                field_name = _local(field.tag)
                if field_name == "source_ip":
                    source_ip = _text(field)
                elif field_name == "count":
                    count = _text(field)
                elif field_name == "policy_evaluated":
                    for item in field:
                        item_name = _local(item.tag)
                        if item_name == "disposition":
                            disposition = _text(item).lower()
                        elif item_name == "dkim":
                            dkim_aligned = _text(item).lower()
                        elif item_name == "spf":
                            spf_aligned = _text(item).lower()
                        elif item_name == "reason":
                            reason_type = comment = ""
                            for detail in item:
                                detail_name = _local(detail.tag)
                                if detail_name == "type":
                                    reason_type = _text(detail).lower()
                                elif detail_name == "comment":
                                    comment = _text(detail)
                            if reason_type or comment:
                                reasons.append(PolicyOverride(reason_type, comment))
        elif name == "identifiers":
            for field in part:
                if len(field):
                    continue  # markup inside a domain (a recovered stray '<'): no value
                field_name = _local(field.tag)
                if field_name == "header_from":
                    header_from = _text(field).rstrip(".").lower()
                elif field_name == "envelope_from":
                    envelope_from = _text(field).rstrip(".").lower()
                elif field_name == "envelope_to":
                    envelope_to = _text(field).rstrip(".").lower()
        elif name == "auth_results":
            for result in part:
                result_name = _local(result.tag)
                if result_name == "dkim":
                    fields = {_local(f.tag): _text(f) for f in result}
                    dkims.append(
                        DkimAuth(
                            domain=fields.get("domain", "").rstrip(".").lower(),
                            selector=fields.get("selector", ""),
                            result=fields.get("result", "").lower(),
                            human_result=fields.get("human_result", ""),
                        )
                    )
                elif result_name == "spf":
                    fields = {_local(f.tag): _text(f) for f in result}
                    spfs.append(
                        SpfAuth(
                            domain=fields.get("domain", "").rstrip(".").lower(),
                            scope=fields.get("scope", "").lower(),
                            result=fields.get("result", "").lower(),
                        )
                    )
    if not source_ip:
        raise Rejection("missing_field", f"record {number} has no source_ip")
    if not count:
        raise Rejection("missing_field", f"record {number} has no count")
    return AggregateRecord(
        source_ip=_ip(source_ip, number),
        count=_count(count, number),
        disposition=disposition,
        dkim_aligned=dkim_aligned,
        spf_aligned=spf_aligned,
        header_from=header_from,
        envelope_from=envelope_from,
        envelope_to=envelope_to,
        reasons=tuple(reasons),
        dkim=tuple(dkims),
        spf=tuple(spfs),
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
        number = len(self._early)
        try:
            yield from self._early
            self._early = []
            for _event, element in self._events:
                if _local(element.tag) == "record":
                    number += 1
                    if number > limit:
                        raise Rejection(
                            "too_many_records", f"more than {limit} records in the report"
                        )
                    record = parse_record(element, number)
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
        checked = check_well_formed(_Chain(head, stream))
    finally:
        stream.close()
    error = checked.error
    if error is not None and not checked.closes_feedback:
        # Recovery would close the elements itself and hand out a cut-off report as whole.
        raise Rejection("malformed_xml", f"{error} (the report does not end with </feedback>)")
    local_root = root.rpartition(":")[2]
    if error is None and local_root != "feedback":
        raise Rejection("not_aggregate_xml", f"the root element is <{root}>, not <feedback>")
    stream = open_stream()
    if error is not None:
        stream = _Recoding(stream)
    try:
        return _parse_header(
            stream,
            recover=error is not None,
            error=error,
            expected_records=checked.expected_records,
            root=root,
            max_records=max_records,
            fallback_org=fallback_org,
        )
    except BaseException:
        stream.close()
        raise


def _parse_header(
    stream: Reader,
    *,
    recover: bool,
    error: str | None,
    expected_records: int,
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
                early.append(parse_record(element, len(early) + 1))
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
