"""A policy and a host rendered into the exact files a deployment writes. Pure.

`render_host(policy, host, current_files)` returns every file in a fixed order: main.cf and
master.cf (the admin's files with mailsec's managed block; `current_files` gives their bytes on
the host now), the local blacklist's cidr map, the Dovecot snippet for the host's Dovecot
version, and, when the policy signs, both OpenDKIM instances' configuration, tables and keys.
Output is deterministic: LF line endings in everything mailsec writes, a trailing newline,
the same bytes for the same input, and rendering over the output gives the output again. The
admin's own lines keep theirs: a CRLF line stays CRLF, bytes that are not UTF-8 stay as they
are (hosts.render.managed says how the two meet).

Nothing is rendered from a policy or host that fails validation: `RenderError` carries every
`FieldError`. Modules: facts (the host, version parsing), managed (the marker block), postfix,
maps, dovecot, opendkim, diff.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hosts.policy import FieldError, PolicyValues, validate
from hosts.render.dovecot import SNIPPET, render_dovecot
from hosts.render.facts import (
    HostFacts,
    dovecot_syntax,
    parse_dovecot_version,
    parse_postfix_version,
    validate_host,
)
from hosts.render.managed import ManagedBlockError
from hosts.render.maps import CLIENT_BLACKLIST, render_client_blacklist
from hosts.render.opendkim import render_opendkim_files
from hosts.render.postfix import render_main_cf, render_master_cf

__all__ = [
    "HostFacts",
    "HostFile",
    "RenderError",
    "RenderedFiles",
    "dovecot_syntax",
    "parse_dovecot_version",
    "parse_postfix_version",
    "render_host",
]

CONFIG_MODE = 0o644


@dataclass(frozen=True)
class HostFile:
    """One file to write: absolute path on the host, bytes, mode; `secret` ones never shown."""

    path: str
    content: bytes
    mode: int
    secret: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class RenderedFiles:
    """The files of one rendering, in the order a deployment writes them."""

    files: tuple[HostFile, ...]

    def __iter__(self) -> Iterator[HostFile]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def by_path(self) -> dict[str, HostFile]:
        return {f.path: f for f in self.files}

    def contents(self) -> dict[str, bytes]:
        return {f.path: f.content for f in self.files}


class RenderError(ValueError):
    """The policy, the host's facts or a current file cannot be rendered; `errors` says why."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


def render_host(
    policy: PolicyValues, host: HostFacts, current_files: Mapping[str, bytes]
) -> RenderedFiles:
    """Every file the policy needs on the host. `current_files` maps absolute paths to the
    bytes there now (a missing main.cf or master.cf renders from empty)."""
    errors = validate(policy) + validate_host(host)
    if errors:
        raise RenderError(errors)
    main_cf = _join(host.postfix_config_dir, "main.cf")
    master_cf = _join(host.postfix_config_dir, "master.cf")
    for path in (main_cf, master_cf):
        if not isinstance(current_files.get(path, b""), bytes):
            raise RenderError([FieldError("current_files", f"{path}: expected the file's bytes.")])
    try:
        files = [
            HostFile(
                main_cf,
                render_main_cf(policy, host, current_files.get(main_cf, b"")),
                CONFIG_MODE,
            ),
            HostFile(
                master_cf,
                render_master_cf(policy, host, current_files.get(master_cf, b"")),
                CONFIG_MODE,
            ),
        ]
    except ManagedBlockError as exc:
        raise RenderError([FieldError("current_files", str(exc))]) from None
    files.append(
        HostFile(
            _join(host.postfix_config_dir, CLIENT_BLACKLIST),
            render_client_blacklist(host.blacklist if policy.enforce_local_blacklist else ()),
            CONFIG_MODE,
        )
    )
    files.append(
        HostFile(_join(host.dovecot_config_dir, SNIPPET), render_dovecot(policy, host), CONFIG_MODE)
    )
    if policy.dkim_signing:
        files += [
            HostFile(f.path, f.content, f.mode, f.secret)
            for f in render_opendkim_files(host, policy.mynetworks)
        ]
    return RenderedFiles(tuple(files))
