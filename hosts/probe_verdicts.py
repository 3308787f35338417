"""Verdicts on what a live probe of a mail server saw: observations in, results out.

Pure: no Django, no network. `hosts.probe` connects and fills the observation dataclasses;
these functions turn them into results in the check shape (name, status, summary, details).
A connection that timed out or failed is `error` (mailsec could not tell), never `fail`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OK, WARNING, FAIL, ERROR = "ok", "warning", "fail", "error"
EXPIRY_WARNING_DAYS = 21
MODERN_PROTOCOLS = ("TLSv1.2", "TLSv1.3")

# OpenSSL's X509_V_ERR codes the probe names.
X509_CERT_HAS_EXPIRED = 10
X509_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True)
class Result:
    name: str
    port: int
    status: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TlsObservation:
    """A TLS handshake: what was negotiated, the presented chain, and whether it verified."""

    protocol: str = ""
    cipher: str = ""
    verified: bool = False
    verify_code: int = 0
    verify_message: str = ""
    not_after: datetime | None = None
    names: tuple[str, ...] = ()  # the leaf's DNS names (SAN, else CN)
    chain: tuple[tuple[bytes, bytes], ...] = ()  # (certificate DER, SubjectPublicKeyInfo DER)
    error: str = ""  # the handshake itself failed


@dataclass(frozen=True)
class LegacyTls:
    """A handshake offering only TLS 1.0/1.1: accepted, refused, or not tried (reason)."""

    accepted: bool | None = None
    protocol: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SmtpObservation:
    port: int
    implicit_tls: bool = False
    error: str = ""  # connecting or the greeting failed
    timed_out: bool = False
    banner: str = ""
    ehlo: tuple[str, ...] = ()  # the EHLO reply lines before TLS (or inside it on 465)
    ehlo_tls: tuple[str, ...] = ()  # after STARTTLS
    starttls_offered: bool = False
    tls: TlsObservation | None = None
    legacy: LegacyTls = field(default_factory=LegacyTls)


@dataclass(frozen=True)
class RelayObservation:
    port: int
    error: str = ""
    timed_out: bool = False
    mail_from: str = ""
    rcpt_to: str = ""
    mail_reply: tuple[int, str] = (0, "")
    rcpt_reply: tuple[int, str] = (0, "")


@dataclass(frozen=True)
class MailboxObservation:
    """IMAP or POP3 on one port: implicit TLS, or plain with STARTTLS/STLS."""

    protocol: str  # "imap" or "pop3"
    port: int
    implicit_tls: bool
    error: str = ""
    timed_out: bool = False
    greeting: str = ""
    capabilities: tuple[str, ...] = ()  # before TLS on a plain port
    starttls_offered: bool = False
    tls: TlsObservation | None = None
    legacy: LegacyTls = field(default_factory=LegacyTls)


def _unreachable(name: str, port: int, error: str, timed_out: bool) -> Result:
    what = "timed out" if timed_out else "failed"
    return Result(name, port, ERROR, f"Port {port}: the probe {what}: {error}", {"error": error})


def tls_results(
    prefix: str, port: int, tls: TlsObservation, legacy: LegacyTls, expected_name: str,
    now: datetime,
) -> list[Result]:  # fmt: skip
    """`<prefix>_tls` (handshake, protocol, cipher, TLS < 1.2 refused) and
    `<prefix>_certificate` (chain, name, expiry)."""
    if tls.error:
        return [Result(f"{prefix}_tls", port, FAIL, f"Port {port}: the TLS handshake failed: "
                       f"{tls.error}", {"error": tls.error})]  # fmt: skip
    details: dict[str, Any] = {
        "protocol": tls.protocol,
        "cipher": tls.cipher,
        "legacy_tls_accepted": legacy.accepted,
        "legacy_protocol": legacy.protocol,
    }
    if tls.protocol not in MODERN_PROTOCOLS:
        tls_result = Result(f"{prefix}_tls", port, FAIL,
                            f"Port {port} negotiated {tls.protocol}, below TLS 1.2", details)  # fmt: skip
    elif legacy.accepted:
        tls_result = Result(
            f"{prefix}_tls", port, FAIL,
            f"Port {port} accepts {legacy.protocol or 'TLS'}, below TLS 1.2, from a client "
            "offering nothing newer", details,
        )  # fmt: skip
    elif legacy.accepted is None:
        details["legacy_reason"] = legacy.reason
        tls_result = Result(
            f"{prefix}_tls", port, WARNING,
            f"Port {port}: {tls.protocol} with {tls.cipher}; whether TLS below 1.2 is refused "
            f"is unknown: {legacy.reason}", details,
        )  # fmt: skip
    else:
        tls_result = Result(
            f"{prefix}_tls", port, OK,
            f"Port {port}: {tls.protocol} with {tls.cipher}; TLS below 1.2 refused", details,
        )  # fmt: skip
    return [tls_result, certificate_result(prefix, port, tls, expected_name, now)]


def certificate_result(
    prefix: str, port: int, tls: TlsObservation, expected_name: str, now: datetime
) -> Result:
    name = f"{prefix}_certificate"
    days = None if tls.not_after is None else (tls.not_after - now).total_seconds() / 86400
    details: dict[str, Any] = {
        "expected_name": expected_name,
        "names": list(tls.names),
        "not_after": tls.not_after.isoformat() if tls.not_after else None,
        "days_left": None if days is None else int(days // 1),
        "verified": tls.verified,
        "verify_error": tls.verify_message,
    }
    if tls.verify_code == X509_CERT_HAS_EXPIRED or (days is not None and days < 0):
        return Result(name, port, FAIL, f"Port {port}: the certificate has expired "
                      f"({details['not_after']})", details)  # fmt: skip
    if tls.verify_code == X509_HOSTNAME_MISMATCH:
        shown = ", ".join(tls.names) or "no name"
        return Result(name, port, FAIL, f"Port {port}: the certificate is not for "
                      f"{expected_name} (it names {shown})", details)  # fmt: skip
    if not tls.verified:
        return Result(name, port, FAIL, f"Port {port}: the certificate does not verify: "
                      f"{tls.verify_message or 'unknown reason'}", details)  # fmt: skip
    if days is not None and days < EXPIRY_WARNING_DAYS:
        return Result(name, port, WARNING, f"Port {port}: the certificate expires in "
                      f"{int(days)} days", details)  # fmt: skip
    return Result(name, port, OK, f"Port {port}: the certificate is valid for {expected_name}"
                  + (f", {int(days)} days left" if days is not None else ""), details)  # fmt: skip


def ehlo_keywords(lines: Sequence[str]) -> dict[str, str]:
    """EHLO reply lines (without the code) after the first: keyword -> parameters."""
    found: dict[str, str] = {}
    for line in lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params.strip()
    return found


def smtp_results(
    observation: SmtpObservation, *, expected_name: str, now: datetime
) -> list[Result]:
    """STARTTLS (or implicit TLS on 465), the certificate, and AUTH exposure on one port."""
    port = observation.port
    name = "smtp_tls" if observation.implicit_tls else "smtp_starttls"
    if observation.error:
        return [_unreachable(name, port, observation.error, observation.timed_out)]
    results: list[Result] = []
    before = ehlo_keywords(observation.ehlo)
    if not observation.implicit_tls:
        if not observation.starttls_offered:
            results.append(Result(name, port, FAIL, f"Port {port} does not offer STARTTLS",
                                  {"ehlo": list(observation.ehlo)}))  # fmt: skip
        auth = before.get("AUTH")
        if auth is not None:
            results.append(Result(
                "smtp_auth", port, FAIL,
                f"Port {port} offers AUTH ({auth}) before STARTTLS: passwords in cleartext",
                {"mechanisms": auth.split()},
            ))  # fmt: skip
        else:
            results.append(Result("smtp_auth", port, OK,
                                  f"Port {port} offers no AUTH before STARTTLS"))  # fmt: skip
    if observation.tls is not None and (observation.implicit_tls or observation.starttls_offered):
        prefix = "smtp" if observation.implicit_tls else "smtp_starttls"
        found = tls_results(prefix, port, observation.tls, observation.legacy, expected_name, now)
        if not observation.implicit_tls:
            # STARTTLS working and its protocol are one result: smtp_starttls.
            found = [
                Result(name, r.port, r.status, r.summary, r.details)
                if r.name == "smtp_starttls_tls" else
                Result("smtp_certificate", r.port, r.status, r.summary, r.details)
                for r in found
            ]  # fmt: skip
        results.extend(found)
    return results


def size_result(observation: SmtpObservation, expected: int | None) -> Result | None:
    """The SIZE the server advertises against the policy's message_size_limit."""
    if observation.error:
        return None
    features = ehlo_keywords(observation.ehlo_tls or observation.ehlo)
    advertised = features.get("SIZE")
    details = {"advertised": advertised, "policy": expected}
    port = observation.port
    if expected is None:
        return Result("smtp_size", port, OK, f"Port {port} advertises SIZE {advertised or '-'}; "
                      "no policy to compare with", details)  # fmt: skip
    if advertised is None or not advertised.isdigit():
        return Result("smtp_size", port, FAIL, f"Port {port} advertises no SIZE; the policy "
                      f"says {expected}", details)  # fmt: skip
    if int(advertised) != expected:
        return Result("smtp_size", port, FAIL, f"Port {port} advertises SIZE {advertised}; the "
                      f"policy says {expected}", details)  # fmt: skip
    return Result("smtp_size", port, OK, f"Port {port} advertises SIZE {advertised}, as the "
                  "policy says", details)  # fmt: skip


def banner_name(banner: str) -> str:
    """The host name a 220 greeting starts with."""
    words = banner.split()
    return words[0].rstrip(".").lower() if words else ""


def banner_ptr_result(
    observation: SmtpObservation, address: str, ptr_names: Sequence[str] | None, ptr_error: str
) -> Result | None:
    """The greeting's name must be one of the address's PTR names (what receivers compare)."""
    if observation.error:
        return None
    port = observation.port
    name = banner_name(observation.banner)
    details = {"banner": observation.banner, "banner_name": name, "ptr": list(ptr_names or ())}
    if ptr_names is None:
        return Result("smtp_banner_ptr", port, ERROR, f"The PTR of {address} could not be "
                      f"looked up: {ptr_error}", details)  # fmt: skip
    if not ptr_names:
        return Result("smtp_banner_ptr", port, FAIL, f"{address} has no PTR record; the "
                      f"banner says {name or 'nothing'}", details)  # fmt: skip
    if name not in {n.rstrip(".").lower() for n in ptr_names}:
        return Result("smtp_banner_ptr", port, FAIL, f"The banner says {name or 'nothing'}; "
                      f"{address}'s PTR is {', '.join(ptr_names)}", details)  # fmt: skip
    return Result("smtp_banner_ptr", port, OK, f"The banner's {name} is {address}'s PTR",
                  details)  # fmt: skip


def relay_result(observation: RelayObservation) -> Result:
    """Control 7: an outside sender to an outside domain, without authentication."""
    port = observation.port
    if observation.error:
        return _unreachable("smtp_relay", port, observation.error, observation.timed_out)
    code, text = observation.rcpt_reply
    details = {
        "mail_from": observation.mail_from,
        "rcpt_to": observation.rcpt_to,
        "mail_reply": list(observation.mail_reply),
        "rcpt_reply": [code, text],
    }
    if 200 <= code < 300:
        return Result("smtp_relay", port, FAIL, f"Open relay: RCPT TO <{observation.rcpt_to}> "
                      f"from an outside sender was accepted ({code} {text})", details)  # fmt: skip
    if code == 0:
        mail_code, mail_text = observation.mail_reply
        return Result("smtp_relay", port, WARNING, "The relay test did not reach RCPT: MAIL "
                      f"FROM answered {mail_code} {mail_text}", details)  # fmt: skip
    return Result("smtp_relay", port, OK, f"Relaying refused: RCPT TO an outside domain "
                  f"answered {code} {text}", details)  # fmt: skip


def mailbox_results(
    observation: MailboxObservation, *, expected_name: str, now: datetime
) -> list[Result]:
    """imap_tls/pop3_tls on the implicit port; imap_starttls/pop3_starttls on the plain one
    (STARTTLS/STLS offered, no cleartext login before it); certificates for both."""
    proto, port = observation.protocol, observation.port
    name = f"{proto}_tls" if observation.implicit_tls else f"{proto}_starttls"
    if observation.error:
        return [_unreachable(name, port, observation.error, observation.timed_out)]
    results: list[Result] = []
    if not observation.implicit_tls:
        caps = {c.upper() for c in observation.capabilities}
        details: dict[str, Any] = {"capabilities": list(observation.capabilities)}
        if proto == "imap":
            cleartext = "LOGINDISABLED" not in caps
            fault = "LOGIN is allowed before STARTTLS (no LOGINDISABLED)"
        else:
            cleartext = "USER" in caps or any(c.startswith("SASL") and c != "SASL" for c in caps)
            fault = "USER/PASS (or SASL) is offered before STLS"
        if not observation.starttls_offered:
            word = "STARTTLS" if proto == "imap" else "STLS"
            results.append(Result(name, port, FAIL, f"Port {port} does not offer {word}", details))
        if cleartext:
            results.append(Result(f"{proto}_cleartext_login", port, FAIL,
                                  f"Port {port}: {fault}: passwords in cleartext", details))  # fmt: skip
        else:
            results.append(Result(f"{proto}_cleartext_login", port, OK,
                                  f"Port {port} refuses login before TLS", details))  # fmt: skip
    if observation.tls is not None and (observation.implicit_tls or observation.starttls_offered):
        found = tls_results(proto, port, observation.tls, observation.legacy, expected_name, now)
        if not observation.implicit_tls:
            found = [
                Result(name, r.port, r.status, r.summary, r.details) if r.name == f"{proto}_tls"
                else r for r in found
            ]  # fmt: skip
        results.extend(found)
    return results


def name_matches(expected: str, names: Sequence[str]) -> bool:
    """Does a certificate naming `names` (SAN DNS names) cover `expected` (one-label wildcards)?"""
    want = expected.rstrip(".").lower()
    for name in names:
        name = name.rstrip(".").lower()
        if name == want:
            return True
        if name.startswith("*.") and "." in want and want.split(".", 1)[1] == name[2:]:
            return True
    return False


def tlsa_matches(
    record: str, chain: Sequence[tuple[bytes, bytes]], verified: bool, name_ok: bool = True
) -> bool:
    """Does one TLSA record ("usage selector mtype hex") match the presented chain?

    3 (DANE-EE): the leaf, whatever its names and dates (RFC 7672 3.1.1); 2 (DANE-TA): a
    certificate above the leaf, and the leaf must name the host (`name_ok`, RFC 7672 3.2.2);
    1 (PKIX-EE) and 0 (PKIX-TA): as 3 and 2, and the chain must also verify for the name.
    """
    parts = record.split()
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return False
    usage, selector, mtype = (int(p) for p in parts[:3])
    wanted = "".join(parts[3:]).lower()
    if usage in (0, 1) and not verified:
        return False
    if usage == 2 and not name_ok:
        return False
    if usage in (1, 3):
        candidates = chain[:1]
    elif usage in (0, 2):
        candidates = chain[1:]
    else:
        return False
    for cert, spki in candidates:
        data = cert if selector == 0 else spki if selector == 1 else None
        if data is None:
            continue
        if mtype == 0:
            digest = data.hex()
        elif mtype == 1:
            digest = hashlib.sha256(data).hexdigest()
        elif mtype == 2:
            digest = hashlib.sha512(data).hexdigest()
        else:
            continue
        if digest == wanted:
            return True
    return False


def dane_result(
    port: int, tlsa_name: str, records: Sequence[str] | None, lookup_error: str,
    tls: TlsObservation | None, expected_name: str = "",
) -> Result | None:  # fmt: skip
    """DANE for SMTP: None when the zone publishes no TLSA for the name (nothing to compare)."""
    if records is None:
        return Result("dane", port, ERROR, f"The TLSA lookup for {tlsa_name} failed: "
                      f"{lookup_error}", {"tlsa_name": tlsa_name})  # fmt: skip
    if not records:
        return None
    details: dict[str, Any] = {"tlsa_name": tlsa_name, "records": list(records)}
    if tls is None or tls.error or not tls.chain:
        return Result("dane", port, FAIL, f"{tlsa_name} publishes TLSA but no TLS certificate "
                      "was presented to compare", details)  # fmt: skip
    name_ok = not expected_name or name_matches(expected_name, tls.names)
    matched = [r for r in records if tlsa_matches(r, tls.chain, tls.verified, name_ok)]
    details["matched"] = matched
    if not matched:
        return Result("dane", port, FAIL, f"No TLSA record of {tlsa_name} matches the presented "
                      "certificate chain: DANE senders will not deliver", details)  # fmt: skip
    return Result("dane", port, OK, f"The presented certificate matches {tlsa_name}'s TLSA "
                  f"{' '.join(matched[0].split()[:3])}", details)  # fmt: skip
