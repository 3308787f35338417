"""The one adapter to a managed host's SSH server (the only module that imports paramiko).

Every connection goes through the core's outgoing-address guard (`mailsec.netguard` with
MAILSEC_PROBE_ALLOW_NETWORKS); a host given by name is resolved through mailsec's resolver
(`dns_records.resolver`), never the system's.

- `fetch_host_key` reads the server's host key without authenticating: registration shows its
  fingerprint for the admin to confirm.
- `SshSession` refuses an unknown or changed host key right after the key exchange, before
  authenticating or sending anything (`HostKeyMismatch` carries both fingerprints). The key
  exchange itself proves the server holds the private half of the key it presents.
- Commands run without a shell on mailsec's side: the argument list is quoted with
  `shlex.join`, so no value can become shell syntax on the host.
- Files move over SFTP.

`service_banner` reads an SMTP or IMAP greeting (the check that a reloaded service answers),
through the same guard.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import shlex
import socket
import stat
import time
from dataclasses import dataclass
from types import TracebackType

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.conf import settings

from dns_records.lookups import LookupStatus
from dns_records.resolver import Resolver
from mailsec import netguard

__all__ = [
    "AddressRefused",
    "Completed",
    "HostKey",
    "HostKeyMismatch",
    "SshError",
    "SshSession",
    "connect",
    "fetch_host_key",
    "fingerprint_of_line",
    "generate_client_key",
    "service_banner",
]

DEFAULT_TIMEOUT = 15.0
MAX_OUTPUT = 4 * 1024 * 1024  # stdout or stderr of one command; more is cut off


class SshError(Exception):
    """Could not reach, authenticate to, or work on the host."""


class AddressRefused(SshError):
    """The address is outside what mailsec may connect to, or the name does not resolve."""


class HostKeyMismatch(SshError):
    """The server's host key is not the pinned one: nothing was sent."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"host key mismatch: pinned {expected}, the server presented {actual}; "
            "nothing was sent (a changed key must be confirmed again)"
        )


@dataclass(frozen=True)
class HostKey:
    """A server's host key as an OpenSSH public key line, and its SHA256 fingerprint."""

    key_line: str
    fingerprint: str


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: bytes
    stderr: bytes


def _fingerprint(blob: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def _parse_line(key_line: str) -> tuple[str, bytes]:
    parts = key_line.split()
    if len(parts) < 2:
        raise SshError("the pinned host key is not an OpenSSH public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise SshError("the pinned host key is not an OpenSSH public key line") from None
    return parts[0], blob


def fingerprint_of_line(key_line: str) -> str:
    """`SHA256:...` of an OpenSSH public key line, as `ssh-keygen -lf` prints it."""
    return _fingerprint(_parse_line(key_line)[1])


def _key_types(key_type: str) -> list[str]:
    """The host key algorithms that produce a key of this type (RSA signs in three ways)."""
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


def _addresses(address: str, timeout: float) -> list[str]:
    """The address itself, or the A and AAAA records of a name from mailsec's resolver."""
    try:
        return [str(ipaddress.ip_address(address))]
    except ValueError:
        pass
    found: list[str] = []
    for lookup in Resolver(timeout=timeout).addresses(address):
        if lookup.status is LookupStatus.OK:
            found += list(lookup.records)
    if not found:
        raise AddressRefused(f"{address} does not resolve to an address")
    return found


def _open_socket(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first allowed address of `address` that accepts one."""
    candidates = _addresses(address, timeout)
    allowed_networks = settings.MAILSEC_PROBE_ALLOW_NETWORKS
    refused = []
    last_error: OSError | None = None
    for text in candidates:
        reason = netguard.refuse_reason(text, allowed_networks)
        if reason:
            refused.append(reason)
            continue
        canonical = str(netguard.parse_address(text))
        try:
            return socket.create_connection((canonical, port), timeout=timeout)
        except OSError as exc:
            last_error = exc
    if last_error is not None:
        raise SshError(f"cannot connect to {address} port {port}: {last_error}")
    raise AddressRefused(
        f"not connecting to {address}: {'; '.join(refused)}, outside the networks mailsec may "
        "reach (MAILSEC_PROBE_ALLOW_NETWORKS)"
    )


def _transport(
    address: str, port: int, timeout: float, key_types: list[str] | None
) -> paramiko.Transport:
    sock = _open_socket(address, port, timeout)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    if key_types is not None:
        transport.get_security_options().key_types = key_types
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise SshError(f"SSH handshake with {address} port {port} failed: {exc}") from None
    return transport


def fetch_host_key(address: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> HostKey:
    """The server's host key (its preferred type, Ed25519 first), without authenticating."""
    transport = _transport(address, port, timeout, None)
    try:
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    return HostKey(f"{key.get_name()} {key.get_base64()}", _fingerprint(key.asbytes()))


def generate_client_key() -> tuple[str, str]:
    """A new Ed25519 client key: (private key in OpenSSH PEM, public key line to install)."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pem, public.decode("ascii") + " mailsec"


def _load_private_key(pem: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except (paramiko.SSHException, ValueError):
            continue
    raise SshError("mailsec's SSH client key cannot be read")


class SshSession:
    """An authenticated session with a host whose key matched the pinned one."""

    def __init__(
        self,
        address: str,
        port: int,
        user: str,
        private_key_pem: str,
        pinned_host_key_line: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.address = address
        self.port = port
        self.user = user
        self.timeout = timeout
        self._private_key_pem = private_key_pem
        self._pinned = pinned_host_key_line.strip()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> SshSession:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        if not self._pinned:
            raise HostKeyMismatch("(no pinned key)", "(not fetched)")
        pinned_type, pinned_blob = _parse_line(self._pinned)
        expected = _fingerprint(pinned_blob)
        try:
            transport = _transport(self.address, self.port, self.timeout, _key_types(pinned_type))
        except SshError as exc:
            if "host key" in str(exc).lower() or "incompatible" in str(exc).lower():
                raise HostKeyMismatch(
                    expected, f"(the server offers no {pinned_type} key)"
                ) from None
            raise
        key = transport.get_remote_server_key()
        if key.asbytes() != pinned_blob:
            transport.close()
            raise HostKeyMismatch(expected, _fingerprint(key.asbytes()))
        try:
            transport.auth_publickey(self.user, _load_private_key(self._private_key_pem))
        except paramiko.SSHException as exc:
            transport.close()
            raise SshError(f"{self.user}@{self.address} refused mailsec's key: {exc}") from None
        self._transport = transport

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _need(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            raise SshError("the SSH session is closed")
        return self._transport

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            client = paramiko.SFTPClient.from_transport(self._need())
            if client is None:
                raise SshError("the host refused an SFTP channel")
            client.get_channel().settimeout(self.timeout)  # type: ignore[union-attr]
            self._sftp = client
        return self._sftp

    def run(
        self, argv: list[str], *, input: bytes | None = None, timeout: float = 120.0
    ) -> Completed:
        """Run one command; its arguments are quoted so the host's shell reads them as words."""
        channel = self._need().open_session(timeout=self.timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(shlex.join(argv))
            if input is not None:
                channel.sendall(input)
            channel.shutdown_write()
            deadline = time.monotonic() + timeout
            out, err = bytearray(), bytearray()
            while True:
                if channel.recv_ready():
                    out += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                elif channel.exit_status_ready() and not (
                    channel.recv_ready() or channel.recv_stderr_ready()
                ):
                    break
                else:
                    if time.monotonic() > deadline:
                        raise SshError(f"{shlex.join(argv)}: timed out after {timeout:g}s")
                    time.sleep(0.01)
                if len(out) > MAX_OUTPUT or len(err) > MAX_OUTPUT:
                    raise SshError(f"{shlex.join(argv)}: more output than mailsec reads")
            # Drain what arrived with the exit status.
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            return Completed(channel.recv_exit_status(), bytes(out), bytes(err))
        except TimeoutError:
            raise SshError(f"{shlex.join(argv)}: timed out after {timeout:g}s") from None
        finally:
            channel.close()

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            with self.sftp().open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return None
            raise SshError(f"cannot read {path}: {exc}") from None

    def exists(self, path: str) -> bool:
        try:
            self.sftp().stat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return False
            raise SshError(f"cannot stat {path}: {exc}") from None
        return True

    def mode(self, path: str) -> int | None:
        """The file's permission bits, or None when it does not exist."""
        try:
            return stat.S_IMODE(self.sftp().stat(path).st_mode or 0)
        except OSError:
            return None

    def is_dir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(self.sftp().stat(path).st_mode or 0)
        except OSError:
            return False

    def write(self, path: str, data: bytes, mode: int) -> None:
        """Write the file in place (create or truncate), then set its mode."""
        try:
            with self.sftp().open(path, "wb") as handle:
                handle.write(data)
            self.sftp().chmod(path, mode)
        except OSError as exc:
            raise SshError(f"cannot write {path}: {exc}") from None

    def chown(self, path: str, uid: int, gid: int) -> None:
        try:
            self.sftp().chown(path, uid, gid)
        except OSError as exc:
            raise SshError(f"cannot chown {path}: {exc}") from None

    def rename(self, source: str, target: str) -> None:
        """Atomic rename over an existing target (OpenSSH's posix-rename)."""
        try:
            self.sftp().posix_rename(source, target)
        except OSError as exc:
            raise SshError(f"cannot rename {source} to {target}: {exc}") from None

    def remove(self, path: str) -> None:
        try:
            self.sftp().remove(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return
            raise SshError(f"cannot remove {path}: {exc}") from None

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create the directory and its missing parents."""
        if self.is_dir(path):
            return
        parent = path.rstrip("/").rsplit("/", 1)[0]
        if parent and parent != path:
            self.mkdir(parent, mode)
        try:
            self.sftp().mkdir(path, mode)
        except OSError as exc:
            if not self.is_dir(path):
                raise SshError(f"cannot create {path}: {exc}") from None


def connect(
    address: str,
    port: int,
    user: str,
    private_key_pem: str,
    pinned_host_key_line: str,
    timeout: float = DEFAULT_TIMEOUT,
) -> SshSession:
    """An open session (use it as a context manager to close it)."""
    session = SshSession(address, port, user, private_key_pem, pinned_host_key_line, timeout)
    session.open()
    return session


def service_banner(address: str, port: int, *, timeout: float = 10.0) -> str:
    """The first line a service sends on connect (SMTP `220 ...`, IMAP `* OK ...`)."""
    sock = _open_socket(address, port, timeout)
    try:
        sock.settimeout(timeout)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in data and len(data) < 4096:
            if time.monotonic() > deadline:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    except OSError as exc:
        raise SshError(f"{address} port {port} sent no greeting: {exc}") from None
    finally:
        sock.close()
