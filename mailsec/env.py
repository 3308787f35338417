"""Strict readers for settings taken from the environment.

Each helper returns the parsed value or raises ImproperlyConfigured naming the variable:
a malformed value stops start-up instead of being guessed at.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_INTEGER = re.compile(r"^-?[0-9]+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "", environ: Mapping[str, str] = os.environ) -> str:
    value = _raw(environ, name)
    return default if value is None else value


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    value = _raw(environ, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0/true/false/yes/no/on/off, not {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    value = _raw(environ, name)
    if value is None:
        return default
    if not _INTEGER.match(value):
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
    return number


def env_float(
    name: str, default: float, *, minimum: float = 0.0, environ: Mapping[str, str] = os.environ
) -> float:
    value = _raw(environ, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {value!r}")
    if number <= minimum:
        raise ImproperlyConfigured(f"{name} must be greater than {minimum}, not {number}")
    return number


def env_list(name: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    value = _raw(environ, name)
    if value is None:
        return []
    items = [item.strip() for item in value.split(",")]
    if any(item == "" for item in items):
        raise ImproperlyConfigured(f"{name} has an empty item in {value!r}")
    return items


@dataclass(frozen=True)
class Nameserver:
    """One DNS server to send queries to."""

    address: str
    port: int = 53


def parse_nameserver(text: str) -> Nameserver:
    """Parse `ip`, `ip:port`, `[ipv6]:port` or a bare IPv6 address."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed nameserver {text!r}")
        if rest:
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r} is not an IP address") from None
    return Nameserver(address=str(address), port=port)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in {whole!r}")
    return int(text)


def env_nameservers(name: str, environ: Mapping[str, str] = os.environ) -> list[Nameserver]:
    result = []
    for item in env_list(name, environ):
        try:
            result.append(parse_nameserver(item))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    return result


def env_networks(
    name: str, environ: Mapping[str, str] = os.environ
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    result = []
    for item in env_list(name, environ):
        try:
            result.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    return result


def env_secret_key(
    name: str, *, local_file: Path, create: bool, environ: Mapping[str, str] = os.environ
) -> str:
    """The key in `name`, else the one stored in local_file, else "" (and start-up is refused).

    With create (local development), a missing local_file is generated first, so commands run
    later without debug share the key, and no process ever falls back to a public one.
    """
    value = _raw(environ, name)
    if value is not None:
        return value
    what = "local secret key"
    try:
        return _read_key_file(local_file, what)
    except FileNotFoundError:
        if not create:
            return ""
    return _create_key_file(local_file, secrets.token_urlsafe(50), what, name)


_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def env_encryption_keys(
    name: str, *, local_file: Path, create: bool, environ: Mapping[str, str] = os.environ
) -> dict[str, bytes]:
    """The keys in `name` (`id:base64key,...`), else those in local_file, else none.

    The first key encrypts, every key decrypts. With create (local development), a missing
    local_file is generated first with one random key, exactly like the local secret key.
    """
    value = _raw(environ, name)
    if value is not None:
        return parse_encryption_keys(value, source=name)
    what = "local encryption key file"
    try:
        text = _read_key_file(local_file, what)
    except FileNotFoundError:
        if not create:
            return {}
        generated = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
        text = _create_key_file(local_file, f"local:{generated}", what, name)
    return parse_encryption_keys(text, source=f"the {what} {local_file}")


def parse_encryption_keys(text: str, *, source: str) -> dict[str, bytes]:
    """Parse `id:base64key,...` (standard or URL-safe base64 of 32 bytes; ids unique).

    Messages name the source and the key id only: never the text, which holds the keys.
    """
    keys: dict[str, bytes] = {}
    for position, item in enumerate(text.split(","), start=1):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not _KEY_ID.match(key_id) or not encoded:
            raise ImproperlyConfigured(
                f"{source}: item {position} must be id:base64key, the id made of 1 to 32 "
                "letters, digits, - or _"
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"{source} repeats key id {key_id!r}")
        standard = encoded.replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{source}: key {key_id!r} is not base64") from None
        if len(raw) != 32:
            raise ImproperlyConfigured(f"{source}: key {key_id!r} must decode to 32 bytes")
        keys[key_id] = raw
    return keys


def _read_key_file(path: Path, what: str) -> str:
    try:
        file = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ImproperlyConfigured(f"cannot read the {what} {path}: {exc}") from None
    with file:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
        if mode & 0o077:
            raise ImproperlyConfigured(
                f"the {what} {path} is open to other users (mode {mode:04o}): "
                "chmod 600 it, or delete it to generate a new one"
            )
        key = file.read().strip()
    if not key:
        raise ImproperlyConfigured(f"the {what} {path} is empty: delete it to generate a new one")
    return key


def _create_key_file(path: Path, key: str, what: str, variable: str) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp opens with O_EXCL and mode 0600, so the key is never readable by others; the
        # hard link then publishes the whole file at once and fails if another process (the
        # worker, starting alongside) got there first, whose key everyone then uses.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(key + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
    except FileExistsError:
        return _read_key_file(path, what)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"cannot create the {what} {path}: {exc} "
            f"(set {variable}, or MAILSEC_VAR_DIR to a writable directory)"
        ) from None
    return key


def parse_database_url(url: str, *, base_dir: Path) -> dict[str, Any]:
    """Django DATABASES entry for postgres://user:pass@host:port/name or sqlite:///path."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ValueError("a postgres URL needs a database name")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path in {"", "/"}:
            raise ValueError("a sqlite URL needs a file path: sqlite:///path/to/db.sqlite3")
        # sqlite:///relative/x has path "/relative/x"; sqlite:////abs/x has "//abs/x".
        file = Path(path[1:])
        if not file.is_absolute():
            file = base_dir / file
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(file)}
    raise ValueError(f"unsupported database scheme {parts.scheme!r}")


def env_database(name: str, *, default_sqlite: Path, base_dir: Path) -> dict[str, Any]:
    value = _raw(os.environ, name)
    if value is None:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite)}
    try:
        return parse_database_url(value, base_dir=base_dir)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
