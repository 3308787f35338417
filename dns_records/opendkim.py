"""OpenDKIM's key files for one host: the key and signing tables and the private keys. Pure.

One OpenDKIM 2.11 instance signs with one algorithm: `SignatureAlgorithm` is global, and an
Ed25519 key in an rsa-sha256 instance makes it tempfail every message it should sign ("expecting
an rsa key"). Signing with RSA and Ed25519 both (RFC 8463 5: receivers that do not know Ed25519
use the RSA signature) therefore takes two instances in the MTA's milter chain, each reading its
own tables: `KeyTable`/`SigningTable` for RSA, `ed25519/KeyTable`/`ed25519/SigningTable` for
Ed25519. `instance_settings` gives each instance's opendkim.conf lines. A table is written even
when it is empty, so a host's files always mirror the keys it has.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dns_records.dkim import DkimAlgorithm, record_name, validate_selector

_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")
PRIVATE_KEY_MODE = 0o600
TABLE_MODE = 0o644


@dataclass(frozen=True)
class SigningKey:
    """A key a host signs with: its domain and selector, algorithm ("rsa" or "ed25519"), PEM."""

    domain: str
    selector: str
    algorithm: str
    private_pem: bytes


@dataclass(frozen=True)
class RenderedFile:
    """One file to write: `path` relative to the OpenDKIM configuration directory."""

    path: str
    content: bytes
    mode: int


@dataclass(frozen=True)
class Instance:
    """The OpenDKIM instance that signs with one algorithm, and where its tables are."""

    algorithm: DkimAlgorithm
    signature_algorithm: str
    key_table: str
    signing_table: str


INSTANCES = {
    DkimAlgorithm.RSA: Instance(DkimAlgorithm.RSA, "rsa-sha256", "KeyTable", "SigningTable"),
    DkimAlgorithm.ED25519: Instance(
        DkimAlgorithm.ED25519, "ed25519-sha256", "ed25519/KeyTable", "ed25519/SigningTable"
    ),
}


def key_path(key: SigningKey) -> str:
    """The private key's path relative to the configuration directory."""
    return f"keys/{key.domain}/{key.selector}.private"


def instance_settings(algorithm: str, *, config_dir: str = "/etc/opendkim") -> str:
    """The opendkim.conf lines of the instance signing with `algorithm`.

    KeyTable is looked up by exact key name (`file:`); SigningTable's `*@<domain>` are
    patterns (`refile:`). With MultipleSignatures every key listed for a domain signs.
    """
    instance = INSTANCES[DkimAlgorithm(algorithm)]
    config_dir = config_dir.rstrip("/")
    return (
        f"KeyTable file:{config_dir}/{instance.key_table}\n"
        f"SigningTable refile:{config_dir}/{instance.signing_table}\n"
        f"SignatureAlgorithm {instance.signature_algorithm}\n"
        "MultipleSignatures yes\n"
    )


def render_opendkim(
    keys: Sequence[SigningKey], *, key_dir: str = "/etc/opendkim/keys"
) -> list[RenderedFile]:
    """Both instances' tables and each private key, in a stable order (domain, then selector).

    `key_dir` is where the `keys/` directory lands on the host, as the key tables name it.
    Pass the keys the host should sign with: each one listed signs every message of its domain.
    """
    ordered = sorted(keys, key=lambda k: (k.domain, k.selector))
    names = [(k.domain, k.selector) for k in ordered]
    if len(set(names)) != len(names):
        raise ValueError("two keys share a domain and selector")
    for key in ordered:
        # Both become path components and table fields: nothing but DNS names may pass.
        if not _DOMAIN.match(key.domain) or validate_selector(key.selector) != key.selector:
            raise ValueError(f"not a domain and selector: {key.domain!r}, {key.selector!r}")
        if key.algorithm not in INSTANCES:
            raise ValueError(f"{key.selector}: algorithm {key.algorithm!r} is not rsa or ed25519")
    key_dir = key_dir.rstrip("/")
    files = []
    for algorithm, instance in INSTANCES.items():
        signing = [k for k in ordered if k.algorithm == algorithm]
        key_table = "".join(
            f"{record_name(k.selector, k.domain)} "
            f"{k.domain}:{k.selector}:{key_dir}/{k.domain}/{k.selector}.private\n"
            for k in signing
        )
        signing_table = "".join(
            f"*@{k.domain} {record_name(k.selector, k.domain)}\n" for k in signing
        )
        files.append(RenderedFile(instance.key_table, key_table.encode("ascii"), TABLE_MODE))
        files.append(
            RenderedFile(instance.signing_table, signing_table.encode("ascii"), TABLE_MODE)
        )
    files += [RenderedFile(key_path(k), k.private_pem, PRIVATE_KEY_MODE) for k in ordered]
    return files
