"""Bounded decompression: gzip and zip read as streams that refuse to grow past the limits.

Everything a report arrives in is untrusted. A gzip or zip member is never decompressed whole:
it is read through `_Bounded`, which counts the bytes actually produced (never the sizes an
archive declares, which can lie) and refuses the stream once it passes the absolute cap
(`too_large`) or, after a grace of a few megabytes, decompresses to more than `max_ratio` times
its compressed size (`compression_ratio`, a bomb). A zip may hold only a few members and no
archive within an archive. A truncated or corrupt stream is `corrupt_archive`.

A found report is a `Payload`: what it is (XML or JSON) and a function that opens a fresh
bounded stream of it each time it is called, so the XML parser can read it twice (a fast
well-formedness pass, then the streaming parse) without ever holding it in memory.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from reports.parsed import Rejection

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_WHITESPACE = b" \t\r\n"
# How far into a stream to look for its first meaningful byte.
SNIFF_BYTES = 64 * 1024
CHUNK = 64 * 1024
# Compressed input fed to zlib at a time: the ratio is judged against what was consumed.
_GUNZIP_INPUT = 16 * 1024
GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Limits:
    """How far an untrusted report may expand before it is refused.

    The storage layer passes `settings.MAILSEC_REPORT_MAX_DECOMPRESSED_BYTES` as
    `max_decompressed_bytes`. Real aggregate reports compress 10 to 60 times; deflate cannot
    exceed about 1032 times, which is what a bomb of zeros reaches, so `max_ratio` sits well
    between. The ratio is the bytes produced over the compressed bytes consumed so far (not
    over the whole input, which a bomb can pad), judged once `ratio_grace_bytes` have come
    out, so a small report that happens to compress well is never refused for it.
    `max_json_bytes` caps a TLS report, which is read whole.
    """

    max_decompressed_bytes: int = GIB
    max_ratio: int = 250
    ratio_grace_bytes: int = 8 * MIB
    max_members: int = 20
    max_records: int = 5_000_000
    max_json_bytes: int = 16 * MIB


class Kind:
    GZIP = "gzip"
    ZIP = "zip"
    XML = "xml"
    JSON = "json"
    UNKNOWN = ""


def sniff(head: bytes) -> str:
    """What the bytes are, by content: gzip, zip, XML ('<' after BOM and blanks) or JSON ('{')."""
    if head.startswith(GZIP_MAGIC):
        return Kind.GZIP
    if head.startswith(ZIP_MAGIC) or head.startswith(ZIP_EMPTY_MAGIC):
        return Kind.ZIP
    text = _strip_bom(head)
    if text[:2] in (b"<\x00", b"\x00<"):  # UTF-16 without a BOM
        return Kind.XML
    if text[:2] in (b"{\x00", b"\x00{"):
        return Kind.JSON
    text = text.lstrip(_WHITESPACE)
    if text.startswith(b"<"):
        return Kind.XML
    if text.startswith(b"{"):
        return Kind.JSON
    return Kind.UNKNOWN


def is_blank(data: bytes) -> bool:
    return not _strip_bom(data).strip(_WHITESPACE + b"\x00")


def _strip_bom(data: bytes) -> bytes:
    for bom in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :]
    return data


class Reader(Protocol):
    """What the parsers read from: `read(size)` returning at most `size` bytes, and `close()`."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


Opener = Callable[[], Reader]


@dataclass(frozen=True, slots=True)
class Payload:
    """A report found inside a message or file: XML or JSON, opened afresh on each call."""

    kind: str  # Kind.XML | Kind.JSON
    open: Opener
    name: str = ""  # where it was found (an archive member's name), for details


class _Bounded:
    """A read-only stream over a decompressor that enforces the limits on what it produces."""

    def __init__(
        self,
        inner: Reader,
        *,
        consumed: Callable[[], int],
        limits: Limits,
        what: str,
        declared_size: int | None = None,
    ) -> None:
        self._inner = inner
        self._declared_size = declared_size
        self._consumed = consumed
        self._limits = limits
        self._what = what
        self.produced = 0

    def read(self, size: int = CHUNK, /) -> bytes:
        if size < 0 or size > CHUNK:
            size = CHUNK  # never one unbounded read of a decompressor
        try:
            data = self._inner.read(size)
        except Rejection:
            raise
        except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as error:
            raise Rejection("corrupt_archive", f"{self._what}: {error}") from None
        except (NotImplementedError, RuntimeError, ValueError, struct.error) as error:
            raise Rejection("corrupt_archive", f"{self._what}: {error}") from None
        if not data and size and self._declared_size not in (None, self.produced):
            # zipfile stops at the declared size and checks the CRC, but a member that ends
            # before its declared size with a matching CRC would pass: the header lies.
            raise Rejection(
                "corrupt_archive",
                f"{self._what} declares {self._declared_size} bytes but holds {self.produced}",
            )
        self.produced += len(data)
        limits = self._limits
        if self.produced > limits.max_decompressed_bytes:
            raise Rejection(
                "too_large",
                f"{self._what} decompresses to more than {limits.max_decompressed_bytes} bytes",
            )
        if self.produced > limits.ratio_grace_bytes:
            consumed = max(self._consumed(), 1)
            if self.produced > limits.max_ratio * consumed:
                raise Rejection(
                    "compression_ratio",
                    f"{self._what}: {consumed} compressed bytes gave {self.produced} bytes "
                    f"(over {limits.max_ratio}:1)",
                )
        return data

    def close(self) -> None:
        # Closing a corrupt stream must not mask the reason it was refused.
        with suppress(Exception):
            self._inner.close()


def read_head(stream: Reader, size: int = SNIFF_BYTES) -> bytes:
    """Up to `size` bytes from the start of a stream, reading past leading blanks if need be."""
    head = b""
    while len(head) < size:
        data = stream.read(min(CHUNK, size - len(head)))
        if not data:
            break
        head += data
        if not is_blank(head) and len(head) >= 16:
            break
    return head


def _plain_opener(data: bytes) -> Opener:
    return lambda: io.BytesIO(data)


class _Gunzip:
    """A gzip stream decompressed on demand, never more than `size` bytes per read.

    Unlike `gzip.GzipFile` it ignores what follows the last member when that is not another
    gzip member (Mimecast's bodies end in a CRLF after the gzip); CRC and length are checked
    by zlib at each member's end.
    """

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0
        self._tail = b""
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._finished = False

    @property
    def consumed(self) -> int:
        """Compressed bytes taken in so far (read ahead by at most one input chunk)."""
        return self._at - len(self._tail)

    def read(self, size: int) -> bytes:
        while not self._finished:
            if self._tail:
                chunk = self._tail
            else:
                chunk = bytes(self._data[self._at : self._at + _GUNZIP_INPUT])
                self._at += len(chunk)
                if not chunk:
                    raise EOFError("the gzip stream is truncated")
            out = self._inflater.decompress(chunk, size)
            self._tail = self._inflater.unconsumed_tail
            if self._inflater.eof:
                self._at -= len(self._inflater.unused_data)
                self._tail = b""
                if bytes(self._data[self._at : self._at + 2]) == GZIP_MAGIC:
                    self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    self._finished = True
            if out:
                return out
        return b""

    def close(self) -> None:
        self._data.release()


def _gzip_opener(data: bytes, limits: Limits, what: str) -> Opener:
    def open_stream() -> Reader:
        inner = _Gunzip(data)
        return _Bounded(inner, consumed=lambda: inner.consumed, limits=limits, what=what)

    return open_stream


class _CountingBytes(io.BytesIO):
    """An archive's bytes, counting what is read from them (compressed bytes consumed)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def _member_opener(data: bytes, info: zipfile.ZipInfo, limits: Limits) -> Opener:
    what = f"zip member {info.filename!r}"

    def open_stream() -> Reader:
        try:
            source = _CountingBytes(data)
            archive = zipfile.ZipFile(source)
            inner = archive.open(info)
            opened_at = source.consumed
        except Rejection:
            raise
        except Exception as error:  # any failure to open untrusted zip data
            raise Rejection("corrupt_archive", f"{what}: {error}") from None
        return _Bounded(
            inner,
            consumed=lambda: source.consumed - opened_at,
            limits=limits,
            what=what,
            declared_size=info.file_size,
        )

    return open_stream


def payloads(data: bytes, *, limits: Limits, name: str = "") -> list[Payload]:
    """The reports in a blob (a bare file or a decoded MIME part), found by content.

    Raises `Rejection` for hostile archives; returns [] when the blob holds no XML or JSON.
    """
    kind = sniff(data[:SNIFF_BYTES])
    if kind in (Kind.XML, Kind.JSON):
        return [Payload(kind, _plain_opener(data), name)]
    if kind == Kind.GZIP:
        return _gzip_payloads(data, limits=limits, name=name or "gzip stream")
    if kind == Kind.ZIP:
        return _zip_payloads(data, limits=limits)
    return []


def _gzip_payloads(data: bytes, *, limits: Limits, name: str) -> list[Payload]:
    opener = _gzip_opener(data, limits, name)
    stream = opener()
    try:
        head = read_head(stream)
    finally:
        stream.close()
    if not head:
        raise Rejection("corrupt_archive", f"{name} decompresses to nothing")
    inner_kind = sniff(head)
    if inner_kind in (Kind.GZIP, Kind.ZIP):
        raise Rejection("nested_archive", f"{name} holds a {inner_kind} archive")
    if inner_kind in (Kind.XML, Kind.JSON):
        return [Payload(inner_kind, opener, name)]
    if is_blank(head):
        raise Rejection("empty", f"{name} holds only blanks")
    return []


def zip_member_count(data: bytes) -> int | None:
    """The entry count a zip's end-of-central-directory record declares (None: none found).

    Read before `zipfile` builds its list, so a directory of a million entries is refused
    without building a million `ZipInfo`s.
    """
    at = data.rfind(ZIP_EMPTY_MAGIC, max(0, len(data) - 65_557))
    if at < 0 or at + 22 > len(data):
        return None
    (total,) = struct.unpack_from("<H", data, at + 10)
    return int(total)


def _zip_payloads(data: bytes, *, limits: Limits) -> list[Payload]:
    declared = zip_member_count(data)
    if declared is not None and declared > limits.max_members:
        raise Rejection(
            "too_many_members",
            f"the zip declares {declared} members (at most {limits.max_members})",
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except Rejection:
        raise
    except Exception as error:  # any failure to read untrusted zip data
        raise Rejection("corrupt_archive", f"zip: {error}") from None
    if len(members) > limits.max_members:
        raise Rejection(
            "too_many_members",
            f"the zip holds {len(members)} members (at most {limits.max_members})",
        )
    found: list[Payload] = []
    blank = False
    for info in members:
        if info.is_dir():
            continue
        opener = _member_opener(data, info, limits)
        stream = opener()
        try:
            head = read_head(stream)
        finally:
            stream.close()
        inner_kind = sniff(head)
        if inner_kind in (Kind.GZIP, Kind.ZIP):
            raise Rejection(
                "nested_archive", f"zip member {info.filename!r} is a {inner_kind} archive"
            )
        if inner_kind in (Kind.XML, Kind.JSON):
            found.append(Payload(inner_kind, opener, info.filename))
        elif is_blank(head):
            blank = True
    if not found and blank:
        raise Rejection("empty", "the zip's members are empty")
    return found
