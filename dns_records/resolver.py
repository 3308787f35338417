"""The one adapter to DNS: every lookup mailsec makes goes through `Resolver`.

Answers come back as `Lookup` values that keep "the record does not exist" (nxdomain, nodata)
apart from "the lookup failed" (error): a timeout, SERVFAIL or REFUSED must never read as a
missing record.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename
from django.conf import settings

from mailsec.env import Nameserver


class LookupStatus(StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    ERROR = "error"


@dataclass(frozen=True)
class Lookup:
    """The outcome of one query. `records` holds each answer's presentation text."""

    name: str
    rdtype: str
    status: LookupStatus
    records: tuple[str, ...] = ()
    ttl: int | None = None
    canonical_name: str | None = None
    reason: str = ""
    authenticated: bool = False

    @property
    def ok(self) -> bool:
        return self.status is LookupStatus.OK

    @property
    def failed(self) -> bool:
        return self.status is LookupStatus.ERROR


def _rdata_text(rdata: object, rdtype: str) -> str:
    if rdtype in {"NS", "CNAME", "PTR"}:
        return str(rdata.target.to_text(omit_final_dot=True)).lower()  # type: ignore[attr-defined]
    if rdtype == "MX":
        exchange = rdata.exchange.to_text(omit_final_dot=True).lower()  # type: ignore[attr-defined]
        return f"{rdata.preference} {exchange or '.'}"  # type: ignore[attr-defined]
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", errors="replace")  # type: ignore[attr-defined]
    return str(rdata.to_text())  # type: ignore[attr-defined]


class Resolver:
    """A stub resolver bound to the configured name servers, with a per-lookup time limit."""

    def __init__(
        self, nameservers: Sequence[Nameserver] | None = None, timeout: float | None = None
    ) -> None:
        servers = settings.MAILSEC_DNS_NAMESERVERS if nameservers is None else nameservers
        self.timeout = settings.MAILSEC_DNS_TIMEOUT if timeout is None else timeout
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(server.address, server.port) for server in servers
            ]
        else:
            resolver = dns.resolver.Resolver(configure=True)
        resolver.cache = None
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout
        resolver.retry_servfail = False
        self._resolver = resolver

    @property
    def nameservers(self) -> list[str]:
        return [str(server) for server in self._resolver.nameservers]

    def lookup(self, name: str, rdtype: str) -> Lookup:
        try:
            answer = self._resolver.resolve(name, rdtype, search=False, raise_on_no_answer=True)
        except dns.resolver.NXDOMAIN:
            return Lookup(name, rdtype, LookupStatus.NXDOMAIN)
        except dns.resolver.NoAnswer:
            return Lookup(name, rdtype, LookupStatus.NODATA)
        except dns.resolver.LifetimeTimeout:
            return Lookup(
                name, rdtype, LookupStatus.ERROR, reason=f"timed out after {self.timeout:g}s"
            )
        except dns.resolver.NoNameservers as exc:
            return Lookup(name, rdtype, LookupStatus.ERROR, reason=_no_nameservers_reason(exc))
        except dns.exception.DNSException as exc:
            return Lookup(name, rdtype, LookupStatus.ERROR, reason=str(exc) or type(exc).__name__)
        records = tuple(sorted(_rdata_text(rdata, rdtype) for rdata in answer))
        canonical = answer.canonical_name.to_text(omit_final_dot=True).lower()
        return Lookup(
            name,
            rdtype,
            LookupStatus.OK,
            records=records,
            ttl=answer.rrset.ttl if answer.rrset is not None else None,
            canonical_name=canonical,
            authenticated=bool(answer.response.flags & dns.flags.AD),
        )

    def addresses(self, name: str) -> tuple[Lookup, Lookup]:
        return self.lookup(name, "A"), self.lookup(name, "AAAA")

    def reverse(self, address: str) -> Lookup:
        """The PTR records of an IPv4 or IPv6 address."""
        return self.lookup(reverse_name(address), "PTR")


def reverse_name(address: str) -> str:
    return str(dns.reversename.from_address(address).to_text(omit_final_dot=True))


class CachingResolver(Resolver):
    """A resolver that answers a repeated question from memory, for one run of checks.

    Checks of one domain ask the same questions (the MX hosts' addresses serve the MX, reverse
    DNS and SPF checks); the memory lives only as long as this object, so no answer goes stale.
    """

    def __init__(self, inner: Resolver, cancelled: threading.Event | None = None) -> None:
        self._inner = inner
        self.timeout = inner.timeout
        self._answers: dict[tuple[str, str], Lookup] = {}
        self._lock = threading.Lock()
        self._cancelled = cancelled

    @property
    def nameservers(self) -> list[str]:
        return self._inner.nameservers

    def lookup(self, name: str, rdtype: str) -> Lookup:
        if self._cancelled is not None and self._cancelled.is_set():
            return Lookup(name, rdtype, LookupStatus.ERROR, reason="cancelled: out of time")
        key = (name.lower().rstrip("."), rdtype)
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None:
            return cached
        answer = self._inner.lookup(name, rdtype)
        with self._lock:
            self._answers[key] = answer
        return answer

    @property
    def queries(self) -> int:
        return len(self._answers)


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    parts = []
    for entry in errors:
        # (server, tcp, port, error[, answer]) depending on the dnspython version
        server, error = entry[0], entry[3]
        parts.append(f"{server}: {error}" if str(error) else str(server))
    return "no server answered: " + "; ".join(parts) if parts else "no server answered"
