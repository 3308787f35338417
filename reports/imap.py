"""The one adapter to IMAP: take the reports out of a mailbox, one message at a time.

A poll connects over TLS (port 993) or STARTTLS (never a password in clear), verifying the
server's certificate for the mailbox's host name against the system's CAs plus
MAILSEC_TLS_CA_FILE. The host's addresses come from mailsec's resolver, and each must pass the
core's network guard (`mailsec.netguard`, MAILSEC_PROBE_ALLOW_NETWORKS) before any connection.

Each message is fetched whole only when its RFC822.SIZE is within the limit, handed to `store`,
and moved to the processed folder only after `store` returned (the row committed): a poll cut
short anywhere leaves every message not yet stored in the folder. A message over the limit is
left where it is and marked, so later polls pass it by. This is the only module that imports
imapclient.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from imapclient import IMAPClient  # type: ignore[import-untyped]
from imapclient import exceptions as imap_errors
from imapclient.imap4 import IMAP4WithTimeout  # type: ignore[import-untyped]
from imapclient.tls import IMAP4_TLS  # type: ignore[import-untyped]

from dns_records.lookups import host_addresses
from dns_records.resolver import Resolver
from mailsec import netguard

# Marks a message mailsec will not take (over the size limit), so later polls pass it by.
SKIPPED_KEYWORD = "$MailsecSkipped"
BATCH_SIZE = 50
MAX_MESSAGES_PER_POLL = 1000
TIMEOUT_SECONDS = 30.0
LITERAL_SLACK = 64 * 1024


class FailureKind(StrEnum):
    DNS = "dns"
    REFUSED = "refused"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    TLS = "tls"
    AUTH = "auth"
    FOLDER = "folder"
    PROTOCOL = "protocol"


class ImapFailure(Exception):
    """What kept a poll from finishing, said for the mailbox's admin; never holds the password."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    security: str  # "tls" or "starttls"
    username: str
    password: str
    folder: str
    processed_folder: str

    def __repr__(self) -> str:
        return f"ImapAccount({self.username}@{self.host}:{self.port}/{self.folder})"


@dataclass
class PollOutcome:
    """What one poll did: messages stored, found stored already, left as too large, moved."""

    stored: int = 0
    duplicates: int = 0
    too_large: int = 0
    moved: int = 0
    more_waiting: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "too_large": self.too_large,
            "moved": self.moved,
            "more_waiting": self.more_waiting,
        }


# `store(content, uid)` keeps the message durably and says whether it was new (False: the
# same message was stored before); it raises when it could not store it.
Store = Callable[[bytes, int], bool]


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.MAILSEC_TLS_CA_FILE:
        context.load_verify_locations(cafile=settings.MAILSEC_TLS_CA_FILE)
    return context


def allowed_addresses(host: str, resolver: Resolver | None = None) -> list[str]:
    """The host's addresses mailsec may connect to; ImapFailure when there are none."""
    literal = netguard.parse_address(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        lookups = (resolver or Resolver()).addresses(host)
        addresses = host_addresses(lookups)
        if not addresses:
            if any(lookup.failed for lookup in lookups):
                reasons = "; ".join(lk.reason for lk in lookups if lk.failed and lk.reason)
                raise ImapFailure(FailureKind.DNS, f"could not resolve {host}: {reasons}")
            raise ImapFailure(FailureKind.DNS, f"{host} has no address (no A or AAAA record)")
    allowed = [
        a for a in addresses if netguard.address_allowed(a, settings.MAILSEC_PROBE_ALLOW_NETWORKS)
    ]
    if not allowed:
        raise ImapFailure(
            FailureKind.REFUSED,
            f"not connected: {host} is {', '.join(addresses)}, outside the networks mailsec may "
            "reach (MAILSEC_PROBE_ALLOW_NETWORKS)",
        )
    return allowed


def _bounded_read(read: Callable[[int], bytes], size: int, limit: int) -> bytes:
    """imaplib reads a literal of whatever size the server announces: refuse one over the
    limit before reading it, so a hostile server cannot fill the worker's memory."""
    if size > limit:
        raise ImapFailure(
            FailureKind.PROTOCOL, f"the server sent {size} bytes at once, over mailsec's limit"
        )
    return read(size)


class _TlsConnection(IMAP4_TLS):  # type: ignore[misc]
    """imaplib over TLS to a checked address, verifying the certificate for the host name."""

    def __init__(
        self,
        host: str,
        address: str,
        port: int,
        context: ssl.SSLContext,
        timeout: float,
        max_literal: int,
    ) -> None:
        self._address = address
        self._max_literal = max_literal
        super().__init__(host, port, context, timeout)

    def read(self, size: int) -> bytes:
        return _bounded_read(super().read, size, self._max_literal)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), timeout or self._timeout)
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[no-any-return]
        except BaseException:
            sock.close()
            raise


class _PlainConnection(IMAP4WithTimeout):  # type: ignore[misc]
    """imaplib in clear to a checked address, until STARTTLS (verified for the host name)."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, max_literal: int
    ) -> None:
        self._address = address
        self._max_literal = max_literal
        super().__init__(host, port, timeout)

    def read(self, size: int) -> bytes:
        return _bounded_read(super().read, size, self._max_literal)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return socket.create_connection((self._address, self.port), timeout or self._timeout)


class _Client(IMAPClient):  # type: ignore[misc]
    def __init__(
        self,
        host: str,
        address: str,
        port: int,
        implicit_tls: bool,
        context: ssl.SSLContext,
        timeout: float,
        max_literal: int,
    ) -> None:
        self._address = address
        self._context = context
        self._max_literal = max_literal
        super().__init__(host, port=port, ssl=implicit_tls, ssl_context=context, timeout=timeout)

    def _create_IMAP4(self) -> Any:
        timeout = getattr(self._timeout, "connect", None) or TIMEOUT_SECONDS
        if self.ssl:
            return _TlsConnection(
                self.host, self._address, self.port, self._context, timeout, self._max_literal
            )
        return _PlainConnection(self.host, self._address, self.port, timeout, self._max_literal)


def _failure(exc: BaseException, host: str) -> ImapFailure:
    """The admin's words for what went wrong talking to host."""
    if isinstance(exc, ImapFailure):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ImapFailure(
            FailureKind.TLS,
            f"{host}'s certificate is not trusted: {exc.verify_message or exc.reason}",
        )
    if isinstance(exc, ssl.SSLError):
        return ImapFailure(FailureKind.TLS, f"TLS with {host} failed: {exc.reason or exc}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ImapFailure(FailureKind.TIMEOUT, f"{host} did not answer in time")
    if isinstance(exc, imap_errors.LoginError):
        return ImapFailure(FailureKind.AUTH, f"{host} refused the username or password")
    if isinstance(exc, OSError):
        return ImapFailure(
            FailureKind.CONNECT, f"could not connect to {host}: {exc.strerror or exc}"
        )
    text = str(exc)[:200]
    return ImapFailure(FailureKind.PROTOCOL, f"{host} answered unexpectedly: {text}")


def _connect(
    account: ImapAccount, addresses: Sequence[str], timeout: float, max_literal: int
) -> _Client:
    context = tls_context()
    last: ImapFailure | None = None
    for address in addresses:
        try:
            client = _Client(
                account.host,
                address,
                account.port,
                account.security != "starttls",
                context,
                timeout,
                max_literal,
            )
        except (OSError, imap_errors.IMAPClientError) as exc:
            last = _failure(exc, account.host)
            if last.kind in {FailureKind.TLS}:
                raise last from None
            continue
        try:
            if account.security == "starttls":
                if not client.has_capability("STARTTLS"):
                    raise ImapFailure(
                        FailureKind.TLS,
                        f"{account.host} does not offer STARTTLS: mailsec never sends a "
                        "password in clear",
                    )
                client.starttls(context)
            client.login(account.username, account.password)
        except BaseException as exc:
            _close(client)
            raise _failure(exc, account.host) from None
        return client
    assert last is not None
    raise last


def _close(client: _Client) -> None:
    try:
        client.logout()
    except Exception:
        with contextlib.suppress(Exception):  # the connection is gone either way
            client.shutdown()


def _ensure_folder(client: _Client, folder: str) -> None:
    if not client.folder_exists(folder):
        client.create_folder(folder)


def _move(client: _Client, uid: int, folder: str) -> None:
    if client.has_capability("MOVE"):
        client.move([uid], folder)
        return
    client.copy([uid], folder)
    client.add_flags([uid], [b"\\Deleted"], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge([uid])
    else:
        client.expunge()


def _mark_skipped(client: _Client, uid: int) -> None:
    """Mark a message later polls pass by; a server refusing keywords only costs a size check."""
    with contextlib.suppress(imap_errors.IMAPClientError):
        client.add_flags([uid], [SKIPPED_KEYWORD], silent=True)


def poll(
    account: ImapAccount,
    store: Store,
    *,
    max_bytes: int,
    resolver: Resolver | None = None,
    timeout: float = TIMEOUT_SECONDS,
    max_messages: int = MAX_MESSAGES_PER_POLL,
) -> PollOutcome:
    """Store and move out every message of the account's folder (up to max_messages).

    Raises ImapFailure for what the server or the network did; anything `store` raises goes
    through unchanged, with the message left in the folder.
    """
    addresses = allowed_addresses(account.host, resolver)
    # A message is read whole only within the limit; the slack covers IMAP's own literals.
    client = _connect(account, addresses, timeout, max_bytes + LITERAL_SLACK)
    outcome = PollOutcome()
    try:
        try:
            client.select_folder(account.folder)
        except imap_errors.IMAPClientError:
            raise ImapFailure(
                FailureKind.FOLDER, f"{account.host} has no folder {account.folder!r}"
            ) from None
        try:
            _ensure_folder(client, account.processed_folder)
        except imap_errors.IMAPClientError as exc:
            raise ImapFailure(
                FailureKind.FOLDER,
                f"could not create the folder {account.processed_folder!r}: {str(exc)[:200]}",
            ) from None
        uids = sorted(client.search(["NOT", "KEYWORD", SKIPPED_KEYWORD]))
        outcome.more_waiting = len(uids) > max_messages
        uids = uids[:max_messages]
        for start in range(0, len(uids), BATCH_SIZE):
            batch = uids[start : start + BATCH_SIZE]
            sizes = client.fetch(batch, ["RFC822.SIZE"])
            for uid in batch:
                size = sizes.get(uid, {}).get(b"RFC822.SIZE")
                if size is None:
                    continue  # expunged meanwhile by someone else
                if int(size) > max_bytes:
                    _mark_skipped(client, uid)
                    outcome.too_large += 1
                    continue
                # At most one byte over the limit, however large the server says it is.
                fetched = client.fetch([uid], [f"BODY.PEEK[]<0.{max_bytes + 1}>"]).get(uid, {})
                content = fetched.get(b"BODY[]<0>", fetched.get(b"BODY[]"))
                if content is None:
                    continue
                if len(content) > max_bytes:  # the server's size was wrong
                    _mark_skipped(client, uid)
                    outcome.too_large += 1
                    continue
                if store(bytes(content), uid):
                    outcome.stored += 1
                else:
                    outcome.duplicates += 1
                _move(client, uid, account.processed_folder)
                outcome.moved += 1
    except ImapFailure:
        raise
    except (OSError, imap_errors.IMAPClientError) as exc:
        raise _failure(exc, account.host) from None
    finally:
        _close(client)
    return outcome
