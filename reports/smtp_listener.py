"""The SMTP way in: an aiosmtpd listener taking reports for mailsec's ingest addresses.

Receivers send DMARC aggregate and TLS reports here from the open internet, so the listener
takes as little as it can: only the ingest addresses (550 at RCPT for any other), a bounded
number of recipients, connections, command and line lengths, message size (552) and time.

A message is answered 250 only after `raw_message_store` has committed it; the store runs on a
small thread pool (the ORM is synchronous) with the database connection checked before and
after. When it cannot be stored, the database down or anything else, the answer is
451 4.3.0: the sender keeps the message and retries, so nothing is lost and nothing is answered
250 that was not stored. This is the only module that imports aiosmtpd.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import ssl
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections

from dns_records.results import visible_text
from reports.models import IngestSource
from reports.services import MessageTooLarge, raw_message_store

logger = logging.getLogger(__name__)

# The recipients `make run` accepts when MAILSEC_INGEST_ADDRESSES is empty. Debug only: the
# suggested DMARC and TLS-RPT records name only addresses set explicitly.
LOCAL_ADDRESSES = ("dmarc@localhost", "tls-reports@localhost")
# RFC 5321 4.5.3.1: 512 octets for a command line (aiosmtpd adds room for the SIZE and BODY
# parameters it announces), 1000 for a text line including CR LF (aiosmtpd's 1001 is the
# stream's buffer: one more than the longest line it takes).
COMMAND_SIZE_LIMIT = 512
LINE_LENGTH_LIMIT = 1001
# Commands per connection: enough for a sender's batch of reports, not for a dictionary attack
# on the recipient check or a connection held open with NOOPs.
COMMAND_CALL_LIMITS = {"MAIL": 100, "RCPT": 1000, "DATA": 100, "RSET": 100, "NOOP": 10, "*": 20}
# How long one message's store may take before the sender is told to retry.
STORE_TIMEOUT_SECONDS = 60.0
STORE_THREADS = 4
SHUTDOWN_GRACE_SECONDS = 10.0


class ListenerConfigError(ImproperlyConfigured):
    """A listener setting that cannot be used: the command says which and stops."""


@dataclass(frozen=True)
class ListenerConfig:
    """Everything the listener needs, read from the settings once at start."""

    host: str
    port: int
    addresses: frozenset[str]
    max_message_bytes: int
    timeout: float
    max_recipients: int
    max_connections: int
    tls_context: ssl.SSLContext | None = field(default=None, compare=False)
    hostname: str = "mailsec"


def parse_listen(text: str) -> tuple[str, int]:
    """`ip:port` or `[ipv6]:port` as (address, port); the port is required."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ListenerConfigError(f"listen address {text!r} is not [ipv6]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ListenerConfigError(f"listen address {text!r} is not ip:port or [ipv6]:port")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ListenerConfigError(
            f"listen address {text!r}: {host!r} is not an IP address"
        ) from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ListenerConfigError(f"listen address {text!r} has no valid port")
    return str(address), int(port_text)


def normalise_addresses(addresses: Iterable[str]) -> frozenset[str]:
    """Lower-cased `local@domain` addresses; anything else is a configuration error."""
    result = set()
    for address in addresses:
        text = address.strip().lower()
        local, at, domain = text.rpartition("@")
        if not at or not local or not domain or any(c.isspace() or c in "<>," for c in text):
            raise ListenerConfigError(
                f"MAILSEC_INGEST_ADDRESSES: {address!r} is not an address like dmarc@example.org"
            )
        result.add(text)
    return frozenset(result)


def accepted_addresses() -> frozenset[str]:
    """MAILSEC_INGEST_ADDRESSES, else the local addresses under debug, else a refusal to start."""
    configured = list(settings.MAILSEC_INGEST_ADDRESSES)
    if not configured and settings.DEBUG:
        configured = list(LOCAL_ADDRESSES)
    if not configured:
        raise ListenerConfigError(
            "MAILSEC_INGEST_ADDRESSES is empty: set the addresses reports are sent to "
            "(the listener accepts mail for nobody else)"
        )
    return normalise_addresses(configured)


def _tls_context() -> ssl.SSLContext | None:
    cert, key = settings.MAILSEC_INGEST_TLS_CERT, settings.MAILSEC_INGEST_TLS_KEY
    if not cert and not key:
        return None
    if not (cert and key):
        raise ListenerConfigError(
            "set both MAILSEC_INGEST_TLS_CERT and MAILSEC_INGEST_TLS_KEY, or neither"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ListenerConfigError(f"cannot load the ingest TLS certificate or key: {exc}") from None
    return context


def listener_config(listen: str | None = None) -> ListenerConfig:
    host, port = parse_listen(listen or settings.MAILSEC_INGEST_LISTEN)
    return ListenerConfig(
        host=host,
        port=port,
        addresses=accepted_addresses(),
        max_message_bytes=settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES,
        timeout=float(settings.MAILSEC_INGEST_TIMEOUT_SECONDS),
        max_recipients=settings.MAILSEC_INGEST_MAX_RECIPIENTS,
        max_connections=settings.MAILSEC_INGEST_MAX_CONNECTIONS,
        tls_context=_tls_context(),
    )


def store_received(content: bytes, *, mail_from: str, rcpt_tos: list[str], peer: str) -> int:
    """Store one received message (in a pool thread); its RawMessage id once committed."""
    close_old_connections()
    try:
        # Addresses are the sender's text (SMTPUTF8, any byte): NUL and undecodable bytes are
        # stored as visible escapes, or the database would refuse the row and the sender
        # would be told to retry forever.
        message = raw_message_store(
            content,
            source=IngestSource.SMTP,
            envelope_from=visible_text(mail_from),
            envelope_to=[visible_text(rcpt) for rcpt in rcpt_tos],
            remote_addr=visible_text(peer),
        )
        return int(message.pk)
    finally:
        close_old_connections()


def _peer_address(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return str(peer or "")


class IngestHandler:
    """The aiosmtpd handler: checks each recipient, stores each message before answering."""

    def __init__(
        self,
        config: ListenerConfig,
        executor: ThreadPoolExecutor,
        store: Callable[..., int] = store_received,
    ) -> None:
        self.config = config
        self.executor = executor
        self.store = store

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd announces AUTH (with no mechanism left) once TLS is up: reporters never
        # authenticate, so the listener never offers it.
        return [line for line in responses if not line.startswith("250-AUTH")]

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.strip().lower() not in self.config.addresses:
            logger.info("refused recipient %r from %s", address[:200], _peer_address(session))
            return "550 5.1.1 No such ingest address here"
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        peer = _peer_address(session)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            self.executor,
            lambda: self.store(
                bytes(content),
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                peer=peer,
            ),
        )
        try:
            message_id = await asyncio.wait_for(job, timeout=STORE_TIMEOUT_SECONDS)
        except MessageTooLarge:
            return "552 5.3.4 Message too big for mailsec"
        except TimeoutError:
            logger.error("storing a message from %s took too long; answered 451", peer)
            return "451 4.3.0 Could not store the message now; try again later"
        except Exception:
            logger.exception("storing a message from %s failed; answered 451", peer)
            return "451 4.3.0 Could not store the message now; try again later"
        logger.info(
            "stored message %s (%d bytes) from %s, MAIL FROM %r, RCPT TO %s",
            message_id, len(content), peer, envelope.mail_from, envelope.rcpt_tos,
        )  # fmt: skip
        return f"250 2.0.0 OK: stored as {message_id}"


class _Connections:
    def __init__(self) -> None:
        self.active = 0


class IngestSMTP(SMTP):
    """aiosmtpd's SMTP session with mailsec's limits, turning away connections over the cap."""

    command_size_limit = COMMAND_SIZE_LIMIT
    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(self, handler: IngestHandler, connections: _Connections, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._connections = connections
        self._max_connections = handler.config.max_connections

    async def _handle_client(self) -> None:
        self._connections.active += 1
        try:
            if self._connections.active > self._max_connections:
                await self.push("421 4.7.0 Too many connections; try again later")
                if self.transport is not None:
                    self.transport.close()
                return
            await super()._handle_client()
        finally:
            self._connections.active -= 1


def smtp_factory(config: ListenerConfig, handler: IngestHandler) -> Callable[[], IngestSMTP]:
    connections = _Connections()

    def make() -> IngestSMTP:
        return IngestSMTP(
            handler,
            connections,
            data_size_limit=config.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=config.hostname,
            ident="mailsec report ingest",
            tls_context=config.tls_context,
            require_starttls=False,
            timeout=config.timeout,
            command_call_limit=COMMAND_CALL_LIMITS,
            # Reporters do not authenticate: no AUTH mechanism is offered, even after STARTTLS.
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
        )

    return make


async def serve(config: ListenerConfig, stop: asyncio.Event) -> None:
    """Listen until `stop` is set, then close the socket and let open sessions end."""
    executor = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="ingest-store")
    handler = IngestHandler(config, executor)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(smtp_factory(config, handler), config.host, config.port)
    logger.info(
        "SMTP ingest listening on %s:%d for %s", config.host, config.port,
        ", ".join(sorted(config.addresses)),
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        server.close()
        # Sessions under way get a moment to finish; those still open are then dropped (their
        # senders retry: nothing they sent was answered 250 unless it was stored).
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            logger.info("SMTP ingest: dropping sessions still open")
        # A store under way finishes (its sender gets its answer or a dropped connection).
        executor.shutdown(wait=True)
        logger.info("SMTP ingest stopped")


def run(config: ListenerConfig) -> None:
    """Serve in this thread until SIGTERM or SIGINT."""

    # aiosmtpd logs every command at INFO; mailsec logs what was stored or refused.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, stop)

    asyncio.run(main())
