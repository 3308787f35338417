"""A managed block inside a file the admin also edits (main.cf, master.cf). Pure, bytes in, bytes out.

The block sits between two marker lines, `BEGIN` and `END`. Every line outside it is the
admin's and is kept byte for byte (CRLF endings, trailing spaces, bytes that are not UTF-8,
comments, continuation lines), with one exception that Postfix forces: an entry the block also
defines. Postfix uses the last definition of a parameter but warns "overriding earlier entry"
on every command, and two master.cf services of the same name and type are a configuration
error, so the admin's entry is disabled by prefixing each of its lines with `OVERRIDE_MARK`.
When a later policy stops managing that entry, the mark is removed and the admin's line comes
back exactly as it was. Nothing else is ever rewritten.

Rendering is idempotent: merging a block into its own output gives the same bytes. A block
already in the file stays where it is (the admin may have written lines after it); a file
without one gets it at the end, after a newline if the file's last line had none.

A logical entry is a line starting at column 0 with neither whitespace nor '#', followed by
the lines that start with a space or tab (its continuation), with any comment and blank lines
among them: Postfix reads both files that way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

BEGIN = b"# BEGIN mailsec managed (do not edit; changes are overwritten)"
END = b"# END mailsec managed"
OVERRIDE_MARK = b"#mailsec-overridden: "


class ManagedBlockError(ValueError):
    """The file's markers are damaged; mailsec will not guess where its block ends."""


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their b"\\n" kept (the last may have none). Only LF ends a line, as in Postfix."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _bare(line: bytes) -> bytes:
    return line.rstrip(b"\n").rstrip(b"\r")


# C's isspace() without the newline, as Postfix reads a line: a line starting with any of
# these continues the logical line before it.
_SPACE = b" \t\v\f\r"


def _is_continuation(line: bytes) -> bool:
    return line[:1] != b"" and line[:1] in _SPACE


def _is_skipped(line: bytes) -> bool:
    """Blank, whitespace-only and comment lines, which Postfix skips inside a logical line."""
    stripped = line.rstrip(b"\n").lstrip(_SPACE)
    return not stripped or stripped.startswith(b"#")


def _starts_entry(line: bytes) -> bool:
    return not _is_skipped(line) and not _is_continuation(line)


def _entry_end(lines: Sequence[bytes], start: int) -> int:
    """The index after the entry starting at `start`.

    Postfix continues a logical line over comment and blank lines up to the last line starting
    with whitespace (`a = b,` / `# note` / `  c` is `a = b, c`), so the entry runs to that line:
    disabling less would leave its tail continuing the line before it.
    """
    end = start + 1
    for index in range(start + 1, len(lines)):
        if _is_skipped(lines[index]):
            continue
        if not _is_continuation(lines[index]):
            break
        end = index + 1
    return end


def _block_bounds(lines: Sequence[bytes], filename: str) -> tuple[int, int] | None:
    begins = [i for i, line in enumerate(lines) if _bare(line) == BEGIN]
    ends = [i for i, line in enumerate(lines) if _bare(line) == END]
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ManagedBlockError(
            f"{filename}: the mailsec markers are damaged ({len(begins)} BEGIN and {len(ends)} "
            "END lines, or END before BEGIN). Remove or repair them by hand: mailsec does not "
            "guess which lines are yours."
        )
    return begins[0], ends[0]


def _merge_unmanaged(
    lines: Sequence[bytes],
    managed: Collection[object],
    key_of: Callable[[bytes], object | None],
) -> list[bytes]:
    """Disable the admin's entries the block redefines; restore those it no longer does."""
    out: list[bytes] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(OVERRIDE_MARK):
            # One disabled entry: its first line, then marked lines up to the next entry's start.
            group = [line[len(OVERRIDE_MARK) :]]
            i += 1
            while (
                i < len(lines)
                and lines[i].startswith(OVERRIDE_MARK)
                and not _starts_entry(lines[i][len(OVERRIDE_MARK) :])
            ):
                group.append(lines[i][len(OVERRIDE_MARK) :])
                i += 1
            key = key_of(group[0])
            if key is not None and key in managed:
                out += [OVERRIDE_MARK + g for g in group]
            else:
                out += group
            continue
        key = key_of(line) if _starts_entry(line) else None
        if key is None or key not in managed:
            out.append(line)
            i += 1
            continue
        end = _entry_end(lines, i)
        out += [OVERRIDE_MARK + entry_line for entry_line in lines[i:end]]
        i = end
    return out


def merge_block(
    current: bytes,
    block_body: Sequence[bytes],
    *,
    managed: Collection[object],
    key_of: Callable[[bytes], object | None],
    filename: str,
) -> bytes:
    """`current` with the managed block replaced (or appended) and conflicting entries disabled.

    `block_body` are the block's lines without markers, each ending in b"\\n"; `managed` the
    keys (as `key_of` computes them from an entry's first line) the block defines.
    """
    lines = split_lines(current)
    bounds = _block_bounds(lines, filename)
    if bounds is None:
        before, after = list(lines), []
    else:
        before, after = list(lines[: bounds[0]]), list(lines[bounds[1] + 1 :])
    before = _merge_unmanaged(before, managed, key_of)
    after = _merge_unmanaged(after, managed, key_of)
    if before and not before[-1].endswith(b"\n"):
        before[-1] += b"\n"
    block = [BEGIN + b"\n", *block_body, END + b"\n"]
    return b"".join(before + block + after)
