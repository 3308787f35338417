"""The one adapter to DNS: every lookup mailsec makes goes through `Resolver`.

Answers come back as `dns_records.lookups.Lookup` values that keep "the record does not exist"
(nxdomain, nodata) apart from "the lookup failed" (error): a timeout, SERVFAIL or REFUSED must
never read as a missing record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.tsig
import dns.update
from django.conf import settings

from dns_records.lookups import Lookup, LookupStatus
from mailsec.env import Nameserver


def _answer(name: str, rdtype: str, response: dns.message.Message) -> Lookup:
    """The records a NOERROR response holds for the question, following its CNAME chain."""
    chain = response.resolve_chaining()  # type: ignore[attr-defined]
    canonical = chain.canonical_name.to_text(omit_final_dot=True).lower()
    if chain.answer is None:
        return Lookup(name, rdtype, LookupStatus.NODATA, canonical_name=canonical)
    return Lookup(
        name,
        rdtype,
        LookupStatus.OK,
        records=tuple(sorted(_rdata_text(rdata, rdtype) for rdata in chain.answer)),
        ttl=chain.minimum_ttl,
        canonical_name=canonical,
        authenticated=bool(response.flags & dns.flags.AD),
    )


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
    """A stub resolver bound to the configured name servers, with a per-lookup time limit.

    Each query goes to the servers in order over UDP (TCP when truncated): dnspython's full
    resolver machinery (search lists, caching, rotation) costs more CPU than the lookup itself
    when the servers are close by. Every query leaves from a fresh socket, so from a port the
    kernel picks at random (RFC 5452): with a reused socket only the 16-bit query id would stand
    between an off-path attacker and a forged answer (one that decides, say, where the MTA-STS
    policy is fetched from).
    """

    def __init__(
        self, nameservers: Sequence[Nameserver] | None = None, timeout: float | None = None
    ) -> None:
        servers = settings.MAILSEC_DNS_NAMESERVERS if nameservers is None else nameservers
        self.timeout = settings.MAILSEC_DNS_TIMEOUT if timeout is None else timeout
        if not servers:
            system = dns.resolver.Resolver(configure=True)
            servers = [Nameserver(str(address), 53) for address in system.nameservers]
        self._servers = list(servers)

    @property
    def nameservers(self) -> list[str]:
        return [f"{server.address}:{server.port}" for server in self._servers]

    def lookup(self, name: str, rdtype: str) -> Lookup:
        try:
            query = dns.message.make_query(name, rdtype)
        except dns.exception.DNSException as exc:
            return Lookup(name, rdtype, LookupStatus.ERROR, reason=str(exc) or type(exc).__name__)
        deadline = time.monotonic() + self.timeout
        failures: list[str] = []
        timeouts = 0
        for server in self._servers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            where = f"Do53:{server.address}@{server.port}"
            try:
                response = dns.query.udp(
                    query, server.address, port=server.port, timeout=remaining,
                    ignore_unexpected=True,
                )  # fmt: skip
                if response.flags & dns.flags.TC:
                    response = dns.query.tcp(
                        query, server.address, port=server.port,
                        timeout=max(deadline - time.monotonic(), 0.1),
                    )  # fmt: skip
            except dns.exception.Timeout:
                timeouts += 1
                continue
            except (OSError, dns.exception.DNSException) as exc:
                failures.append(f"{where}: {exc}")
                continue
            rcode = response.rcode()
            if rcode == dns.rcode.NXDOMAIN:
                return Lookup(name, rdtype, LookupStatus.NXDOMAIN)
            if rcode != dns.rcode.NOERROR:
                failures.append(f"{where}: answered {dns.rcode.to_text(rcode)}")
                continue
            try:
                return _answer(name, rdtype, response)
            except dns.exception.DNSException as exc:  # e.g. a CNAME chain that loops
                failures.append(f"{where}: {exc}")
        if not failures:
            return Lookup(
                name, rdtype, LookupStatus.ERROR, reason=f"timed out after {self.timeout:g}s"
            )
        return Lookup(
            name, rdtype, LookupStatus.ERROR, reason="no server answered: " + "; ".join(failures)
        )

    def addresses(self, name: str) -> tuple[Lookup, Lookup]:
        return self.lookup(name, "A"), self.lookup(name, "AAAA")

    def reverse(self, address: str) -> Lookup:
        """The PTR records of an IPv4 or IPv6 address."""
        return self.lookup(reverse_name(address), "PTR")


def reverse_name(address: str) -> str:
    return str(dns.reversename.from_address(address).to_text(omit_final_dot=True))


class CachingResolver(Resolver):
    """A resolver that asks each question once, for one batch of checks.

    The checks of one domain ask the same questions (the MX hosts' addresses serve the MX,
    reverse DNS, SPF and MTA-STS checks), and the domains of a batch share providers' records
    (one name may even be a domain of several organisations). The memory lives only as long as
    this object, so no answer goes stale; a question already on the wire is waited for, not
    asked again. Once `cancelled` is set, every new question is answered with an error at once.
    """

    def __init__(self, inner: Resolver, cancelled: threading.Event | None = None) -> None:
        self._inner = inner
        self.timeout = inner.timeout
        self._answers: dict[tuple[str, str], Future[Lookup]] = {}
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
            answer = self._answers.get(key)
            asking = answer is None
            if answer is None:
                answer = self._answers[key] = Future()
        if asking:
            try:
                answer.set_result(self._inner.lookup(name, rdtype))
            except BaseException as exc:
                answer.set_exception(exc)
                with self._lock:
                    self._answers.pop(key, None)
                raise
        return answer.result()

    @property
    def queries(self) -> int:
        return len(self._answers)


class DeadlineResolver(Resolver):
    """One domain's view of a batch's (caching) resolver: after `deadline` (a `time.monotonic`
    value) every question is answered with an error at once.

    Names that never answer would otherwise hold a worker for a whole task time limit, and one
    domain's fan-out would starve the rest of its batch; "out of time" is an unknown (`error`),
    never a missing record. A question already asked may still take up to one lookup timeout.
    """

    def __init__(self, inner: Resolver, deadline: float, budget: float) -> None:
        self._inner = inner
        self.timeout = inner.timeout
        self.deadline = deadline
        self._budget = budget

    @classmethod
    def starting_now(cls, inner: Resolver, budget: float) -> DeadlineResolver:
        return cls(inner, time.monotonic() + budget, budget)

    @property
    def nameservers(self) -> list[str]:
        return self._inner.nameservers

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def lookup(self, name: str, rdtype: str) -> Lookup:
        if self.remaining() <= 0:
            return Lookup(
                name, rdtype, LookupStatus.ERROR,
                reason=f"out of time: this domain's checks had {self._budget:g}s in all",
            )  # fmt: skip
        return self._inner.lookup(name, rdtype)


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key for RFC 2136 updates: its name, algorithm and secret (raw bytes)."""

    name: str
    algorithm: str
    secret: bytes


def send_update(
    server: Nameserver,
    zone: str,
    key: TsigKey,
    *,
    replace: dict[str, list[str]] | None = None,
    delete: list[str] | None = None,
    ttl: int = 300,
    timeout: float | None = None,
) -> str:
    """Send one RFC 2136 update, signed with TSIG, over TCP: set the TXT records at each name
    of `replace` (each value given as zone-file character-strings), remove those at `delete`.

    Returns "" when the server applied it, else why not (refused, NOTAUTH, timeout, ...).
    """
    keyname = dns.name.from_text(key.name)
    update = dns.update.UpdateMessage(
        zone,
        keyring={keyname: key.secret},
        keyname=keyname,
        keyalgorithm=dns.name.from_text(key.algorithm),
    )
    for name, values in (replace or {}).items():
        update.delete(dns.name.from_text(name), "TXT")
        for value in values:
            update.add(dns.name.from_text(name), ttl, "TXT", value)
    for name in delete or []:
        update.delete(dns.name.from_text(name), "TXT")
    limit = settings.MAILSEC_DNS_TIMEOUT if timeout is None else timeout
    try:
        response = dns.query.tcp(update, server.address, port=server.port, timeout=limit)
    except dns.exception.Timeout:
        return f"{server.address}:{server.port} did not answer within {limit:g}s"
    except dns.tsig.PeerError as exc:
        return (
            f"{server.address}:{server.port} refused the TSIG key {key.name} "
            f"(wrong name, algorithm or secret: {exc})"
        )
    except (OSError, dns.exception.DNSException) as exc:
        return f"{server.address}:{server.port}: {exc or type(exc).__name__}"
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return f"{server.address}:{server.port} answered {dns.rcode.to_text(rcode)}"
    return ""
