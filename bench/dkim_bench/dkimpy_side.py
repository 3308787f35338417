"""dkimpy's side: its own key-record lookup and parser, one record at a time, on our knotd."""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable, Sequence

import dkim
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from throughput.fixtures import KNOT_ADDRESS
from throughput.network import DNS_TIMEOUT

from .verdicts import NOT_USABLE, USABLE, Verdict, Verdicts

MIN_KEY_BITS = 1024  # dkim.verify's default minkey: it refuses smaller RSA keys
type GetTxt = Callable[[bytes, float], bytes | None]


def dkimpy_resolver(port: int) -> dns.resolver.Resolver:
    """A dnspython resolver on the fixtures' knotd only: no /etc/resolv.conf, no cache."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(KNOT_ADDRESS, port)]
    resolver.timeout = DNS_TIMEOUT
    resolver.lifetime = DNS_TIMEOUT
    resolver.cache = None
    return resolver


def knot_get_txt(resolver: dns.resolver.Resolver) -> GetTxt:
    """The `dnsfunc` dkimpy is given: the steps of its own `dkim.dnsplug.get_txt` (dnspython's
    variant, `get_txt_dnspython`), the first TXT record of the answer and the same errors, but
    asking `resolver` where dkimpy calls `dns.resolver.resolve` (the system's resolver)."""

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            return None
        try:
            answer = resolver.resolve(
                text, dns.rdatatype.TXT, raise_on_no_answer=False, lifetime=timeout, search=True
            )
            for rrset in answer.response.answer:
                if rrset.rdtype == dns.rdatatype.TXT:
                    return b"".join(next(iter(rrset.items)).strings)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            pass
        except dns.exception.Timeout as exc:
            raise dkim.DnsTimeoutError(f"dns.exception.Timeout: {exc}") from exc
        return None

    return get_txt


def dkimpy_verdict(name: bytes, get_txt: GetTxt) -> Verdict:
    """Fetch and parse the key record as `dkim.verify` does before it checks a signature.

    The errors caught are those `DKIM.verify_sig` catches (it then fails the signature); the
    checks after loading are those `verify_sig_process` makes of the key for an ordinary
    message (not a TLS report) with the default minkey.
    """
    try:
        pk, bits, ktag, tlsrpt_only = dkim.load_pk_from_dns(name, get_txt, timeout=DNS_TIMEOUT)
    except (dkim.DKIMException, binascii.Error) as exc:
        return Verdict(NOT_USABLE, type(exc).__name__, str(exc)[:160])
    if pk is None:  # evaluate_pk drops the key of an unknown s= service without raising
        return Verdict(NOT_USABLE, "no key", "s= names no service dkimpy knows")
    if tlsrpt_only:
        return Verdict(NOT_USABLE, "ValidationError", "key is s=tlsrpt, message is not a report")
    kind = ktag.decode("ascii")
    if kind == "rsa" and bits < MIN_KEY_BITS:
        return Verdict(NOT_USABLE, "KeyFormatError", f"public key too small: {bits}")
    return Verdict(USABLE, "key", f"{kind}, {bits} bits")


def record_names(keys: Sequence[tuple[str, str]]) -> list[tuple[tuple[str, str], bytes]]:
    """Each record's name as dkimpy builds it from a signature: s._domainkey.d. as bytes."""
    return [((domain, s), f"{s}._domainkey.{domain}.".encode()) for domain, s in keys]


def dkimpy_run(
    names: Sequence[tuple[tuple[str, str], bytes]], get_txt: GetTxt
) -> tuple[float, Verdicts]:
    """Every record, one after the other: the wall time, and each record's verdict."""
    verdicts: Verdicts = {}
    start = time.perf_counter()
    for key, name in names:
        verdicts[key] = dkimpy_verdict(name, get_txt)
    return time.perf_counter() - start, verdicts
