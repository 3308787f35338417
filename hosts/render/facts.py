"""What the renderer knows about one managed host, its validation, and version parsing. Pure."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dns_records.opendkim import SigningKey, render_opendkim
from hosts.policy import BlacklistEntry, FieldError, blacklist_errors, domain_error

_PATH = re.compile(r"^/(?:[A-Za-z0-9._+-]+/?)*$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# A master.cf service name: a name or port, optionally after an address (`127.0.0.1:2525`).
_SERVICE = re.compile(r"^(?:[0-9.]+:|\[[0-9A-Fa-f:.]+\]:)?[A-Za-z0-9_-]{1,64}$")
_MILTER = re.compile(
    r"^(?:inet:[A-Za-z0-9.-]+:[0-9]{1,5}|inet:\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}|unix:/[A-Za-z0-9._/-]+)$"
)
_DOVECOT_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[\s(].*)?$", re.DOTALL)
_POSTFIX_VERSION = re.compile(r"^\s*(?:mail_version\s*=\s*)?(\d+)\.(\d+)(?:\.(\d+))?\s*$")


@dataclass(frozen=True)
class HostFacts:
    """One host as the renderer needs it. Directories are the host's, absolute.

    `postfix_version` and `dovecot_version` are what the host reports (`postconf -h
    mail_version`, `dovecot --version`); Dovecot 2.3 and 2.4 take different syntax.
    `smtp_service` and `submission_service` are master.cf service names (a test instance binds
    `127.0.0.61:2525` where a production host has `smtp`). OpenDKIM instances listen on
    `opendkim_address`, RSA on the first port and Ed25519 on the second.
    """

    name: str
    hostname: str
    addresses: tuple[str, ...] = ()
    postfix_version: str = "3.7.11"
    dovecot_version: str = "2.3.19"
    domains: tuple[str, ...] = ()
    dkim_keys: tuple[SigningKey, ...] = ()
    blacklist: tuple[BlacklistEntry, ...] = ()
    postfix_config_dir: str = "/etc/postfix"
    dovecot_config_dir: str = "/etc/dovecot"
    opendkim_config_dir: str = "/etc/opendkim"
    postfix_queue_directory: str = "/var/spool/postfix"
    postfix_user: str = "postfix"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    smtp_service: str = "smtp"
    submission_service: str = "submission"
    opendkim_user: str = "opendkim"
    opendkim_run_dir: str = "/run/opendkim"
    opendkim_address: str = "127.0.0.1"
    opendkim_ports: tuple[int, int] = (8891, 8892)
    extra_milters: tuple[str, ...] = ()


def parse_dovecot_version(text: str) -> tuple[int, ...]:
    """`dovecot --version` output (`2.3.19.1 (9b53102964)`, `2.4.1-4 (7d8c0e5759)`) as numbers.

    ValueError when it is not a version.
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = _DOVECOT_VERSION.match(first.replace("-", " ", 1))
    if match is None:
        raise ValueError(f"{text[:60]!r} is not Dovecot's version output.")
    return tuple(int(part) for part in match.groups() if part is not None)


def dovecot_syntax(version: str) -> str:
    """Which configuration syntax ("2.3" or "2.4") the version reads; older ones are refused."""
    numbers = parse_dovecot_version(version)
    if numbers[:2] == (2, 3):
        return "2.3"
    if numbers[:2] >= (2, 4):
        return "2.4"
    raise ValueError(
        f"Dovecot {'.'.join(map(str, numbers))} is too old: mailsec needs 2.3 or later."
    )


def parse_postfix_version(text: str) -> tuple[int, ...]:
    """`postconf -h mail_version` or `postconf mail_version` output as numbers."""
    match = _POSTFIX_VERSION.match(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not Postfix's mail_version.")
    return tuple(int(part) for part in match.groups() if part is not None)


def _path_error(field: str, value: object) -> list[FieldError]:
    if (
        not isinstance(value, str)
        or not _PATH.match(value)
        or any(part in {".", ".."} for part in value.split("/"))
    ):
        return [
            FieldError(
                field, f"{value!r} is not an absolute path of plain names (no '..', spaces)."
            )
        ]
    return []


def validate_host(host: HostFacts) -> list[FieldError]:
    """Every problem with the host's facts; values reach config files only after this passes."""
    errors: list[FieldError] = []
    message = domain_error(host.hostname)
    if message is not None:
        errors.append(FieldError("hostname", message))
    for address in host.addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            errors.append(FieldError("addresses", f"{address!r} is not an IP address."))
    for domain in host.domains:
        message = domain_error(domain)
        if message is not None:
            errors.append(FieldError("domains", message))
    try:
        parse_postfix_version(host.postfix_version)
    except ValueError as exc:
        errors.append(FieldError("postfix_version", str(exc)))
    try:
        dovecot_syntax(host.dovecot_version)
    except ValueError as exc:
        errors.append(FieldError("dovecot_version", str(exc)))
    for field in (
        "postfix_config_dir",
        "dovecot_config_dir",
        "opendkim_config_dir",
        "postfix_queue_directory",
        "opendkim_run_dir",
    ):
        errors += _path_error(field, getattr(host, field))
    for field in ("tls_cert_file", "tls_key_file"):
        if getattr(host, field) is not None:
            errors += _path_error(field, getattr(host, field))
    if (host.tls_cert_file is None) != (host.tls_key_file is None):
        errors.append(FieldError("tls_key_file", "A certificate and its key come together."))
    for field in ("postfix_user", "opendkim_user"):
        if not isinstance(getattr(host, field), str) or not _USER.match(getattr(host, field)):
            errors.append(FieldError(field, f"{getattr(host, field)!r} is not a user name."))
    for field in ("smtp_service", "submission_service"):
        value = getattr(host, field)
        if not isinstance(value, str) or not _SERVICE.match(value):
            errors.append(FieldError(field, f"{value!r} is not a master.cf service name."))
    if host.smtp_service == host.submission_service:
        errors.append(FieldError("submission_service", "SMTP and submission need their own names."))
    try:
        ipaddress.ip_address(host.opendkim_address)
    except ValueError:
        errors.append(
            FieldError("opendkim_address", f"{host.opendkim_address!r} is not an IP address.")
        )
    ports = host.opendkim_ports
    if (
        len(ports) != 2
        or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535 for p in ports)
        or ports[0] == ports[1]
    ):
        errors.append(FieldError("opendkim_ports", "Two different TCP ports, 1 to 65535."))
    for milter in host.extra_milters:
        if not isinstance(milter, str) or not _MILTER.match(milter):
            errors.append(
                FieldError("extra_milters", f"{milter!r} is not inet:HOST:PORT or unix:/PATH.")
            )
    served = set(host.domains)
    try:
        # The same checks the files get: DNS-name domains and selectors, known algorithms,
        # no selector twice for a domain.
        render_opendkim(host.dkim_keys)
    except ValueError as exc:
        errors.append(FieldError("dkim_keys", str(exc)))
    for key in host.dkim_keys:
        if not isinstance(key.private_pem, bytes) or not key.private_pem.startswith(b"-----BEGIN "):
            errors.append(FieldError("dkim_keys", f"{key.selector}: the private key is not PEM."))
        if key.domain not in served:
            errors.append(
                FieldError(
                    "dkim_keys", f"{key.domain}: a key for a domain the host does not serve."
                )
            )
    errors += blacklist_errors(host.blacklist)
    return errors
