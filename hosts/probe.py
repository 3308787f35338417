"""The one adapter for live probes: raw SMTP, IMAP and POP3 connections to a mail server.

Plain sockets and `ssl`, with a line reader of our own: every socket operation is given only
the time left of the probe's total deadline (a server dripping a byte a second cannot hold a
worker), lines and replies are capped, and the address is checked by the core's network guard
(`mailsec.netguard`) right before each connection: a refused address never opens a socket.

Nothing is sent that could deliver mail: the relay test stops at RCPT and ends with RSET/QUIT.
"""

from __future__ import annotations

import _ssl
import contextlib
import datetime
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings

from hosts.probe_verdicts import (
    LegacyTls,
    MailboxObservation,
    RelayObservation,
    SmtpObservation,
    TlsObservation,
)
from mailsec import netguard

MAX_LINE = 4096
MAX_LINES = 100
EHLO_NAME = "probe.mailsec.invalid"
RELAY_FROM = "relay-test@mailsec-probe.example.com"
RELAY_TO = "relay-test@example.net"


def visible(text: str) -> str:
    """Control characters (a NUL, which PostgreSQL refuses in JSON, among them) as escapes."""
    return "".join(
        c
        if c.isprintable() or c == "\t"
        else f"\\x{ord(c):02x}"
        if ord(c) < 256
        else f"\\u{ord(c):04x}"
        for c in text
    )


class ProbeRefused(Exception):
    """The address may not be probed (not global, outside MAILSEC_PROBE_ALLOW_NETWORKS)."""


class ProbeError(Exception):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def refuse_reason(address: str) -> str:
    return netguard.refuse_reason(address, settings.MAILSEC_PROBE_ALLOW_NETWORKS)


@dataclass
class Budget:
    """A total deadline (time.monotonic) and the longest a connect may take."""

    deadline: float
    connect_timeout: float = 5.0

    @classmethod
    def seconds(cls, total: float, connect_timeout: float = 5.0) -> Budget:
        return cls(time.monotonic() + total, connect_timeout)

    def left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeError("out of time", timed_out=True)
        return remaining


class _Conn:
    """A line-oriented connection whose every read and write gets only the time left."""

    def __init__(self, address: str, port: int, budget: Budget) -> None:
        reason = refuse_reason(address)
        if reason:
            raise ProbeRefused(reason)
        self.budget = budget
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(min(budget.connect_timeout, budget.left()))
        try:
            sock.connect((address, port))
        except TimeoutError as exc:
            sock.close()
            raise ProbeError(f"connecting to {address} port {port} timed out",
                             timed_out=True) from exc  # fmt: skip
        except OSError as exc:
            sock.close()
            raise ProbeError(f"connecting to {address} port {port}: {exc.strerror or exc}") from exc
        self.sock: socket.socket = sock
        self.buffer = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _io(self) -> None:
        self.sock.settimeout(self.budget.left())

    def send(self, line: str) -> None:
        self._io()
        try:
            self.sock.sendall(line.encode("ascii") + b"\r\n")
        except TimeoutError as exc:
            raise ProbeError("sending timed out", timed_out=True) from exc
        except OSError as exc:
            raise ProbeError(f"sending: {exc}") from exc

    def readline(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise ProbeError("the server sent a line longer than 4096 bytes")
            self._io()
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError as exc:
                raise ProbeError("waiting for the server timed out", timed_out=True) from exc
            except OSError as exc:
                raise ProbeError(f"reading: {exc}") from exc
            if not chunk:
                raise ProbeError("the server closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return visible(line.rstrip(b"\r").decode("utf-8", errors="replace"))

    def smtp_reply(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        for _ in range(MAX_LINES):
            line = self.readline()
            if len(line) < 3 or not line[:3].isdigit():
                raise ProbeError(f"not an SMTP reply: {line[:100]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines
        raise ProbeError("an SMTP reply of more than 100 lines")

    def smtp(self, command: str) -> tuple[int, list[str]]:
        self.send(command)
        return self.smtp_reply()

    def start_tls(self, context: ssl.SSLContext, server_name: str) -> ssl.SSLSocket:
        if self.buffer:
            raise ProbeError("the server sent data before the TLS handshake")
        self._io()
        try:
            wrapped = context.wrap_socket(self.sock, server_hostname=server_name or None)
        except TimeoutError as exc:
            raise ProbeError("the TLS handshake timed out", timed_out=True) from exc
        except ssl.SSLError:
            raise
        except OSError as exc:  # reset or closed mid-handshake: a refusal, for TLS 1.0 offers
            raise ProbeError(f"the TLS handshake ended: {exc}") from exc
        self.sock = wrapped
        return wrapped


def _verifying_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.MAILSEC_TLS_CA_FILE:
        context.load_verify_locations(cafile=settings.MAILSEC_TLS_CA_FILE)
    return context


def _observing_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _legacy_context() -> ssl.SSLContext:
    """Offers only TLS 1.0 and 1.1, at security level 0 so OpenSSL 3 will offer them at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # deprecated, which is the point of this probe
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _chain(tls: ssl.SSLSocket) -> tuple[tuple[bytes, bytes], ...]:
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        tls._sslobj,  # type: ignore[attr-defined]
        "get_unverified_chain",
        None,
    )
    raw: list[bytes] = []
    if getter is not None:
        for item in getter() or ():
            raw.append(item if isinstance(item, bytes) else item.public_bytes(_ssl.ENCODING_DER))
    if not raw:
        leaf = tls.getpeercert(binary_form=True)
        raw = [leaf] if leaf else []
    chain = []
    for der in raw:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        chain.append((der, spki))
    return tuple(chain)


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [visible(str(n)) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        if names:
            return tuple(names)
    except x509.ExtensionNotFound:
        pass
    return tuple(
        visible(str(a.value))
        for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    )


def _observe(tls: ssl.SSLSocket) -> TlsObservation:
    cipher = tls.cipher()
    chain = _chain(tls)
    not_after: datetime.datetime | None = None
    names: tuple[str, ...] = ()
    if chain:
        leaf = x509.load_der_x509_certificate(chain[0][0])
        not_after = leaf.not_valid_after_utc
        names = _names(leaf)
    return TlsObservation(
        protocol=tls.version() or "",
        cipher=cipher[0] if cipher else "",
        not_after=not_after,
        names=names,
        chain=chain,
    )


@dataclass(frozen=True)
class Target:
    """What to connect to (one address, resolved once) and the name the certificate names."""

    address: str
    name: str


# A session: open, greet, and bring the connection to where TLS starts (or has started).
def _smtp_session(
    target: Target, port: int, budget: Budget, *, implicit: bool, context: ssl.SSLContext | None
) -> tuple[_Conn, dict[str, object]]:
    conn = _Conn(target.address, port, budget)
    seen: dict[str, object] = {}
    try:
        if implicit:
            assert context is not None
            conn.start_tls(context, target.name)
        code, lines = conn.smtp_reply()
        seen["banner"] = lines[0] if lines else ""
        if code != 220:
            raise ProbeError(f"the greeting was {code} {' '.join(lines)[:200]}")
        code, lines = conn.smtp(f"EHLO {EHLO_NAME}")
        if code != 250:
            raise ProbeError(f"EHLO answered {code} {' '.join(lines)[:200]}")
        seen["ehlo"] = tuple(lines)
        if not implicit and context is not None:
            if not any(line.upper().startswith("STARTTLS") for line in lines[1:]):
                raise ProbeError("STARTTLS is not offered")
            code, reply = conn.smtp("STARTTLS")
            if code != 220:
                raise ProbeError(f"STARTTLS answered {code} {' '.join(reply)[:200]}")
            conn.start_tls(context, target.name)
            code, lines = conn.smtp(f"EHLO {EHLO_NAME}")
            seen["ehlo_tls"] = tuple(lines) if code == 250 else ()
        return conn, seen
    except BaseException:
        conn.close()
        raise


def _quit(conn: _Conn) -> None:
    with contextlib.suppress(ProbeError, OSError):
        conn.smtp("QUIT")
    conn.close()


def _tls_attempts(
    open_tls: Callable[[ssl.SSLContext], _Conn], closer: Callable[[_Conn], None]
) -> tuple[TlsObservation, LegacyTls]:
    """Verify (system store + MAILSEC_TLS_CA_FILE, for the name), observe the chain without
    verification when that failed, and try TLS 1.0/1.1 only."""
    verify_code, verify_message, verified = 0, "", False
    try:
        conn = open_tls(_verifying_context())
    except ssl.SSLCertVerificationError as exc:
        verify_code, verify_message = exc.verify_code, exc.verify_message
        conn = None
    except ssl.SSLError as exc:
        return TlsObservation(error=exc.reason or str(exc)), LegacyTls(reason="no TLS")
    else:
        verified = True
    if conn is None:
        try:
            conn = open_tls(_observing_context())
        except ssl.SSLError as exc:
            return TlsObservation(error=exc.reason or str(exc)), LegacyTls(reason="no TLS")
    assert isinstance(conn.sock, ssl.SSLSocket)
    seen = _observe(conn.sock)
    closer(conn)
    observation = TlsObservation(
        protocol=seen.protocol, cipher=seen.cipher, verified=verified, verify_code=verify_code,
        verify_message=verify_message, not_after=seen.not_after, names=seen.names,
        chain=seen.chain,
    )  # fmt: skip
    try:
        legacy_conn = open_tls(_legacy_context())
    except ssl.SSLError as exc:
        text = str(exc)
        if "NO_PROTOCOLS_AVAILABLE" in text.upper() or "no protocols available" in text:
            return observation, LegacyTls(reason="this machine's OpenSSL cannot offer TLS 1.0/1.1")
        return observation, LegacyTls(accepted=False, reason=exc.reason or text)
    except ProbeError as exc:
        # Servers often drop the connection on a protocol they refuse.
        if exc.timed_out:
            return observation, LegacyTls(reason=str(exc))
        return observation, LegacyTls(accepted=False, reason=str(exc))
    assert isinstance(legacy_conn.sock, ssl.SSLSocket)
    protocol = legacy_conn.sock.version() or ""
    closer(legacy_conn)
    return observation, LegacyTls(accepted=True, protocol=protocol)


def probe_smtp(target: Target, port: int, budget: Budget, *, implicit: bool) -> SmtpObservation:
    """Banner, EHLO, STARTTLS (or implicit TLS), the chain, and TLS below 1.2."""
    try:
        if implicit:
            ehlo: tuple[str, ...] = ()
            banner = ""
            starttls = False
        else:
            conn, seen = _smtp_session(target, port, budget, implicit=False, context=None)
            _quit(conn)
            banner = str(seen["banner"])
            ehlo = seen["ehlo"]  # type: ignore[assignment]
            starttls = any(line.upper().startswith("STARTTLS") for line in ehlo[1:])
            if not starttls:
                return SmtpObservation(port=port, banner=banner, ehlo=ehlo)
        after: dict[str, object] = {}

        def open_tls(context: ssl.SSLContext) -> _Conn:
            conn, seen = _smtp_session(target, port, budget, implicit=implicit, context=context)
            after.update(seen)
            return conn

        tls, legacy = _tls_attempts(open_tls, _quit)
        if implicit:
            banner = str(after.get("banner", ""))
            ehlo = after.get("ehlo", ())  # type: ignore[assignment]
        return SmtpObservation(
            port=port, implicit_tls=implicit, banner=banner, ehlo=ehlo,
            ehlo_tls=after.get("ehlo_tls", ()),  # type: ignore[arg-type]
            starttls_offered=starttls, tls=tls, legacy=legacy,
        )  # fmt: skip
    except ProbeError as exc:
        return SmtpObservation(port=port, implicit_tls=implicit, error=str(exc),
                               timed_out=exc.timed_out)  # fmt: skip


def probe_relay(target: Target, port: int, budget: Budget, *, use_tls: bool) -> RelayObservation:
    """Control 7: MAIL FROM an outside sender, RCPT TO an outside domain; never DATA."""
    base = RelayObservation(port=port, mail_from=RELAY_FROM, rcpt_to=RELAY_TO)
    try:
        conn, _seen = _smtp_session(
            target, port, budget, implicit=False, context=_observing_context() if use_tls else None
        )
    except (ProbeError, ssl.SSLError) as exc:
        return RelayObservation(port=port, mail_from=RELAY_FROM, rcpt_to=RELAY_TO,
                                error=str(exc), timed_out=getattr(exc, "timed_out", False))  # fmt: skip
    try:
        mail = conn.smtp(f"MAIL FROM:<{RELAY_FROM}>")
        mail_reply = (mail[0], " ".join(mail[1])[:300])
        rcpt_reply = (0, "")
        if 200 <= mail[0] < 300:
            rcpt = conn.smtp(f"RCPT TO:<{RELAY_TO}>")
            rcpt_reply = (rcpt[0], " ".join(rcpt[1])[:300])
        with contextlib.suppress(ProbeError):
            conn.smtp("RSET")
        return RelayObservation(port=port, mail_from=base.mail_from, rcpt_to=base.rcpt_to,
                                mail_reply=mail_reply, rcpt_reply=rcpt_reply)  # fmt: skip
    except ProbeError as exc:
        return RelayObservation(port=port, mail_from=RELAY_FROM, rcpt_to=RELAY_TO,
                                error=str(exc), timed_out=exc.timed_out)  # fmt: skip
    finally:
        _quit(conn)


def _imap_tagged(conn: _Conn, tag: str, command: str) -> tuple[str, list[str]]:
    conn.send(f"{tag} {command}")
    untagged: list[str] = []
    for _ in range(MAX_LINES):
        line = conn.readline()
        if line.startswith(f"{tag} "):
            return line[len(tag) + 1 :].split(" ", 1)[0].upper(), untagged
        untagged.append(line)
    raise ProbeError("an IMAP reply of more than 100 lines")


def _imap_caps(untagged: Sequence[str]) -> tuple[str, ...]:
    for line in untagged:
        if line.upper().startswith("* CAPABILITY "):
            return tuple(line.split()[2:])
    return ()


def _mailbox_session(
    proto: str, target: Target, port: int, budget: Budget, *, implicit: bool,
    context: ssl.SSLContext | None,
) -> tuple[_Conn, dict[str, object]]:  # fmt: skip
    conn = _Conn(target.address, port, budget)
    seen: dict[str, object] = {}
    try:
        if implicit:
            assert context is not None
            conn.start_tls(context, target.name)
        greeting = conn.readline()
        seen["greeting"] = greeting[:300]
        if proto == "imap":
            if not greeting.upper().startswith("* OK"):
                raise ProbeError(f"the greeting was {greeting[:200]!r}")
            status, untagged = _imap_tagged(conn, "a1", "CAPABILITY")
            caps = _imap_caps(untagged)
            starttls = "STARTTLS" in {c.upper() for c in caps}
        else:
            if not greeting.startswith("+OK"):
                raise ProbeError(f"the greeting was {greeting[:200]!r}")
            conn.send("CAPA")
            first = conn.readline()
            lines: list[str] = []
            if first.startswith("+OK"):
                for _ in range(MAX_LINES):
                    line = conn.readline()
                    if line == ".":
                        break
                    lines.append(line)
            caps = tuple(line.split(" ", 1)[0] for line in lines)
            caps += tuple(f"SASL:{m}" for line in lines if line.upper().startswith("SASL ")
                          for m in line.split()[1:])  # fmt: skip
            starttls = "STLS" in {c.upper() for c in caps}
        seen["capabilities"] = caps
        seen["starttls"] = starttls
        if not implicit and context is not None:
            if not starttls:
                raise ProbeError(
                    "STARTTLS is not offered" if proto == "imap" else "STLS is not offered"
                )
            if proto == "imap":
                status, _ = _imap_tagged(conn, "a2", "STARTTLS")
                ok = status == "OK"
            else:
                conn.send("STLS")
                ok = conn.readline().startswith("+OK")
            if not ok:
                raise ProbeError("STARTTLS was refused")
            conn.start_tls(context, target.name)
        return conn, seen
    except BaseException:
        conn.close()
        raise


def _mailbox_logout(proto: str) -> Callable[[_Conn], None]:
    def close(conn: _Conn) -> None:
        with contextlib.suppress(ProbeError, OSError):
            conn.send("a9 LOGOUT" if proto == "imap" else "QUIT")
        conn.close()

    return close


def probe_mailbox(
    proto: str, target: Target, port: int, budget: Budget, *, implicit: bool
) -> MailboxObservation | None:
    """IMAP or POP3 on one port; None when nothing listens there (the service is not run)."""
    closer = _mailbox_logout(proto)
    try:
        caps: tuple[str, ...] = ()
        starttls = False
        greeting = ""
        if not implicit:
            conn, seen = _mailbox_session(proto, target, port, budget, implicit=False, context=None)
            closer(conn)
            caps = seen["capabilities"]  # type: ignore[assignment]
            starttls = bool(seen["starttls"])
            greeting = str(seen["greeting"])
            if not starttls:
                return MailboxObservation(proto, port, False, greeting=greeting, capabilities=caps)

        def open_tls(context: ssl.SSLContext) -> _Conn:
            conn, _ = _mailbox_session(proto, target, port, budget, implicit=implicit,
                                       context=context)  # fmt: skip
            return conn

        tls, legacy = _tls_attempts(open_tls, closer)
        return MailboxObservation(proto, port, implicit, greeting=greeting, capabilities=caps,
                                  starttls_offered=starttls, tls=tls, legacy=legacy)  # fmt: skip
    except ProbeError as exc:
        if "Connection refused" in str(exc):
            return None
        return MailboxObservation(proto, port, implicit, error=str(exc), timed_out=exc.timed_out)


def listening(address: str, port: int, budget: Budget) -> bool:
    """Does anything accept a connection on the port (465, say, is optional)?"""
    try:
        conn = _Conn(address, port, budget)
    except ProbeError:
        return False
    conn.close()
    return True
