"""The one adapter to DNS: every lookup mailsec makes goes through `Resolver`.

Answers come back as `dns_records.lookups.Lookup` values that keep "the record does not exist"
(nxdomain, nodata) apart from "the lookup failed" (error): a timeout, SERVFAIL or REFUSED must
never read as a missing record.
"""

from __future__ import annotations

import heapq
import re
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

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

    def lookup_many(
        self,
        questions: Sequence[tuple[str, str]],
        *,
        concurrency: int = 256,
        cancelled: threading.Event | None = None,
    ) -> list[Lookup]:
        """Ask many questions at once, at most `concurrency` on the wire; answers in order.

        See `FanOut`: the same servers, time limit and answers as `lookup`, without a thread
        per question.
        """
        return FanOut(self, concurrency=concurrency, cancelled=cancelled).run(questions)


def reverse_name(address: str) -> str:
    return str(dns.reversename.from_address(address).to_text(omit_final_dot=True))


_HEADER = struct.Struct("!HHHHHH")
# A query unanswered this long is sent once more, when its attempt has at least twice as long.
RESEND_AFTER = 0.5
_RESEND = 0
_GIVE_UP = 1
_RD = 0x0100
_QR = 0x8000
_TC = 0x0200


_RDTYPES: dict[str, int] = {}


def _question_wire(name: str, rdtype: str) -> bytes:
    """The question section of a query: the name's labels, type and class IN.

    Plain ASCII names (all a blocklist poll asks) are encoded here, their labels remembered:
    dnspython's `Name` costs more CPU than the rest of a fan-out's query together. Others go
    through dnspython.
    """
    code = _RDTYPES.get(rdtype)
    if code is None:
        code = _RDTYPES.setdefault(rdtype, int(dns.rdatatype.from_text(rdtype)))
    text = name[:-1] if name.endswith(".") else name
    if text and text.isascii() and "\\" not in text:
        wire = _name_wire(text)
        if len(wire) > 255:
            raise ValueError(f"{name!r} is longer than DNS allows")
    else:
        encoded = dns.name.from_text(name).to_wire()
        assert encoded is not None
        wire = encoded
    return wire + struct.pack("!HH", code, 1)


# Labels already encoded: blocklist names repeat the same few (octets, nibbles, zone labels).
_LABELS: dict[str, bytes] = {}


def _name_wire(text: str) -> bytes:
    labels = _LABELS
    if len(labels) > 50_000:
        labels.clear()
    parts = []
    for label in text.split("."):
        wire = labels.get(label)
        if wire is None:
            if not 0 < len(label) < 64:
                raise ValueError(f"{text!r} has an empty label or one over 63 characters")
            wire = labels[label] = bytes((len(label),)) + label.encode("ascii")
        parts.append(wire)
    parts.append(b"\0")
    return b"".join(parts)


@dataclass(eq=False)
class _Pending:
    """One question of a fan-out: its query, the server it was last sent to, until when."""

    index: int
    name: str
    rdtype: str
    question: bytes
    deadline: float  # for the whole question, over every server
    server: int = -1
    query_id: int = 0
    attempt: int = 0
    channel: _Channel | None = None
    failures: list[str] = field(default_factory=list)
    truncated: bool = False
    wire: bytes = b""


@dataclass(eq=False)
class _Channel:
    """A UDP socket connected to one server, carrying a few questions at once, then retired."""

    sock: socket.socket
    server: int
    waiting: dict[int, _Pending] = field(default_factory=dict)  # by query id
    sent: int = 0


class FanOut:
    """Many lookups at once from one thread, at most `concurrency` questions on the wire.

    Each UDP socket is connected to its server (the kernel drops datagrams from anyone else),
    bound to a random source port by the kernel (RFC 5452), carries at most
    `PER_SOCKET` questions at once and `SOCKET_LIFETIME` in all, and is then closed: an off-path
    attacker has to guess a short-lived port, one of a few outstanding 16-bit random ids, and
    the exact question, which the reply must repeat. (`Resolver.lookup` takes a fresh socket per
    question; at thousands of questions a second the socket calls would cost more CPU than
    everything else, for about four bits of entropy.)

    Answers are the `Lookup` values `Resolver.lookup` gives: the servers are asked in order
    (the time left shared among the servers not yet tried); a timeout, SERVFAIL or REFUSED from
    each is an `error`; NXDOMAIN and empty answers are read from the header, every other answer
    is parsed by dnspython; a truncated reply is asked again over TCP once the fan-out is done.
    One thread waits on every socket (epoll): a thousand questions cost no thousand threads.
    Once `cancelled` is set, every question not answered yet is answered with an error at once.
    """

    PER_SOCKET = 16
    SOCKET_LIFETIME = 64

    def __init__(
        self,
        resolver: Resolver,
        *,
        concurrency: int = 256,
        cancelled: threading.Event | None = None,
    ) -> None:
        self._servers = list(resolver._servers)
        self.timeout = resolver.timeout
        self.concurrency = max(1, concurrency)
        self._cancelled = cancelled
        self.queries_sent = 0
        self._selector = selectors.DefaultSelector()
        self._open: dict[int, _Channel] = {}  # the channel taking new questions, per server
        self._channels: set[_Channel] = set()
        self._in_flight = 0
        # (when, attempt number, what, item): what is _RESEND or _GIVE_UP; timers of attempts
        # already answered are skipped.
        self._timers: list[tuple[float, int, int, _Pending]] = []
        self._results: list[Lookup | None] = []

    def run(self, questions: Sequence[tuple[str, str]]) -> list[Lookup]:
        results: list[Lookup | None] = [None] * len(questions)
        self._results = results
        start = time.monotonic()
        waiting: deque[_Pending] = deque()
        for index, (name, rdtype) in enumerate(questions):
            try:
                wire = _question_wire(name, rdtype)
            except (dns.exception.DNSException, ValueError) as exc:
                results[index] = Lookup(
                    name, rdtype, LookupStatus.ERROR, reason=str(exc) or type(exc).__name__
                )
                continue
            waiting.append(_Pending(index, name, rdtype, wire, deadline=start + self.timeout))
        truncated: list[_Pending] = []
        timers = self._timers
        try:
            while waiting or self._in_flight:
                if self._cancelled is not None and self._cancelled.is_set():
                    break
                while waiting and self._in_flight < self.concurrency:
                    self._send_next(waiting.popleft())
                if not self._in_flight:
                    continue
                while timers and (
                    timers[0][3].channel is None or timers[0][1] != timers[0][3].attempt
                ):
                    heapq.heappop(timers)
                wait = timers[0][0] - time.monotonic() if timers else self.timeout
                if self._cancelled is not None:
                    wait = min(wait, 0.1)  # look at the flag often enough to stop promptly
                for key, _events in self._selector.select(timeout=max(wait, 0.0)):
                    truncated += self._drain(key.data)
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    _when, attempt, what, item = heapq.heappop(timers)
                    if item.channel is None or attempt != item.attempt:
                        continue  # that attempt was answered already
                    if what == _RESEND:
                        self._resend(item)
                        continue
                    self._detach(item)
                    item.failures.append("")  # a timeout: counted, not named
                    self._send_next(item)
        finally:
            for channel in list(self._channels):
                self._selector.unregister(channel.sock)
                channel.sock.close()
            self._channels.clear()
            self._selector.close()
        for item in truncated:
            server = self._servers[item.server]
            results[item.index] = Resolver([server], timeout=self.timeout).lookup(
                item.name, item.rdtype
            )
        return [
            result
            if result is not None
            else Lookup(name, rdtype, LookupStatus.ERROR, reason="cancelled: out of time")
            for result, (name, rdtype) in zip(results, questions, strict=True)
        ]

    def _channel(self, server_index: int) -> _Channel:
        channel = self._open.get(server_index)
        if channel is not None and len(channel.waiting) < self.PER_SOCKET:
            return channel
        server = self._servers[server_index]
        family = socket.AF_INET6 if ":" in server.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((server.address, server.port))
        except OSError:
            sock.close()
            raise
        channel = _Channel(sock, server_index)
        self._selector.register(sock, selectors.EVENT_READ, channel)
        self._channels.add(channel)
        self._open[server_index] = channel
        return channel

    def _retire_if_done(self, channel: _Channel) -> None:
        if channel.sent >= self.SOCKET_LIFETIME and not channel.waiting:
            self._selector.unregister(channel.sock)
            channel.sock.close()
            self._channels.discard(channel)
            if self._open.get(channel.server) is channel:
                del self._open[channel.server]

    def _send_next(self, item: _Pending) -> None:
        """Send the question to the next server; record the final answer when none is left."""
        while True:
            item.server += 1
            now = time.monotonic()
            left = item.deadline - now
            if item.server >= len(self._servers) or left <= 0:
                named = [f for f in item.failures if f]
                reason = (
                    "no server answered: " + "; ".join(named)
                    if named
                    else f"timed out after {self.timeout:g}s"
                )
                self._results[item.index] = Lookup(
                    item.name, item.rdtype, LookupStatus.ERROR, reason=reason
                )
                return
            server = self._servers[item.server]
            try:
                channel = self._channel(item.server)
                query_id = secrets.randbits(16)
                while query_id in channel.waiting:
                    query_id = secrets.randbits(16)
                wire = _HEADER.pack(query_id, _RD, 1, 0, 0, 0) + item.question
                channel.sock.send(wire)
            except OSError as exc:
                item.failures.append(f"Do53:{server.address}@{server.port}: {exc}")
                continue
            self.queries_sent += 1
            channel.sent += 1
            if channel.sent >= self.SOCKET_LIFETIME and self._open.get(item.server) is channel:
                del self._open[item.server]  # no new questions on it; closed once answered
            channel.waiting[query_id] = item
            item.query_id = query_id
            item.channel = channel
            item.attempt = self.queries_sent
            item.wire = wire
            self._in_flight += 1
            window = left / (len(self._servers) - item.server)
            heapq.heappush(self._timers, (now + window, item.attempt, _GIVE_UP, item))
            if window >= 2 * RESEND_AFTER:
                heapq.heappush(self._timers, (now + RESEND_AFTER, item.attempt, _RESEND, item))
            return

    def _resend(self, item: _Pending) -> None:
        """Send the same query again (same id and socket): a UDP datagram lost on the way, or
        dropped by a busy server, costs a short wait instead of the whole time limit."""
        assert item.channel is not None
        try:
            item.channel.sock.send(item.wire)
        except OSError:
            return  # the attempt's own timer still ends it
        self.queries_sent += 1

    def _detach(self, item: _Pending) -> None:
        channel = item.channel
        if channel is None:
            return
        channel.waiting.pop(item.query_id, None)
        item.channel = None
        self._in_flight -= 1
        self._retire_if_done(channel)

    def _drain(self, channel: _Channel) -> list[_Pending]:
        """Read every datagram waiting on the channel; the questions to ask again over TCP."""
        server = self._servers[channel.server]
        where = f"Do53:{server.address}@{server.port}"
        truncated = []
        while channel.waiting:
            try:
                data = channel.sock.recv(65535)
            except BlockingIOError:
                break
            except OSError as exc:  # ICMP port unreachable: nothing listens there
                for item in list(channel.waiting.values()):
                    self._detach(item)
                    item.failures.append(f"{where}: {exc}")
                    self._send_next(item)
                break
            if len(data) < _HEADER.size:
                continue
            query_id, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(data)
            found = channel.waiting.get(query_id)
            if (
                found is None
                or not flags & _QR
                or qdcount != 1
                or data[_HEADER.size : _HEADER.size + len(found.question)].lower()
                != found.question.lower()
            ):
                continue  # not a reply to a question on this socket
            item = found
            self._detach(item)
            if flags & _TC:
                item.truncated = True
                truncated.append(item)
                continue
            answer = self._read(item, where, flags, ancount, data)
            if answer is None:
                self._send_next(item)
            else:
                self._results[item.index] = answer
        return truncated

    @staticmethod
    def _read(item: _Pending, where: str, flags: int, ancount: int, data: bytes) -> Lookup | None:
        """The answer a reply gives; None (the failure noted) when the next server is to be asked."""
        rcode = flags & 0x000F
        if rcode == dns.rcode.NXDOMAIN:
            return Lookup(item.name, item.rdtype, LookupStatus.NXDOMAIN)
        if rcode != dns.rcode.NOERROR:
            item.failures.append(f"{where}: answered {dns.rcode.to_text(dns.rcode.Rcode(rcode))}")
            return None
        if ancount == 0:
            canonical = item.name.lower().rstrip(".")
            return Lookup(item.name, item.rdtype, LookupStatus.NODATA, canonical_name=canonical)
        simple = _simple_answer(item, flags, ancount, data)
        if simple is not None:
            return simple
        try:
            return _answer(item.name, item.rdtype, dns.message.from_wire(data))
        except dns.exception.DNSException as exc:
            item.failures.append(f"{where}: {exc}")
            return None


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
_RR = struct.Struct("!HHHIH")  # pointer, type, class, TTL, data length
_A, _TXT, _IN, _AD = 1, 16, 1, 0x0020


def _simple_answer(item: _Pending, flags: int, ancount: int, data: bytes) -> Lookup | None:
    """The A or TXT records of the commonest reply, read without dnspython: every answer record
    names the question (a compression pointer to it) with its type and class. None for anything
    else (a CNAME chain, another type, an unusual name or layout), which dnspython then parses.
    A listed blocklist entry is such a reply, twice (A, then TXT)."""
    if item.rdtype not in ("A", "TXT") or not _PLAIN_NAME.fullmatch(item.name):
        return None
    want = _A if item.rdtype == "A" else _TXT
    offset = _HEADER.size + len(item.question)
    records = []
    ttl: int | None = None
    for _ in range(ancount):
        if offset + _RR.size > len(data):
            return None
        pointer, rrtype, rrclass, rrttl, length = _RR.unpack_from(data, offset)
        offset += _RR.size
        end = offset + length
        if pointer != 0xC00C or rrtype != want or rrclass != _IN or end > len(data):
            return None
        rdata = data[offset:end]
        offset = end
        if want == _A:
            if length != 4:
                return None
            records.append(socket.inet_ntoa(rdata))
        else:
            strings, at = [], 0
            while at < length:
                size = rdata[at]
                if at + 1 + size > length:
                    return None
                strings.append(rdata[at + 1 : at + 1 + size])
                at += 1 + size
            records.append(b"".join(strings).decode("utf-8", errors="replace"))
        ttl = rrttl if ttl is None else min(ttl, rrttl)
    return Lookup(
        item.name, item.rdtype, LookupStatus.OK, records=tuple(sorted(records)), ttl=ttl,
        canonical_name=item.name.lower().rstrip("."), authenticated=bool(flags & _AD),
    )  # fmt: skip


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
