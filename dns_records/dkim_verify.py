"""DKIM signing and verification by dkimpy, with every key lookup made through our `Resolver`.

`sign_and_verify` proves a key works end to end: a test message signed with the private key
verifies against the record DNS serves. `verify_message` checks the signatures of a message
that arrived. A lookup that failed is "could not tell" (`unknown`), never a failed signature.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dns_records.dkim import DkimAlgorithm, DkimRecordError, parse_dkim_record
from dns_records.lookups import Lookup, LookupStatus, Resolving

_SIGNATURE_ALGORITHMS = {
    DkimAlgorithm.RSA: b"rsa-sha256",
    DkimAlgorithm.ED25519: b"ed25519-sha256",
}
_SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


@dataclass(frozen=True)
class SigningProof:
    """Whether the signatures verified; `unknown` when a DNS lookup failed (could not tell)."""

    ok: bool
    error: str = ""
    unknown: bool = False


class _LookupFailed(Exception):
    """Raised through dkimpy, which would take a failed lookup for a missing key."""

    def __init__(self, lookup: Lookup) -> None:
        super().__init__(f"Could not look up {lookup.name}: {lookup.reason or 'lookup failed'}")


@dataclass
class _KeyLookups:
    """dkimpy's `dnsfunc`, answered by the resolver; remembers what each name answered."""

    resolver: Resolving
    answers: dict[str, Lookup] = field(default_factory=dict)

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        # dkimpy asks for `<selector>._domainkey.<domain>.` as bytes; its timeout is ignored,
        # the resolver's own limit applies.
        text = name.decode("ascii", errors="replace").rstrip(".")
        lookup = self.resolver.lookup(text, "TXT")
        self.answers[text] = lookup
        if lookup.status is LookupStatus.ERROR:
            raise _LookupFailed(lookup)
        if not lookup.ok or len(lookup.records) != 1:
            return None  # dkimpy: "missing public key"; `_why` tells missing from ambiguous
        return lookup.records[0].encode("utf-8")

    def why(self, domain: str, selector: str) -> str:
        """Why a signature by `selector` of `domain` did not verify, from what DNS answered."""
        name = f"{selector}._domainkey.{domain}".rstrip(".")
        lookup = self.answers.get(name)
        if lookup is None:
            return ""
        if not lookup.ok or not lookup.records:
            return f"No DKIM record at {name}"
        if len(lookup.records) > 1:
            return f"{len(lookup.records)} TXT records at {name}: publish one"
        try:
            record = parse_dkim_record(lookup.records[0])
        except DkimRecordError as exc:
            return f"{name} is not a usable DKIM record: {exc}"
        if record.revoked:
            return f"{name} revokes the key (empty p=)"
        return ""


class _Collected(logging.Handler):
    """dkimpy logs why a signature failed instead of raising: keep those reasons."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _logger() -> tuple[logging.Logger, _Collected]:
    # A logger outside the logging tree: one per call, so threads never see each other's reasons.
    logger = logging.Logger("dns_records.dkim_verify.dkimpy", logging.ERROR)
    handler = _Collected()
    logger.addHandler(handler)
    return logger, handler


def _verify_one(message: bytes, index: int, lookups: _KeyLookups, *, label: str) -> SigningProof:
    """Verify the `index`th signature; `label` names it in the error ("signature 2")."""
    logger, reasons = _logger()
    try:
        verifier = dkim.DKIM(message, logger=logger)
        ok = verifier.verify(idx=index, dnsfunc=lookups)
    except _LookupFailed as exc:
        return SigningProof(ok=False, error=f"{label}: {exc}", unknown=True)
    except dkim.DKIMException as exc:
        return SigningProof(ok=False, error=f"{label}: {exc}")
    if ok:
        return SigningProof(ok=True)
    domain = _text(getattr(verifier, "domain", b""))
    selector = _text(getattr(verifier, "selector", b""))
    if domain and selector:
        label = f"{label} (d={domain}, s={selector})"
    why = lookups.why(domain, selector) if domain and selector else ""
    why = why or "; ".join(reasons.messages)
    why = why or (
        f"it does not verify with the key published at {selector}._domainkey.{domain}: the "
        "message changed after it was signed, or another key signed it"
    )
    return SigningProof(ok=False, error=f"{label}: {why}")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return str(value or "")


def verify_message(message: bytes, *, resolver: Resolving) -> SigningProof:
    """Verify every DKIM-Signature of `message`: ok only when all of them verify.

    A signature that fails outranks one whose key could not be looked up, as in the checks.
    """
    try:
        count = len(_signatures(message))
    except dkim.DKIMException as exc:
        return SigningProof(ok=False, error=f"the message cannot be read: {exc}")
    if count == 0:
        return SigningProof(ok=False, error="the message has no DKIM-Signature")
    lookups = _KeyLookups(resolver)
    proofs = [
        _verify_one(message, index, lookups, label=f"signature {index + 1}")
        for index in range(count)
    ]
    failed = [p for p in proofs if not p.ok and not p.unknown]
    unknown = [p for p in proofs if p.unknown]
    if failed:
        return SigningProof(ok=False, error="; ".join(p.error for p in failed))
    if unknown:
        return SigningProof(ok=False, error="; ".join(p.error for p in unknown), unknown=True)
    return SigningProof(ok=True)


def _signatures(message: bytes) -> list[bytes]:
    return [
        value for name, value in dkim.DKIM(message).headers if name.lower() == b"dkim-signature"
    ]


def _dkimpy_private_key(private_pem: bytes, algorithm: DkimAlgorithm) -> bytes:
    """The key as dkimpy takes it: PKCS#1 PEM for RSA, the base64 32-byte seed for Ed25519."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if algorithm is DkimAlgorithm.RSA:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the private key is not an RSA key")
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("the private key is not an Ed25519 key")
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed)


def signing_test_message(domain: str) -> bytes:
    """A small message from postmaster@domain, as a host would send it."""
    lines = [
        f"From: postmaster@{domain}",
        f"To: postmaster@{domain}",
        "Subject: mailsec DKIM signing check",
        f"Date: {formatdate(usegmt=True)}",
        f"Message-ID: {make_msgid('mailsec-dkim', domain=domain)}",
        "",
        "This message proves that the DKIM key signs and that its published record verifies it.",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def sign_and_verify(
    domain: str, selector: str, private_pem: bytes, algorithm: str, *, resolver: Resolving
) -> SigningProof:
    """Sign a test message with the key, then verify it against the record the resolver sees."""
    try:
        chosen = DkimAlgorithm(algorithm)
        privkey = _dkimpy_private_key(private_pem, chosen)
        message = signing_test_message(domain)
        signature = dkim.DKIM(message).sign(
            selector.encode("ascii"),
            domain.encode("ascii"),
            privkey,
            signature_algorithm=_SIGNATURE_ALGORITHMS[chosen],
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=_SIGNED_HEADERS,
        )
    except (ValueError, TypeError, UnicodeError, dkim.DKIMException) as exc:
        return SigningProof(ok=False, error=f"Could not sign with the key: {exc}")
    return _verify_one(signature + message, 0, _KeyLookups(resolver), label="the test signature")
