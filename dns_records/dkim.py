"""DKIM keys and key records (RFC 6376, RFC 8463): generate, name, render, parse, compare. Pure.

A record's `p=` is what receivers verify with: for RSA the DER SubjectPublicKeyInfo (what
RFC 6376 3.6.1 and `opendkim-genkey` publish), for Ed25519 the raw 32-byte public key
(RFC 8463 4.2), both base64. Private keys are PKCS#8 PEM, which OpenDKIM reads for both.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


class DkimAlgorithm(StrEnum):
    RSA = "rsa"
    ED25519 = "ed25519"


RSA_SIZES = (2048, 3072, 4096)  # below 2048 refused: 1024-bit keys are within reach of factoring
RSA_DEFAULT_BITS = 2048
ED25519_KEY_BYTES = 32
MAX_SELECTOR = 63  # the longest selector the models store; also one label's limit
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class GeneratedKey:
    """A new key pair: the private half as PKCS#8 PEM, the public half as the record's p=."""

    algorithm: DkimAlgorithm
    bits: int | None
    private_pem: bytes
    public_b64: str


def generate_key(algorithm: DkimAlgorithm, bits: int | None = None) -> GeneratedKey:
    """A fresh key pair: RSA (2048 bits unless `bits` says 3072 or 4096, e=65537) or Ed25519."""
    algorithm = DkimAlgorithm(algorithm)
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm is DkimAlgorithm.RSA:
        bits = RSA_DEFAULT_BITS if bits is None else bits
        if bits not in RSA_SIZES:
            sizes = ", ".join(map(str, RSA_SIZES))
            raise ValueError(f"RSA keys are {sizes} bits, not {bits}")
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        if bits is not None:
            raise ValueError("Ed25519 keys have no size to choose")
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return GeneratedKey(algorithm, bits, pem, base64.b64encode(public).decode("ascii"))


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain.rstrip('.')}"


def record_value(algorithm: DkimAlgorithm, public_b64: str, *, testing: bool = False) -> str:
    """The TXT value to publish; `testing` adds t=y (receivers treat failures as unsigned)."""
    flags = "t=y; " if testing else ""
    return f"v=DKIM1; k={DkimAlgorithm(algorithm)}; {flags}p={public_b64}"


class DkimRecordError(ValueError):
    """The TXT value is no usable DKIM key record: receivers fail every signature it should verify."""


@dataclass(frozen=True)
class DkimRecord:
    """A parsed key record. `revoked`: p= is empty (RFC 6376 3.6.1), the key is withdrawn."""

    tags: dict[str, str]
    key_type: str
    public_b64: str
    testing: bool
    revoked: bool

    def rsa_bits(self) -> int | None:
        """The RSA modulus size, None for an Ed25519 key, a revoked one or one that is not RSA."""
        if self.key_type != DkimAlgorithm.RSA or not self.public_b64:
            return None
        key = _rsa_public_key(self.public_b64)
        return key.key_size if key is not None else None


def _rsa_public_key(public_b64: str) -> rsa.RSAPublicKey | None:
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_b64, validate=True))
    except (ValueError, TypeError, binascii.Error):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _tag_list(text: str) -> dict[str, str]:
    """RFC 6376 3.2: `name=value` pairs split by ";", a trailing ";" allowed, names unique
    and case-sensitive, whitespace around names and values ignored."""
    tags: dict[str, str] = {}
    parts = text.split(";")
    if parts and not parts[-1].strip():
        parts.pop()
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not _TAG_NAME.match(name):
            raise DkimRecordError(f"{part.strip()!r} is not a tag=value pair")
        if name in tags:
            raise DkimRecordError(f"tag {name}= appears twice")
        tags[name] = value.strip()
    return tags


def parse_dkim_record(text: str) -> DkimRecord:
    """The key record as receivers read it (RFC 6376 3.6.1), or DkimRecordError saying why not."""
    if not text.strip():
        raise DkimRecordError("the record is empty")
    tags = _tag_list(text)
    if "v" in tags:
        if next(iter(tags)) != "v":
            raise DkimRecordError("v= must be the first tag")
        if tags["v"] != "DKIM1":
            raise DkimRecordError(f"v={tags['v']} is not DKIM1")
    key_type = tags.get("k", DkimAlgorithm.RSA)
    if key_type not in set(DkimAlgorithm):
        raise DkimRecordError(f"k={key_type} is not a key type receivers know (rsa, ed25519)")
    if "p" not in tags:
        raise DkimRecordError("the required p= tag is missing")
    public_b64 = _WHITESPACE.sub("", tags["p"])
    if "s" in tags:
        services = {s.strip() for s in tags["s"].split(":")}
        if not services & {"*", "email"}:
            raise DkimRecordError(f"s={tags['s']} does not allow the key for email")
    if "h" in tags:
        hashes = {h.strip() for h in tags["h"].split(":")}
        if "sha256" not in hashes:
            raise DkimRecordError(f"h={tags['h']} does not allow sha256, which signers use")
    flags = {f.strip() for f in tags.get("t", "").split(":")}
    if public_b64:
        _check_public_key(key_type, public_b64)
    return DkimRecord(
        tags=tags,
        key_type=str(key_type),
        public_b64=public_b64,
        testing="y" in flags,
        revoked=not public_b64,
    )


def _check_public_key(key_type: str, public_b64: str) -> None:
    try:
        data = base64.b64decode(public_b64, validate=True)
    except (ValueError, binascii.Error):
        raise DkimRecordError("p= is not valid base64") from None
    if key_type == DkimAlgorithm.ED25519:
        if len(data) != ED25519_KEY_BYTES:
            raise DkimRecordError(
                f"p= holds {len(data)} bytes, an Ed25519 public key is {ED25519_KEY_BYTES}"
            )
    elif _rsa_public_key(public_b64) is None:
        raise DkimRecordError("p= is not an RSA public key (DER SubjectPublicKeyInfo)")


def public_keys_equal(a_b64: str, b_b64: str) -> bool:
    """Whether two p= values hold the same bytes; invalid base64 equals nothing."""
    try:
        a = base64.b64decode(_WHITESPACE.sub("", a_b64), validate=True)
        b = base64.b64decode(_WHITESPACE.sub("", b_b64), validate=True)
    except (ValueError, binascii.Error):
        return False
    return a == b


def validate_selector(text: str) -> str:
    """The selector lower-cased, or ValueError saying what is wrong with it.

    A selector is one or more DNS labels (RFC 6376 3.1): letters, digits and hyphens, no
    hyphen at either end of a label, labels joined by dots.
    """
    selector = text.strip().lower()
    if not selector:
        raise ValueError("Enter a selector.")
    if len(selector) > MAX_SELECTOR:
        raise ValueError(f"A selector is at most {MAX_SELECTOR} characters.")
    if not selector.isascii():
        raise ValueError("A selector uses only the letters a-z, digits, hyphens and dots.")
    for label in selector.split("."):
        if not label:
            raise ValueError("A selector cannot start or end with a dot, or have two in a row.")
        if not _LABEL.match(label):
            if label.startswith("-") or label.endswith("-"):
                raise ValueError(f"{label!r}: a part of a selector cannot start or end with '-'.")
            raise ValueError(
                f"{label!r}: a selector uses only the letters a-z, digits, hyphens and dots."
            )
    return selector


def dated_selector(now: datetime, algorithm: DkimAlgorithm, taken: Collection[str]) -> str:
    """`ms<year><month><r|e>`, numbered from 2 when that selector is already taken."""
    suffix = "e" if DkimAlgorithm(algorithm) is DkimAlgorithm.ED25519 else "r"
    base = f"ms{now:%Y%m}{suffix}"
    used = {t.lower() for t in taken}
    if base not in used:
        return base
    number = 2
    while f"{base}{number}" in used:
        number += 1
    return f"{base}{number}"
