"""The probe verdicts (pure): observations in, results out."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from hosts import probe_verdicts as v

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LEAF, LEAF_SPKI = b"leaf-der", b"leaf-spki"
CA, CA_SPKI = b"ca-der", b"ca-spki"


def tls(**changes: object) -> v.TlsObservation:
    base: dict[str, object] = {
        "protocol": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "verified": True,
        "not_after": NOW + timedelta(days=90), "names": ("mx.example.org",),
        "chain": ((LEAF, LEAF_SPKI), (CA, CA_SPKI)),
    }  # fmt: skip
    base.update(changes)
    return v.TlsObservation(**base)  # type: ignore[arg-type]


REFUSED = v.LegacyTls(accepted=False, reason="handshake failure")
EHLO = ("mx.example.org", "PIPELINING", "SIZE 26214400", "STARTTLS", "8BITMIME")


def smtp(**changes: object) -> v.SmtpObservation:
    base: dict[str, object] = {
        "port": 25, "banner": "mx.example.org ESMTP", "ehlo": EHLO, "ehlo_tls": EHLO,
        "starttls_offered": True, "tls": tls(), "legacy": REFUSED,
    }  # fmt: skip
    base.update(changes)
    return v.SmtpObservation(**base)  # type: ignore[arg-type]


def by_name(results: list[v.Result]) -> dict[str, v.Result]:
    return {r.name: r for r in results}


def test_good_smtp_is_ok() -> None:
    found = by_name(v.smtp_results(smtp(), expected_name="mx.example.org", now=NOW))
    assert {n: r.status for n, r in found.items()} == {
        "smtp_starttls": "ok", "smtp_certificate": "ok", "smtp_auth": "ok",
    }  # fmt: skip


def test_no_starttls_is_a_fail() -> None:
    found = by_name(
        v.smtp_results(
            smtp(starttls_offered=False, tls=None, ehlo=EHLO[:3]),
            expected_name="mx.example.org",
            now=NOW,
        )
    )
    assert found["smtp_starttls"].status == "fail"
    assert "does not offer STARTTLS" in found["smtp_starttls"].summary


def test_auth_before_starttls_is_a_fail() -> None:
    found = by_name(v.smtp_results(smtp(ehlo=(*EHLO, "AUTH PLAIN LOGIN")),
                                   expected_name="mx.example.org", now=NOW))  # fmt: skip
    assert found["smtp_auth"].status == "fail"
    assert found["smtp_auth"].details["mechanisms"] == ["PLAIN", "LOGIN"]


def test_tls_versions() -> None:
    old = v.smtp_results(smtp(tls=tls(protocol="TLSv1")), expected_name="mx.example.org", now=NOW)
    assert by_name(old)["smtp_starttls"].status == "fail"
    legacy = v.LegacyTls(accepted=True, protocol="TLSv1.1")
    found = by_name(v.smtp_results(smtp(legacy=legacy), expected_name="mx.example.org", now=NOW))
    assert found["smtp_starttls"].status == "fail" and "TLSv1.1" in found["smtp_starttls"].summary
    unknown = v.LegacyTls(reason="this machine's OpenSSL cannot offer TLS 1.0/1.1")
    found = by_name(v.smtp_results(smtp(legacy=unknown), expected_name="mx.example.org", now=NOW))
    assert found["smtp_starttls"].status == "warning"


def test_certificates() -> None:
    def cert(**changes: object) -> v.Result:
        return v.certificate_result("smtp", 25, tls(**changes), "mx.example.org", NOW)

    assert cert().status == "ok"
    assert cert(not_after=NOW + timedelta(days=10)).status == "warning"
    expired = cert(not_after=NOW - timedelta(days=1), verified=False,
                   verify_code=v.X509_CERT_HAS_EXPIRED)  # fmt: skip
    assert expired.status == "fail" and "expired" in expired.summary
    wrong = cert(verified=False, verify_code=v.X509_HOSTNAME_MISMATCH, names=("other.org",))
    assert wrong.status == "fail" and "not for mx.example.org" in wrong.summary
    untrusted = cert(verified=False, verify_code=20, verify_message="unable to get issuer")
    assert untrusted.status == "fail" and "unable to get issuer" in untrusted.summary


def test_timeout_is_error_never_fail() -> None:
    [result] = v.smtp_results(smtp(error="waiting for the server timed out", timed_out=True),
                              expected_name="x", now=NOW)  # fmt: skip
    assert result.status == "error" and "timed out" in result.summary
    relay = v.relay_result(v.RelayObservation(port=25, error="timed out", timed_out=True))
    assert relay.status == "error"


def test_relay() -> None:
    def relay(code: int) -> v.Result:
        return v.relay_result(v.RelayObservation(port=25, mail_from="a@x.example",
                              rcpt_to="b@example.net", mail_reply=(250, "ok"),
                              rcpt_reply=(code, "text")))  # fmt: skip

    assert relay(250).status == "fail" and "Open relay" in relay(250).summary
    assert relay(251).status == "fail"
    assert relay(554).status == "ok"
    assert relay(450).status == "ok"
    not_reached = v.relay_result(v.RelayObservation(port=25, mail_reply=(530, "STARTTLS first")))
    assert not_reached.status == "warning"


def test_size_and_banner_ptr() -> None:
    assert v.size_result(smtp(), 26214400).status == "ok"  # type: ignore[union-attr]
    assert v.size_result(smtp(), 10240000).status == "fail"  # type: ignore[union-attr]
    assert v.size_result(smtp(ehlo=EHLO[:1], ehlo_tls=()), 1).status == "fail"  # type: ignore[union-attr]
    ok = v.banner_ptr_result(smtp(), "192.0.2.1", ["MX.example.org."], "")
    assert ok is not None and ok.status == "ok"
    bad = v.banner_ptr_result(smtp(), "192.0.2.1", ["other.example.org"], "")
    assert bad is not None and bad.status == "fail"
    none = v.banner_ptr_result(smtp(), "192.0.2.1", [], "")
    assert none is not None and none.status == "fail" and "no PTR" in none.summary
    failed = v.banner_ptr_result(smtp(), "192.0.2.1", None, "timed out")
    assert failed is not None and failed.status == "error"


def test_mailbox_plain_ports() -> None:
    def plain(proto: str, caps: tuple[str, ...], starttls: bool = True) -> dict[str, v.Result]:
        seen = v.MailboxObservation(proto, 143 if proto == "imap" else 110, False,
                                    capabilities=caps, starttls_offered=starttls, tls=tls(),
                                    legacy=REFUSED)  # fmt: skip
        return by_name(v.mailbox_results(seen, expected_name="mx.example.org", now=NOW))

    good = plain("imap", ("IMAP4rev1", "STARTTLS", "LOGINDISABLED"))
    assert good["imap_cleartext_login"].status == "ok" and good["imap_starttls"].status == "ok"
    assert plain("imap", ("IMAP4rev1", "STARTTLS"))["imap_cleartext_login"].status == "fail"
    assert plain("imap", ("IMAP4rev1",), starttls=False)["imap_starttls"].status == "fail"
    assert plain("pop3", ("STLS", "TOP", "UIDL"))["pop3_cleartext_login"].status == "ok"
    assert plain("pop3", ("STLS", "USER"))["pop3_cleartext_login"].status == "fail"
    assert plain("pop3", ("STLS", "SASL:PLAIN"))["pop3_cleartext_login"].status == "fail"


def test_dane_usages() -> None:
    leaf_spki = hashlib.sha256(LEAF_SPKI).hexdigest()
    leaf_full = hashlib.sha256(LEAF).hexdigest()
    ca_spki = hashlib.sha512(CA_SPKI).hexdigest()
    chain = ((LEAF, LEAF_SPKI), (CA, CA_SPKI))
    assert v.tlsa_matches(f"3 1 1 {leaf_spki}", chain, verified=False)
    assert v.tlsa_matches(f"3 0 1 {leaf_full.upper()}", chain, verified=False)
    assert v.tlsa_matches(f"2 1 2 {ca_spki}", chain, verified=False)
    assert not v.tlsa_matches(f"2 1 1 {leaf_spki}", chain, verified=False)  # the leaf is not a TA
    assert not v.tlsa_matches(f"1 1 1 {leaf_spki}", chain, verified=False)  # PKIX needs a chain
    assert v.tlsa_matches(f"1 1 1 {leaf_spki}", chain, verified=True)
    assert not v.tlsa_matches("3 1 1 zz", chain, verified=True)
    # DANE-TA needs the leaf to name the host; DANE-EE does not.
    assert not v.tlsa_matches(f"2 1 2 {ca_spki}", chain, verified=False, name_ok=False)
    assert v.tlsa_matches(f"3 1 1 {leaf_spki}", chain, verified=False, name_ok=False)
    assert v.name_matches("mx.example.org", ["MX.example.org."])
    assert v.name_matches("mx.example.org", ["*.example.org"])
    assert not v.name_matches("a.mx.example.org", ["*.example.org"])
    assert not v.name_matches("mx.example.org", ["other.example.org"])
    assert not v.tlsa_matches("garbage", chain, verified=True)
    observed = tls(chain=chain)
    assert v.dane_result(25, "_25._tcp.mx", [], "", observed) is None
    ok = v.dane_result(25, "_25._tcp.mx", [f"3 1 1 {leaf_spki}"], "", observed)
    assert ok is not None and ok.status == "ok"
    bad = v.dane_result(25, "_25._tcp.mx", ["3 1 1 " + "00" * 32], "", observed)
    assert bad is not None and bad.status == "fail"
    error = v.dane_result(25, "_25._tcp.mx", None, "SERVFAIL", observed)
    assert error is not None and error.status == "error"
