"""What a deployment would change: current files against rendered ones, for the diff view. Pure.

Text files get a unified diff (difflib, `a/` the host's file, `b/` the rendered one). Secret
files (private keys) and binary files (a NUL byte) are never shown: their entry says
whether they change and gives both SHA-256 hashes, which reveal nothing of a key.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class FileStatus(StrEnum):
    ADDED = "added"  # not on the host yet
    CHANGED = "changed"
    UNCHANGED = "unchanged"


class RenderedFile(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def content(self) -> bytes: ...
    @property
    def secret(self) -> bool: ...


@dataclass(frozen=True)
class FileDiff:
    """One file's change. `diff` is empty when unchanged or `hidden` (secret or binary)."""

    path: str
    status: FileStatus
    hidden: bool
    current_sha256: str | None
    rendered_sha256: str
    diff: str


NO_NEWLINE = "\\ No newline at end of file\n"


def _text(data: bytes) -> str | None:
    """The file as text to show, or None when it is binary (holds a NUL byte).

    Bytes that are not UTF-8 (a latin-1 comment in main.cf) are shown escaped (\\xe9) rather
    than hiding the whole file's diff.
    """
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="backslashreplace")


def _lines(text: str) -> list[str]:
    """Lines split at LF only, as Postfix and Dovecot read them (a CR stays in its line)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1] + "\n" + NO_NEWLINE)
    return lines


def _unified(path: str, current: str, rendered: str, *, added: bool) -> str:
    diff = difflib.unified_diff(
        _lines(current),
        _lines(rendered),
        fromfile="/dev/null" if added else f"a{path}",
        tofile=f"b{path}",
    )
    return "".join(diff)


def diff_file(path: str, current: bytes | None, rendered: bytes, *, secret: bool) -> FileDiff:
    """The change from `current` (None: the file does not exist) to `rendered`."""
    rendered_hash = hashlib.sha256(rendered).hexdigest()
    current_hash = None if current is None else hashlib.sha256(current).hexdigest()
    if current is None:
        status = FileStatus.ADDED
    elif current == rendered:
        status = FileStatus.UNCHANGED
    else:
        status = FileStatus.CHANGED
    new_text = _text(rendered)
    old_text = "" if current is None else _text(current)
    hidden = secret or new_text is None or old_text is None
    text = ""
    if not hidden and status is not FileStatus.UNCHANGED:
        assert new_text is not None and old_text is not None
        text = _unified(path, old_text, new_text, added=current is None)
    return FileDiff(path, status, hidden, current_hash, rendered_hash, text)


def diff_files(current: Mapping[str, bytes], rendered: Iterable[RenderedFile]) -> list[FileDiff]:
    """One entry per rendered file, in the rendering's order."""
    return [diff_file(f.path, current.get(f.path), f.content, secret=f.secret) for f in rendered]
