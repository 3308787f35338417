"""The dkim check's rules, on hand-made lookups: keys mailsec holds and selectors it watches."""

from __future__ import annotations

import base64
from functools import cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dns_records.checks import CheckContext, DkimExpectation
from dns_records.checks.dkim import DkimLookups, gather, verdict
from dns_records.dkim import DkimAlgorithm, GeneratedKey, generate_key, record_value
from dns_records.lookups import Lookup, LookupStatus, Net
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus

DOMAIN = "example.org"
NAME = f"sel._domainkey.{DOMAIN}"


@cache
def value(algorithm: str = "rsa", n: int = 0, *, testing: bool = False) -> str:
    """A record value for the `n`th key of the algorithm (generated once per run)."""
    key = _key(algorithm, n)
    return record_value(DkimAlgorithm(algorithm), key.public_b64, testing=testing)


@cache
def _key(algorithm: str, n: int) -> GeneratedKey:
    return generate_key(DkimAlgorithm(algorithm))


@cache
def small_rsa_value(bits: int) -> str:
    """A record of a key smaller than mailsec generates, as other senders still publish."""
    # cryptography generates no key under 1024 bits; a public key needs only a modulus of the size.
    public = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 1).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def found(*records: str, name: str = NAME) -> Lookup:
    return Lookup(name, "TXT", LookupStatus.OK, records)


def missing(name: str = NAME) -> Lookup:
    return Lookup(name, "TXT", LookupStatus.NXDOMAIN)


def failed(name: str = NAME) -> Lookup:
    return Lookup(name, "TXT", LookupStatus.ERROR, reason="timed out")


def run(state: str, lookup: Lookup, expected: str = "", algorithm: str = "rsa") -> CheckOutcome:
    e = DkimExpectation("sel", state, expected, algorithm if state != "external" else "")
    return verdict(CheckContext(DOMAIN, "r@example.org", dkim=(e,)), DkimLookups(((e, lookup),)))


def test_no_key_and_no_selector_is_a_warning_saying_what_to_do():
    node = Lookup(f"_domainkey.{DOMAIN}", "TXT", LookupStatus.NXDOMAIN)
    outcome = verdict(CheckContext(DOMAIN, "r@example.org"), DkimLookups(node=node))
    assert outcome.status is CheckStatus.WARNING
    assert outcome.summary == (
        "No DKIM key managed or selector watched: generate a key, or add the selectors your "
        "senders use."
    )
    assert outcome.details["keys"] == []


def test_no_key_for_a_domain_whose_dns_fails_is_an_error():
    node = Lookup(f"_domainkey.{DOMAIN}", "TXT", LookupStatus.ERROR, reason="REFUSED")
    outcome = verdict(CheckContext(DOMAIN, "r@example.org"), DkimLookups(node=node))
    assert outcome.status is CheckStatus.ERROR
    assert "REFUSED" in outcome.summary


# --- keys mailsec holds -----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["pending", "published", "active", "retiring"])
def test_a_failed_lookup_is_an_error_never_a_fail(state):
    outcome = run(state, failed(), value())
    assert outcome.status is CheckStatus.ERROR
    assert "Could not look up sel._domainkey.example.org: timed out" in outcome.summary


def test_a_pending_key_not_yet_published_waits_and_suggests_its_record():
    outcome = run("pending", missing(), value())
    assert outcome.status is CheckStatus.WARNING
    assert f"waiting for {NAME} to be published" in outcome.summary
    suggestion = {"name": NAME, "type": "TXT", "value": value()}
    assert outcome.details["suggested_records"] == [suggestion]
    assert outcome.details["suggested_record"] == suggestion


def test_a_pending_key_already_published_is_ok_and_still_suggested():
    outcome = run("pending", found(value()), value())
    assert outcome.status is CheckStatus.OK
    assert outcome.details["suggested_records"] == [{"name": NAME, "type": "TXT", "value": value()}]


@pytest.mark.parametrize("state", ["published", "active", "retiring"])
def test_a_live_key_missing_from_dns_fails(state):
    outcome = run(state, missing(), value())
    assert outcome.status is CheckStatus.FAIL
    assert f"No DKIM record at {NAME}" in outcome.summary
    assert state in outcome.summary


def test_a_live_key_with_nodata_fails_like_nxdomain():
    outcome = run("active", Lookup(NAME, "TXT", LookupStatus.NODATA), value())
    assert outcome.status is CheckStatus.FAIL


@pytest.mark.parametrize("state", ["published", "active", "retiring"])
def test_a_live_key_published_as_stored_is_ok(state):
    outcome = run(state, found(value()), value())
    assert outcome.status is CheckStatus.OK
    assert outcome.summary == f"DKIM records published: sel ({state})"
    assert outcome.details["suggested_records"] == []
    assert "suggested_record" not in outcome.details


def test_an_unparseable_record_fails():
    outcome = run("active", found("v=DKIM1; k=rsa"), value())
    assert outcome.status is CheckStatus.FAIL
    assert "is not a usable DKIM record: the required p= tag is missing" in outcome.summary


def test_a_published_key_other_than_the_stored_one_fails():
    outcome = run("active", found(value("rsa", 1)), value("rsa", 0))
    assert outcome.status is CheckStatus.FAIL
    assert f"The key published at {NAME} differs from the one mailsec stores" in outcome.summary
    assert outcome.details["suggested_record"]["value"] == value("rsa", 0)


def test_the_same_key_written_differently_is_the_same_key():
    expected = value("ed25519")
    published = expected.replace("p=", "p= ").replace("; ", ";")
    assert run("active", found(published), expected, "ed25519").status is CheckStatus.OK


def test_an_active_key_in_testing_mode_is_a_warning():
    outcome = run("active", found(value(testing=True)), value())
    assert outcome.status is CheckStatus.WARNING
    assert "t=y" in outcome.summary


def test_a_published_key_in_testing_mode_is_ok():
    assert run("published", found(value(testing=True)), value()).status is CheckStatus.OK


@pytest.mark.parametrize("state", ["pending", "published", "active", "retiring"])
def test_a_revoked_record_fails_unless_the_key_is_retired(state):
    outcome = run(state, found("v=DKIM1; k=rsa; p="), value())
    assert outcome.status is CheckStatus.FAIL
    assert "revokes the key (empty p=)" in outcome.summary


@pytest.mark.parametrize(
    "lookup",
    [found("v=DKIM1; k=rsa; p="), missing(), found(value())],
    ids=["revoked", "gone", "kept"],
)
def test_a_retired_key_is_ok_whatever_dns_shows(lookup):
    e = DkimExpectation("old", "retired", value(), "rsa")
    live = DkimExpectation("sel", "active", value("rsa", 1), "rsa")
    context = CheckContext(DOMAIN, "r@example.org", dkim=(live, e))
    outcome = verdict(context, DkimLookups(((live, found(value("rsa", 1))), (e, lookup))))
    assert outcome.status is CheckStatus.OK
    assert outcome.summary == "DKIM records published: sel (active)"


def test_only_retired_keys_is_a_warning():
    outcome = run("retired", missing(), value())
    assert outcome.status is CheckStatus.WARNING
    assert "every key mailsec holds is retired" in outcome.summary


def test_several_records_at_one_name_fail():
    outcome = run("active", found(value(), value("rsa", 1)), value())
    assert outcome.status is CheckStatus.FAIL
    assert f"2 TXT records at {NAME}" in outcome.summary


def test_a_record_with_the_wrong_key_type_fails():
    expected = value("ed25519")
    published = expected.replace("k=ed25519", "k=rsa")
    outcome = run("active", found(published), expected, "ed25519")
    assert outcome.status is CheckStatus.FAIL


# --- selectors other senders use --------------------------------------------------------------


def test_an_external_selector_missing_fails():
    outcome = run("external", missing())
    assert outcome.status is CheckStatus.FAIL
    assert f"No DKIM record at {NAME}" in outcome.summary
    assert outcome.details["suggested_records"] == []


def test_an_external_selector_lookup_failure_is_an_error():
    assert run("external", failed()).status is CheckStatus.ERROR


def test_an_external_selector_with_a_syntax_error_fails():
    outcome = run("external", found("v=DKIM1; k=dsa; p=QUJD"))
    assert outcome.status is CheckStatus.FAIL
    assert "k=dsa" in outcome.summary


def test_an_external_rsa_key_under_1024_bits_fails():
    outcome = run("external", found(small_rsa_value(768)))
    assert outcome.status is CheckStatus.FAIL
    assert "768-bit RSA key" in outcome.summary
    assert outcome.details["keys"][0]["bits"] == 768


def test_an_external_1024_bit_rsa_key_is_a_warning():
    outcome = run("external", found(small_rsa_value(1024)))
    assert outcome.status is CheckStatus.WARNING
    assert "1024-bit RSA key" in outcome.summary


def test_an_external_revoked_selector_is_a_warning_to_stop_watching_it():
    outcome = run("external", found("v=DKIM1; p="))
    assert outcome.status is CheckStatus.WARNING
    assert "stop watching it" in outcome.summary


def test_an_external_2048_bit_key_is_ok_with_its_size_and_type_shown():
    outcome = run("external", found(value()))
    assert outcome.status is CheckStatus.OK
    row = outcome.details["keys"][0]
    assert (row["algorithm"], row["bits"], row["state"]) == ("rsa", 2048, "external")


# --- details and gathering ---------------------------------------------------------------------


def test_keys_rows_describe_every_selector_for_the_ui():
    pending = DkimExpectation("new", "pending", value("ed25519"), "ed25519")
    active = DkimExpectation("sel", "active", value(), "rsa")
    google = DkimExpectation("google", "external")
    lookups = DkimLookups(
        (
            (pending, missing(f"new._domainkey.{DOMAIN}")),
            (active, found(value())),
            (google, missing(f"google._domainkey.{DOMAIN}")),
        )
    )
    outcome = verdict(
        CheckContext(DOMAIN, "r@example.org", dkim=(pending, active, google)), lookups
    )
    assert outcome.status is CheckStatus.FAIL  # the external selector's record is missing
    assert outcome.summary.endswith("(and 1 more)")
    assert [
        (k["selector"], k["state"], k["algorithm"], k["record_name"], k["status"], k["bits"])
        for k in outcome.details["keys"]
    ] == [
        ("new", "pending", "ed25519", f"new._domainkey.{DOMAIN}", "warning", None),
        ("sel", "active", "rsa", NAME, "ok", 2048),
        ("google", "external", "", f"google._domainkey.{DOMAIN}", "fail", None),
    ]
    assert [k["message"] for k in outcome.details["keys"]][1] == "Published as stored."
    assert outcome.details["suggested_records"] == [
        {"name": f"new._domainkey.{DOMAIN}", "type": "TXT", "value": value("ed25519")}
    ]


def test_every_pending_key_is_suggested_in_order():
    first = DkimExpectation("a", "pending", value("rsa"), "rsa")
    second = DkimExpectation("b", "pending", value("ed25519"), "ed25519")
    lookups = DkimLookups(((first, missing()), (second, missing())))
    outcome = verdict(CheckContext(DOMAIN, "r@example.org", dkim=(first, second)), lookups)
    names = [s["name"] for s in outcome.details["suggested_records"]]
    assert names == [f"a._domainkey.{DOMAIN}", f"b._domainkey.{DOMAIN}"]
    assert outcome.details["suggested_record"]["name"] == names[0]


class _Resolver:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    @property
    def nameservers(self) -> list[str]:
        return []

    def lookup(self, name: str, rdtype: str) -> Lookup:
        self.asked.append((name, rdtype))
        return missing(name)

    def addresses(self, name: str) -> tuple[Lookup, Lookup]:
        raise AssertionError("not asked")

    def reverse(self, address: str) -> Lookup:
        raise AssertionError("not asked")


def _net(resolver: _Resolver) -> Net:
    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("the dkim check reaches only DNS")

    return Net(resolver=resolver, fetch_https=never, check_host=never, inspect_bimi=never)  # type: ignore[arg-type]


def test_gather_asks_txt_at_each_selector():
    resolver = _Resolver()
    context = CheckContext(
        DOMAIN,
        "r@example.org",
        dkim=(DkimExpectation("a", "active", value()), DkimExpectation("google", "external")),
    )
    gather(context, _net(resolver))
    assert resolver.asked == [
        (f"a._domainkey.{DOMAIN}", "TXT"),
        (f"google._domainkey.{DOMAIN}", "TXT"),
    ]


def test_gather_without_keys_asks_only_the_domainkey_node():
    resolver = _Resolver()
    gather(CheckContext(DOMAIN, "r@example.org"), _net(resolver))
    assert resolver.asked == [(f"_domainkey.{DOMAIN}", "TXT")]
