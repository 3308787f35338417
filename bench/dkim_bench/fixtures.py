"""The fixture domains: three DKIM selectors each, a seeded mix of good and broken records."""

from __future__ import annotations

import base64
import random
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from throughput.fixtures import ServedKnot, serve_zones, txt_string, zone_text

from dns_records.dkim import DkimAlgorithm, GeneratedKey, record_value

TLD = "test"
RSA_SELECTOR = "ms202612r"  # dns_records.dkim.dated_selector's shape
ED25519_SELECTOR = "ms202612e"
EXTERNAL_SELECTOR = "esp"  # another sender's selector, watched: state "external", no value
EXTERNAL_KEYS = 8  # the other sender's 1024-bit keys, shared by its customers
SERVFAIL_SHARE = 0.01  # domains whose zone does not load
MAX_STRING = 255  # bytes in one TXT character-string


@dataclass(frozen=True)
class Variant:
    """One way a selector's record is set up, and what each side should say of it.

    `mailsec` is the `dkim` check's status for the selector; `dkimpy` whether dkimpy finds a
    key it would verify a signature with. Where the two differ, `why` says why, by design.
    """

    name: str
    weight: int  # relative share of the slot's selectors
    description: str
    mailsec: str
    dkimpy: bool
    why: str = ""


DOUBLED_WHY = (
    "two TXT records at the name: dkimpy takes the first in the answer; RFC 6376 3.6.2.2 leaves "
    "the choice to each verifier, so mailsec fails it (which key a receiver uses is chance)"
)

RSA_VARIANTS = (
    Variant("rsa_active", 80, "active RSA 2048 key, record as stored", "ok", True),
    Variant("rsa_published", 5, "published key, not signing yet, record as stored", "ok", True),
    Variant("rsa_testing", 3, "active key, record with t=y", "warning", True),
    Variant("rsa_missing", 3, "active key, no record", "fail", False),
    Variant(
        "rsa_wrong_key",
        2,
        "active key, the record holds another RSA 2048 key",
        "fail",
        True,
        "the record holds a working key, but not the one mailsec signs with: mailsec compares "
        "it with the stored key; dkimpy has no stored key to compare with",
    ),
    Variant("rsa_doubled", 2, "active key, its record and an old key's", "fail", True, DOUBLED_WHY),
    Variant("rsa_truncated", 2, "active key, p= cut short", "fail", False),
    Variant("rsa_revoked", 1, "active key, p= empty (revoked)", "fail", False),
    Variant(
        "rsa_pending",
        2,
        "pending key, no record yet",
        "warning",
        False,
        "nothing signs with a pending key yet: mailsec warns that its record waits to be "
        "published; dkimpy finds no record",
    ),
)
ED25519_VARIANTS = (
    Variant("ed_active", 80, "active Ed25519 key, record as stored", "ok", True),
    Variant("ed_retiring", 3, "retiring key, record as stored", "ok", True),
    Variant("ed_pending_published", 3, "pending key whose record is out", "ok", True),
    Variant("ed_retired_published", 2, "retired key, record still published", "ok", True),
    Variant(
        "ed_retired_removed",
        3,
        "retired key, record removed",
        "ok",
        False,
        "a retired key's record is meant to be gone: mailsec reports that as done; dkimpy "
        "finds no record",
    ),
    Variant("ed_missing", 3, "active key, no record", "fail", False),
    Variant("ed_short_key", 2, "active key, p= holds 31 bytes", "fail", False),
    Variant("ed_wrong_type", 2, "active key, published with k=rsa", "fail", False),
)
EXTERNAL_VARIANTS = (
    Variant("ext_rsa1024", 76, "the sender's 1024-bit RSA key", "warning", True),
    Variant("ext_rsa2048", 6, "the sender's 2048-bit RSA key", "ok", True),
    Variant("ext_testing", 3, "2048-bit key with t=y", "warning", True),
    Variant("ext_missing", 3, "no record", "fail", False),
    Variant(
        "ext_revoked",
        2,
        "p= empty: the sender retired the selector",
        "warning",
        False,
        "the sender revoked its key: mailsec warns to stop watching the selector (nothing of "
        "the domain's is broken); dkimpy finds no key",
    ),
    Variant("ext_weak_512", 2, "512-bit RSA key (dkimpy's verify refuses < 1024)", "fail", False),
    Variant("ext_syntax_error", 2, "`p` without `=`", "fail", False),
    Variant("ext_bad_version", 1, "v=DKIM2", "fail", False),
    Variant(
        "ext_sha1_only",
        2,
        "h=sha1: the key may not verify sha256 signatures",
        "fail",
        True,
        "dkimpy ignores a key record's h=; mailsec fails a key that rules out sha256, which "
        "every signer now uses (RFC 8301)",
    ),
    Variant("ext_tlsrpt_only", 1, "s=tlsrpt: the key is for TLS reports only", "fail", False),
    Variant("ext_doubled", 2, "two records, 1024 and 2048 bits", "fail", True, DOUBLED_WHY),
)
SERVFAIL = Variant(
    "servfail",
    0,
    "the domain's zone does not load: knotd answers SERVFAIL",
    "error",
    False,
    "the lookup failed: mailsec says it cannot tell (error); dkimpy's get_txt reads SERVFAIL "
    "(NoNameservers) as no record, and its verify as a missing key",
)
SLOTS = (
    (RSA_SELECTOR, DkimAlgorithm.RSA, RSA_VARIANTS),
    (ED25519_SELECTOR, DkimAlgorithm.ED25519, ED25519_VARIANTS),
    (EXTERNAL_SELECTOR, "", EXTERNAL_VARIANTS),
)
VARIANTS = {v.name: v for v in (*RSA_VARIANTS, *ED25519_VARIANTS, *EXTERNAL_VARIANTS, SERVFAIL)}
STATES = {
    "rsa_published": "published",
    "rsa_pending": "pending",
    "ed_retiring": "retiring",
    "ed_pending_published": "pending",
    "ed_retired_published": "retired",
    "ed_retired_removed": "retired",
}


@dataclass(frozen=True)
class FixtureRecord:
    """One selector of one domain: what mailsec expects there and what the zone publishes.

    `state`, `value` and `algorithm` make the domain's `DkimExpectation` for this selector.
    """

    domain: str
    selector: str
    variant: Variant
    state: str
    value: str
    algorithm: str
    published: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return self.domain, self.selector


@dataclass(frozen=True)
class KeyPools:
    """The keys the records use: generated ones (by the key-generation run), the sender's."""

    rsa: Sequence[GeneratedKey]
    ed25519: Sequence[GeneratedKey]
    external: Sequence[str]  # 1024-bit RSA, p= values


def external_keys(count: int = EXTERNAL_KEYS) -> list[str]:
    """The other sender's 1024-bit keys (generate_key refuses under 2048 bits), as p= values."""
    # A weak key on purpose: the check warns about exactly this.
    weak = [rsa.generate_private_key(65537, 1024) for _ in range(count)]  # noqa: S505
    return [_b64_spki(key.public_key()) for key in weak]


def _b64_spki(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def _weak_key(rng: random.Random) -> str:
    """A 512-bit RSA public key as p= (cryptography generates no such key; only its public
    half is published, and nothing signs with it, so any odd 512-bit modulus will do)."""
    modulus = rng.getrandbits(512) | (1 << 511) | 1
    return _b64_spki(rsa.RSAPublicNumbers(65537, modulus).public_key())


def _rsa_record(p: str, extra: str = "") -> str:
    return f"v=DKIM1; k=rsa; {extra}p={p}"


def _managed(
    variant: str, algorithm: DkimAlgorithm, key: GeneratedKey, other: GeneratedKey
) -> tuple[str, tuple[str, ...]]:
    """A key mailsec holds: the value it stores, and the records the zone publishes."""
    value = record_value(algorithm, key.public_b64, testing=variant == "rsa_testing")
    raw = base64.b64decode(key.public_b64)
    published: dict[str, tuple[str, ...]] = {
        "rsa_missing": (),
        "rsa_pending": (),
        "ed_retired_removed": (),
        "ed_missing": (),
        "rsa_wrong_key": (record_value(algorithm, other.public_b64),),
        "rsa_doubled": (value, record_value(algorithm, other.public_b64)),
        "rsa_truncated": (_rsa_record(key.public_b64[: len(key.public_b64) // 8 * 4]),),
        "rsa_revoked": (_rsa_record(""),),
        "ed_short_key": (f"v=DKIM1; k=ed25519; p={base64.b64encode(raw[:31]).decode()}",),
        "ed_wrong_type": (_rsa_record(key.public_b64),),
    }
    return value, published.get(variant, (value,))


def _external(variant: str, key: str, strong: GeneratedKey, rng: random.Random) -> tuple[str, ...]:
    """Records another sender publishes at its selector in the customer's domain."""
    published: dict[str, tuple[str, ...]] = {
        "ext_rsa2048": (_rsa_record(strong.public_b64),),
        "ext_testing": (_rsa_record(strong.public_b64, "t=y; "),),
        "ext_missing": (),
        "ext_revoked": (_rsa_record(""),),
        "ext_weak_512": (_rsa_record(_weak_key(rng)),),
        "ext_syntax_error": (f"v=DKIM1; k=rsa; p{key}",),
        "ext_bad_version": (f"v=DKIM2; k=rsa; p={key}",),
        "ext_sha1_only": (_rsa_record(strong.public_b64, "h=sha1; "),),
        "ext_tlsrpt_only": (_rsa_record(strong.public_b64, "s=tlsrpt; "),),
        "ext_doubled": (_rsa_record(key), _rsa_record(strong.public_b64)),
    }
    return published.get(variant, (_rsa_record(key),))


def _txt_rdata(text: str) -> str:
    """The TXT value as character-strings of at most 255 bytes (an RSA 2048 record is ~400)."""
    return " ".join(txt_string(text[i : i + MAX_STRING]) for i in range(0, len(text), MAX_STRING))


def _spread(variants: Sequence[Variant], count: int, rng: random.Random) -> list[Variant]:
    """`count` variants: each at least once (when there are enough), the rest by weight."""
    chosen = list(variants)[:count]
    chosen += rng.choices(variants, weights=[v.weight for v in variants], k=count - len(chosen))
    rng.shuffle(chosen)
    return chosen


def write_fixtures(
    directory: Path, count: int, seed: int, keys: KeyPools
) -> tuple[list[FixtureRecord], dict[str, str | None]]:
    """Write one zone per domain; return every selector's record and KnotServer's zone files."""
    rng = random.Random(seed)  # noqa: S311  (fixture data, not security)
    names = [f"d{n:04d}.{TLD}" for n in range(count)]
    failing = set(rng.sample(names, max(1, round(count * SERVFAIL_SHARE))))
    served = [name for name in names if name not in failing]
    slot_variants = {
        selector: dict(zip(served, _spread(variants, len(served), rng), strict=True))
        for selector, _algorithm, variants in SLOTS
    }
    directory.mkdir(parents=True, exist_ok=True)
    records: list[FixtureRecord] = []
    zone_files: dict[str, str | None] = {}
    for index, name in enumerate(names):
        key, other = keys.rsa[index % len(keys.rsa)], keys.rsa[(index + 1) % len(keys.rsa)]
        ed = keys.ed25519[index % len(keys.ed25519)]
        lines: list[str] = []
        for selector, algorithm, _variants in SLOTS:
            variant = SERVFAIL if name in failing else slot_variants[selector][name]
            if selector == EXTERNAL_SELECTOR:
                state, value = "external", ""  # mailsec only reads another sender's record
                sender_key = keys.external[index % len(keys.external)]
                published = _external(variant.name, sender_key, other, rng)
            else:
                managed = key if algorithm is DkimAlgorithm.RSA else ed
                state = STATES.get(variant.name, "active")
                value, published = _managed(variant.name, DkimAlgorithm(algorithm), managed, other)
            records.append(
                FixtureRecord(name, selector, variant, state, value, str(algorithm), published)
            )
            lines += [f"{selector}._domainkey TXT {_txt_rdata(text)}" for text in published]
        if name in failing:
            zone_files[name] = None
            continue
        (directory / f"{name}.zone").write_text(zone_text(name, lines))
        zone_files[name] = f"{name}.zone"
    return records, zone_files


@contextmanager
def serve_fixtures(
    count: int, seed: int, keys: KeyPools
) -> Iterator[tuple[list[FixtureRecord], ServedKnot]]:
    """Write the fixture zones to a temporary directory and serve them until the end."""
    with tempfile.TemporaryDirectory(prefix="mailsec-bench-dkim-") as tmp:
        source = Path(tmp) / "fixtures"
        records, zone_files = write_fixtures(source, count, seed, keys)
        with serve_zones(Path(tmp), source, zone_files) as knot:
            yield records, knot
