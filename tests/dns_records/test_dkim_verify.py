"""DKIM signing and verification through dkimpy, every key looked up through mailsec's resolver.

The published vectors (tests/fixtures/dkim: RFC 6376/8463, dkimpy's and Exim's) verify against
the records the fixture zones serve; keys mailsec generates sign and verify against a zone this
module's own Knot serves.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dns_records.dkim import DkimAlgorithm, GeneratedKey, generate_key, record_name, record_value
from dns_records.dkim_verify import SigningProof, sign_and_verify, verify_message
from dns_records.lookups import Lookup
from dns_records.resolver import Resolver
from dns_records.zonefile import zone_line
from mailsec.env import parse_nameserver
from tests.servers import KnotServer

pytestmark = pytest.mark.knot

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "dkim"
FOOTBALL = "football.example.com"
ROUND_TRIP = "roundtrip.test"
ROUND_TRIP_ADDRESS = "127.0.0.18"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def ed25519_pem(seed_file: str) -> bytes:
    """A base64 Ed25519 seed (as dkimpy's vectors hold it) as the PKCS#8 PEM mailsec stores."""
    seed = base64.b64decode(vector(seed_file).strip())
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_zone(directory: Path, zone: str, records: dict[str, list[str]]) -> None:
    """`<zone>.zone` in `directory`: SOA, NS and the TXT `records`, written as `zone_line` does."""
    lines = [
        f"{zone}. 300 IN SOA ns1.{zone}. hostmaster.{zone}. 1 7200 3600 1209600 300",
        f"{zone}. 300 IN NS ns1.{zone}.",
        f"ns1.{zone}. 300 IN A 127.0.0.53",
    ]
    lines += [zone_line(name, "TXT", value) for name, values in records.items() for value in values]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{zone}.zone").write_text("\n".join(lines) + "\n")


class RecordingResolver(Resolver):
    """The product's resolver, noting each name asked."""

    def __init__(self, nameserver: str) -> None:
        super().__init__(nameservers=[parse_nameserver(nameserver)], timeout=2)
        self.asked: list[tuple[str, str]] = []

    def lookup(self, name: str, rdtype: str) -> Lookup:
        self.asked.append((name, rdtype))
        return super().lookup(name, rdtype)


@pytest.fixture
def resolver(knot: KnotServer) -> RecordingResolver:
    return RecordingResolver(knot.nameserver)


@pytest.fixture(scope="module")
def generated() -> dict[str, GeneratedKey]:
    return {
        "rsa": generate_key(DkimAlgorithm.RSA, 2048),
        "ed25519": generate_key(DkimAlgorithm.ED25519),
        "other": generate_key(DkimAlgorithm.RSA, 2048),
    }


@pytest.fixture(scope="module")
def round_trip_resolver(
    generated: dict[str, GeneratedKey], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Resolver]:
    """A Knot of this module's own serving roundtrip.test with the generated keys' records.

    `mismatch` publishes the "other" key's record under a selector the "rsa" key signs for.
    """
    zones = tmp_path_factory.mktemp("dkim-zones")
    rsa_key, ed_key, other = generated["rsa"], generated["ed25519"], generated["other"]
    write_zone(
        zones,
        ROUND_TRIP,
        {
            record_name("r2048", ROUND_TRIP): [record_value(rsa_key.algorithm, rsa_key.public_b64)],
            record_name("e1", ROUND_TRIP): [record_value(ed_key.algorithm, ed_key.public_b64)],
            record_name("mismatch", ROUND_TRIP): [record_value(other.algorithm, other.public_b64)],
        },
    )
    server = KnotServer(
        tmp_path_factory.mktemp("knot-dkim"), address=ROUND_TRIP_ADDRESS, source=zones
    )
    server.start()
    try:
        yield Resolver(nameservers=[parse_nameserver(server.nameserver)], timeout=2)
    finally:
        server.stop()


# --- the published vectors ------------------------------------------------------------------


def test_rfc8463_message_verifies_its_ed25519_and_rsa_signatures(resolver):
    assert verify_message(vector("rfc6376.signed.msg"), resolver=resolver).ok
    assert (f"brisbane._domainkey.{FOOTBALL}", "TXT") in resolver.asked
    assert (f"test._domainkey.{FOOTBALL}", "TXT") in resolver.asked


def test_the_rfc6376_rsa_signature_verifies(resolver):
    proof = verify_message(vector("rfc6376.signed.rsa.msg"), resolver=resolver)
    assert proof.ok, proof.error


def test_a_signature_with_x_but_no_t_is_judged_not_raised(resolver):
    # The vector keeps the RSA signature's b= but edits its header (x= for t=): it fails cleanly.
    proof = verify_message(vector("rfc6376.signed.no_t.msg"), resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert "does not verify" in proof.error


def test_a_signature_by_exims_ed25519_implementation_verifies(resolver):
    proof = verify_message(vector("ed25519test2.msg"), resolver=resolver)
    assert proof.ok, proof.error
    assert ("sed._domainkey.test.ex", "TXT") in resolver.asked


def test_a_body_changed_after_signing_fails(resolver):
    altered = vector("rfc6376.signed.msg").replace(b"We lost the game", b"We won the game")
    proof = verify_message(altered, resolver=resolver)
    assert not proof.ok
    assert not proof.unknown
    assert "body hash mismatch" in proof.error


def test_a_header_changed_after_signing_fails(resolver):
    altered = vector("rfc6376.signed.rsa.msg").replace(b"Is dinner ready?", b"Is lunch ready?")
    proof = verify_message(altered, resolver=resolver)
    assert not proof.ok
    assert not proof.unknown
    assert f"does not verify with the key published at test._domainkey.{FOOTBALL}" in proof.error


def test_a_message_without_a_signature_is_not_verified(resolver):
    proof = verify_message(vector("rfc6376.msg"), resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert "no DKIM-Signature" in proof.error


# --- signing with the vectors' keys ---------------------------------------------------------


def test_the_rfc8032_seed_signs_for_the_rfc8463_record(resolver):
    proof = sign_and_verify(
        FOOTBALL, "brisbane", ed25519_pem("rfc8032_7_1.key"), "ed25519", resolver=resolver
    )
    assert proof.ok, proof.error


def test_dkimpys_ed25519_key_signs_for_its_record(resolver):
    proof = sign_and_verify(
        FOOTBALL, "ed25519test", ed25519_pem("ed25519test.key"), "ed25519", resolver=resolver
    )
    assert proof.ok, proof.error


def test_a_pkcs1_rsa_key_signs_for_its_record(resolver):
    proof = sign_and_verify(FOOTBALL, "test", vector("test.private"), "rsa", resolver=resolver)
    assert proof.ok, proof.error


# --- what a failure says ----------------------------------------------------------------------


def test_a_missing_record_is_a_failure_naming_it(resolver):
    proof = sign_and_verify(FOOTBALL, "nosuch", vector("test.private"), "rsa", resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert f"No DKIM record at nosuch._domainkey.{FOOTBALL}" in proof.error


def test_a_revoked_record_is_a_failure(resolver):
    proof = sign_and_verify(FOOTBALL, "revoked", vector("test.private"), "rsa", resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert "revokes the key" in proof.error


def test_two_records_at_one_name_is_a_failure(resolver):
    proof = sign_and_verify(FOOTBALL, "two", vector("test.private"), "rsa", resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert f"2 TXT records at two._domainkey.{FOOTBALL}" in proof.error


def test_a_refused_lookup_is_unknown_not_a_failure(resolver):
    proof = sign_and_verify(
        "unserved.example", "test", vector("test.private"), "rsa", resolver=resolver
    )
    assert (proof.ok, proof.unknown) == (False, True)
    assert "test._domainkey.unserved.example" in proof.error
    assert "REFUSED" in proof.error


def test_a_failing_signature_outranks_an_unknown_one(resolver):
    altered = vector("rfc6376.signed.rsa.msg").replace(b"Is dinner ready?", b"Is lunch ready?")
    unserved = dkim.sign(altered, b"test", b"unserved.example", vector("test.private"))
    proof = verify_message(unserved + altered, resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert "signature 2 (d=football.example.com, s=test)" in proof.error


def test_only_unknown_signatures_make_the_message_unknown(resolver):
    message = vector("rfc6376.msg")
    unserved = dkim.sign(message, b"test", b"unserved.example", vector("test.private"))
    proof = verify_message(unserved + message, resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, True)


def test_a_key_of_the_wrong_algorithm_cannot_sign(resolver):
    proof = sign_and_verify(FOOTBALL, "test", vector("test.private"), "ed25519", resolver=resolver)
    assert (proof.ok, proof.unknown) == (False, False)
    assert "not an Ed25519 key" in proof.error


# --- keys mailsec generates -------------------------------------------------------------------


@pytest.mark.parametrize(("key", "selector"), [("rsa", "r2048"), ("ed25519", "e1")])
def test_a_generated_key_signs_and_verifies_against_its_published_record(
    round_trip_resolver, generated, key, selector
):
    chosen = generated[key]
    proof = sign_and_verify(
        ROUND_TRIP,
        selector,
        chosen.private_pem,
        str(chosen.algorithm),
        resolver=round_trip_resolver,
    )
    assert proof == SigningProof(ok=True)


def test_a_key_other_than_the_published_one_fails(round_trip_resolver, generated):
    proof = sign_and_verify(
        ROUND_TRIP, "mismatch", generated["rsa"].private_pem, "rsa", resolver=round_trip_resolver
    )
    assert (proof.ok, proof.unknown) == (False, False)
    assert "does not verify with the key published at mismatch._domainkey.roundtrip.test" in (
        proof.error
    )
