"""A host's security policy: one validated value per enforce column of the thirteen controls. Pure.

`PolicyValues` holds what the renderer turns into Postfix, Dovecot and OpenDKIM configuration
(hosts.render). Every field has a secure default, bounds, and a help text (`FIELD_HELP`) saying
what it stops. `validate` never raises: it returns every problem as a `FieldError` naming the
field, so a form or the API can show them all at once. Anything that would smuggle extra
configuration into a rendered file (a newline, a comma or a space inside a domain, `=` in a
name, a host part in a network) is refused here rather than escaped later: the renderer only
ever writes values that passed `validate`.

The local blacklist is not a policy field but data (`BlacklistEntry`, owned by the blocklists
app); the policy only says whether it is enforced. Controls 5, 10 and 12 (SPF, MX, DMARC) are
monitor-only and have no field here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# --- bounds ----------------------------------------------------------------------------------------

MIB = 1024 * 1024
MESSAGE_SIZE_MIN = 1 * MIB
# Postfix's local(8) and virtual(8) refuse to deliver when message_size_limit exceeds
# mailbox_size_limit / virtual_mailbox_limit, both 51200000 by default: a larger limit would
# break local delivery on a host that never changed them.
MESSAGE_SIZE_MAX = 51_200_000
# A network in mynetworks may relay without authentication. Anything wider than these is an
# open relay in all but name (loopback excepted: 127.0.0.0/8 is one machine).
MYNETWORKS_MIN_PREFIX_V4 = 16
MYNETWORKS_MIN_PREFIX_V6 = 48
MAX_LIST = 50  # entries in any list field: enough for real use, bounded for hostile input
MAX_REASON = 200

# DNS names as the configs may carry them: ASCII labels, at least two, no trailing dot.
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")
_NETWORK_TEXT = re.compile(r"^[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?$")
_REASON = re.compile(r"^[\x20-\x7e]*$")


class ReverseDnsCheck(StrEnum):
    """How strictly a connecting client's reverse DNS is checked (control 3)."""

    NONE = "none"
    # reject_unknown_reverse_client_hostname: the address has no PTR record at all.
    REVERSE = "reverse"
    # reject_unknown_client_hostname: PTR present and forward-confirmed (FCrDNS).
    FORWARD_CONFIRMED = "forward_confirmed"


class TlsVersion(StrEnum):
    """The oldest TLS version accepted for IMAP/POP3 and for mandatory-TLS SMTP submission."""

    TLS_1_2 = "TLSv1.2"
    TLS_1_3 = "TLSv1.3"


class DnsblMode(StrEnum):
    """Where IP blocklists (control 13) are consulted."""

    # postscreen(8) in front of smtpd: weighted scores, zombies dropped before smtpd runs.
    POSTSCREEN = "postscreen"
    # reject_rbl_client in smtpd_client_restrictions: one listing rejects, no master.cf change.
    SMTPD = "smtpd"


@dataclass(frozen=True)
class BlacklistEntry:
    """One network of the local IP blacklist (control 2) and why it is there."""

    network: str
    reason: str = ""


@dataclass(frozen=True)
class DnsblSite:
    """An IP blocklist zone and its postscreen weight (negative weights allowlist)."""

    zone: str
    weight: int = 1


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: the field's name and a sentence for the admin."""

    field: str
    message: str


@dataclass(frozen=True)
class PolicyValues:
    """The enforce columns of the thirteen controls, with secure defaults.

    Construct it from untrusted input freely: nothing is checked until `validate`, and the
    renderer refuses a policy `validate` finds fault with.
    """

    # 1. maximum message size
    message_size_limit: int = 25 * MIB
    # 2. local IP blacklist (the entries are data, see BlacklistEntry)
    enforce_local_blacklist: bool = True
    # 3. reverse DNS and HELO
    reverse_dns: ReverseDnsCheck = ReverseDnsCheck.REVERSE
    helo_required: bool = True
    reject_invalid_helo_hostname: bool = True
    reject_non_fqdn_helo_hostname: bool = True
    reject_unknown_helo_hostname: bool = False
    # 4. TLS for IMAP/POP3
    imap_pop3_tls_required: bool = True
    tls_min_version: TlsVersion = TlsVersion.TLS_1_2
    # 6. SMTP authentication: the submission service, SASL through Dovecot, AUTH only after TLS
    submission_enabled: bool = True
    # 7. no open relay
    mynetworks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # 8. connection, rate and error limits (Postfix anvil, Dovecot)
    smtpd_client_connection_count_limit: int = 20
    smtpd_client_connection_rate_limit: int = 60
    smtpd_client_message_rate_limit: int = 100
    smtpd_client_recipient_rate_limit: int = 500
    smtpd_error_sleep_time: int = 1
    smtpd_soft_error_limit: int = 10
    smtpd_hard_error_limit: int = 20
    anvil_rate_time_unit: int = 60
    dovecot_mail_max_userip_connections: int = 10
    dovecot_login_process_limit: int = 100
    dovecot_auth_failure_delay: int = 2
    # 9. domain (RHS) blocklists
    rhsbl_client_sites: tuple[str, ...] = ()
    rhsbl_sender_sites: tuple[str, ...] = ()
    rhsbl_helo_sites: tuple[str, ...] = ()
    # 11. DKIM signing
    dkim_signing: bool = True
    # 13. IP blocklists
    dnsbl_mode: DnsblMode = DnsblMode.SMTPD
    dnsbl_sites: tuple[DnsblSite, ...] = ()
    dnsbl_threshold: int = 1


FIELD_HELP: dict[str, str] = {
    "message_size_limit": (
        "Largest message accepted, in bytes (1 MiB to 51200000, Postfix's default mailbox "
        "limit). Stops oversized messages from filling queues and mailboxes."
    ),
    "enforce_local_blacklist": (
        "Refuse clients whose address is on the organisation's local IP blacklist "
        "(check_client_access with a cidr: map). Stops known abusers before anything else runs."
    ),
    "reverse_dns": (
        "'reverse' refuses clients whose address has no PTR record "
        "(reject_unknown_reverse_client_hostname); 'forward_confirmed' also requires the name to "
        "resolve back to the address (reject_unknown_client_hostname). Stops bots on dynamic "
        "and unconfigured addresses. DNS failures are temporary refusals, never bounces."
    ),
    "helo_required": (
        "Clients must say HELO/EHLO before MAIL FROM (smtpd_helo_required). Stops the crudest "
        "spam engines."
    ),
    "reject_invalid_helo_hostname": (
        "Refuse HELO names that are not valid host names (reject_invalid_helo_hostname). Stops "
        "malformed and spoofed greetings."
    ),
    "reject_non_fqdn_helo_hostname": (
        "Refuse HELO names that are not fully qualified (reject_non_fqdn_helo_hostname). Stops "
        "bots greeting with a bare machine name. Authenticated users are exempt."
    ),
    "reject_unknown_helo_hostname": (
        "Refuse HELO names with no A or MX record (reject_unknown_helo_hostname). Stops more "
        "bots but also some misconfigured legitimate servers: off by default."
    ),
    "imap_pop3_tls_required": (
        "IMAP and POP3 logins only over TLS (Dovecot ssl = required; plaintext authentication "
        "never allowed). Stops passwords crossing the network in clear text."
    ),
    "tls_min_version": (
        "Oldest TLS version accepted for IMAP/POP3 and for SMTP submission (TLSv1.2 or "
        "TLSv1.3). Stops downgrade to broken protocol versions."
    ),
    "submission_enabled": (
        "The submission service on port 587: TLS mandatory, SASL authentication through "
        "Dovecot, AUTH offered only after STARTTLS (smtpd_tls_auth_only), every "
        "unauthenticated client refused. Stops password sniffing and unauthenticated sending."
    ),
    "mynetworks": (
        "Networks trusted to relay without authentication (CIDR, at most /16 for IPv4 and /48 "
        "for IPv6 unless loopback; 0.0.0.0/0 and ::/0 refused). Everything else must "
        "authenticate to relay (reject_unauth_destination). Stops the server being an open relay."
    ),
    "smtpd_client_connection_count_limit": (
        "Simultaneous connections one client address may hold (1-1000). Stops one host "
        "exhausting the SMTP server's processes."
    ),
    "smtpd_client_connection_rate_limit": (
        "Connections per client address per time unit (1-100000). Stops connection floods."
    ),
    "smtpd_client_message_rate_limit": (
        "Messages per client address per time unit (1-100000). Stops a compromised sender "
        "flooding out."
    ),
    "smtpd_client_recipient_rate_limit": (
        "Recipients per client address per time unit (1-100000). Stops address harvesting and "
        "mass mailing."
    ),
    "smtpd_error_sleep_time": (
        "Seconds the server waits before answering a client that has made errors (0-60). Slows "
        "down dictionary attacks."
    ),
    "smtpd_soft_error_limit": (
        "Errors after which every reply is delayed (1-1000). Slows down probing clients."
    ),
    "smtpd_hard_error_limit": (
        "Errors after which the client is disconnected (1-1000, at least the soft limit). Stops "
        "recipient guessing and brute force."
    ),
    "anvil_rate_time_unit": (
        "The time unit, in seconds, of every rate limit (10-3600). Sets the window that the "
        "rate limits count in."
    ),
    "dovecot_mail_max_userip_connections": (
        "IMAP/POP3 connections one user may hold from one address (1-1000). Stops one client "
        "exhausting the mail processes."
    ),
    "dovecot_login_process_limit": (
        "Most simultaneous IMAP and POP3 login processes (1-10000). Stops a login flood taking "
        "the machine's memory."
    ),
    "dovecot_auth_failure_delay": (
        "Seconds Dovecot waits before answering a failed login (0-60). Slows password guessing."
    ),
    "rhsbl_client_sites": (
        "Domain blocklists checked against the client's host name (reject_rhsbl_client). "
        "Stops mail from hosts under listed domains."
    ),
    "rhsbl_sender_sites": (
        "Domain blocklists checked against the envelope sender's domain (reject_rhsbl_sender). "
        "Stops mail from listed sender domains."
    ),
    "rhsbl_helo_sites": (
        "Domain blocklists checked against the HELO name (reject_rhsbl_helo). Stops bots "
        "greeting with listed names."
    ),
    "dkim_signing": (
        "Sign outgoing mail with the organisation's DKIM keys through OpenDKIM (one instance "
        "per algorithm, RSA and Ed25519). Stops receivers accepting forgeries of your domains "
        "(with DMARC)."
    ),
    "dnsbl_mode": (
        "'postscreen' scores clients before smtpd with weighted IP blocklists; 'smtpd' rejects "
        "any listed client with reject_rbl_client. Stops mail from known spam sources."
    ),
    "dnsbl_sites": (
        "IP blocklist zones with postscreen weights (-20 to 20, not 0; only positive weights in "
        "smtpd mode). Stops mail from listed addresses."
    ),
    "dnsbl_threshold": (
        "Postscreen score at which a client is refused (1-100). Sets how many listings block."
    ),
}

# The field groups, public for the model and serializer layers (form bounds, choices).
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "message_size_limit": (MESSAGE_SIZE_MIN, MESSAGE_SIZE_MAX),
    "smtpd_client_connection_count_limit": (1, 1000),
    "smtpd_client_connection_rate_limit": (1, 100_000),
    "smtpd_client_message_rate_limit": (1, 100_000),
    "smtpd_client_recipient_rate_limit": (1, 100_000),
    "smtpd_error_sleep_time": (0, 60),
    "smtpd_soft_error_limit": (1, 1000),
    "smtpd_hard_error_limit": (1, 1000),
    "anvil_rate_time_unit": (10, 3600),
    "dovecot_mail_max_userip_connections": (1, 1000),
    "dovecot_login_process_limit": (1, 10_000),
    "dovecot_auth_failure_delay": (0, 60),
    "dnsbl_threshold": (1, 100),
}
BOOL_FIELDS = (
    "enforce_local_blacklist",
    "helo_required",
    "reject_invalid_helo_hostname",
    "reject_non_fqdn_helo_hostname",
    "reject_unknown_helo_hostname",
    "imap_pop3_tls_required",
    "submission_enabled",
    "dkim_signing",
)
CHOICE_FIELDS: dict[str, type[StrEnum]] = {
    "reverse_dns": ReverseDnsCheck,
    "tls_min_version": TlsVersion,
    "dnsbl_mode": DnsblMode,
}
DOMAIN_LIST_FIELDS = ("rhsbl_client_sites", "rhsbl_sender_sites", "rhsbl_helo_sites")


def _show(value: object) -> str:
    """A value quoted for an error message, control characters visible, length bounded."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def domain_error(value: object) -> str | None:
    """Why `value` is not a DNS name the configs may carry, or None when it is one."""
    if not isinstance(value, str):
        return f"{_show(value)} is not a domain name."
    if not _DOMAIN.match(value):
        return (
            f"{_show(value)} is not a domain name: lower-case letters, digits and hyphens in "
            "two or more dot-separated labels, nothing else (no spaces, commas, '=' or newlines)."
        )
    return None


def parse_network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`value` as a network, or ValueError saying why not (host bits set are refused)."""
    if not isinstance(value, str) or not _NETWORK_TEXT.match(value):
        raise ValueError(f"{_show(value)} is not an IP address or network in CIDR notation.")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{_show(value)} is not an IP address or network in CIDR notation."
            ) from None
        raise ValueError(
            f"{value} has host bits set: did you mean {loose}? (mailsec does not guess.)"
        ) from None


# IPv6 prefixes that carry every IPv4 address in their last 32 bits (IPv4-mapped, NAT64): a
# /96 of these is all of IPv4, so their width is judged as the IPv4 part's.
_IPV4_EMBEDDING = (
    ipaddress.IPv6Network("::ffff:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
)


def _is_loopback(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return network.network_address.is_loopback and network.broadcast_address.is_loopback


def mynetworks_error(value: object) -> str | None:
    """Why one mynetworks entry is refused, or None. Too wide a network is an open relay."""
    try:
        network = parse_network(value)
    except ValueError as exc:
        return str(exc)
    if network.prefixlen == 0:
        return f"{network} is every address: trusting it to relay makes the server an open relay."
    if _is_loopback(network):
        return None
    limit = MYNETWORKS_MIN_PREFIX_V4 if network.version == 4 else MYNETWORKS_MIN_PREFIX_V6
    if isinstance(network, ipaddress.IPv6Network) and any(
        network.overlaps(embedding) for embedding in _IPV4_EMBEDDING
    ):
        limit = 96 + MYNETWORKS_MIN_PREFIX_V4
    if network.prefixlen < limit:
        return (
            f"{network} is wider than /{limit}: trusting that many addresses to relay without "
            "authentication is an open relay in all but name. Have those clients authenticate."
        )
    return None


def blacklist_errors(entries: object, *, field: str = "blacklist") -> list[FieldError]:
    """Problems with the local blacklist's entries: malformed networks, unsafe reasons."""
    if not isinstance(entries, tuple | list):
        return [FieldError(field, "The blacklist is a list of entries.")]
    errors = []
    for index, entry in enumerate(entries):
        where = f"{field}[{index}]"
        if not isinstance(entry, BlacklistEntry):
            errors.append(FieldError(where, "Not a blacklist entry."))
            continue
        try:
            network = parse_network(entry.network)
        except ValueError as exc:
            errors.append(FieldError(where, str(exc)))
        else:
            if network.prefixlen == 0:
                errors.append(FieldError(where, f"{network} would refuse every client."))
        reason = entry.reason
        if not isinstance(reason, str) or not _REASON.match(reason) or len(reason) > MAX_REASON:
            errors.append(
                FieldError(
                    where,
                    f"The reason {_show(reason)} must be at most {MAX_REASON} printable ASCII "
                    "characters on one line: it is sent in the SMTP reply.",
                )
            )
    return errors


def _list_errors(name: str, value: object) -> tuple[list[FieldError], list[Any]]:
    if not isinstance(value, tuple | list):
        return [FieldError(name, "Expected a list.")], []
    if len(value) > MAX_LIST:
        return [FieldError(name, f"At most {MAX_LIST} entries.")], []
    return [], list(value)


def validate(values: PolicyValues) -> list[FieldError]:
    """Every problem with `values`, in field order; an empty list when it may be rendered."""
    errors: list[FieldError] = []
    for name in BOOL_FIELDS:
        if not isinstance(getattr(values, name), bool):
            errors.append(FieldError(name, "Expected true or false."))
    for name, (low, high) in INT_BOUNDS.items():
        value = getattr(values, name)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(name, f"{_show(value)} is not a whole number."))
        elif not low <= value <= high:
            errors.append(FieldError(name, f"{value} is outside {low} to {high}."))
    for name, enum in CHOICE_FIELDS.items():
        value = getattr(values, name)
        allowed = [str(member) for member in enum]
        if not isinstance(value, str) or value not in allowed:
            errors.append(FieldError(name, f"{_show(value)} is not one of {', '.join(allowed)}."))

    hard, soft = values.smtpd_hard_error_limit, values.smtpd_soft_error_limit
    if isinstance(hard, int) and isinstance(soft, int) and hard < soft:
        errors.append(
            FieldError(
                "smtpd_hard_error_limit",
                f"The hard error limit ({hard}) is below the soft limit ({soft}): clients would "
                "be disconnected before they are slowed down.",
            )
        )

    problems, networks = _list_errors("mynetworks", values.mynetworks)
    errors += problems
    seen: set[object] = set()
    for entry in networks:
        message = mynetworks_error(entry)
        if message is not None:
            errors.append(FieldError("mynetworks", message))
        elif entry in seen:
            errors.append(FieldError("mynetworks", f"{entry} is listed twice."))
        seen.add(entry)

    for name in DOMAIN_LIST_FIELDS:
        problems, domains = _list_errors(name, getattr(values, name))
        errors += problems
        for domain in domains:
            message = domain_error(domain)
            if message is not None:
                errors.append(FieldError(name, message))
        if len(set(map(str, domains))) != len(domains):
            errors.append(FieldError(name, "A zone is listed twice."))

    problems, sites = _list_errors("dnsbl_sites", values.dnsbl_sites)
    errors += problems
    zones: list[str] = []
    for site in sites:
        if not isinstance(site, DnsblSite):
            errors.append(FieldError("dnsbl_sites", f"{_show(site)} is not a blocklist site."))
            continue
        message = domain_error(site.zone)
        if message is not None:
            errors.append(FieldError("dnsbl_sites", message))
        zones.append(str(site.zone))
        weight = site.weight
        if isinstance(weight, bool) or not isinstance(weight, int) or not -20 <= weight <= 20:
            errors.append(
                FieldError("dnsbl_sites", f"{site.zone}: the weight is a whole number -20 to 20.")
            )
        elif weight == 0:
            errors.append(FieldError("dnsbl_sites", f"{site.zone}: a weight of 0 does nothing."))
        elif weight < 0 and values.dnsbl_mode == DnsblMode.SMTPD:
            errors.append(
                FieldError(
                    "dnsbl_sites",
                    f"{site.zone}: negative (allowlist) weights need postscreen mode; "
                    "reject_rbl_client can only reject.",
                )
            )
    if len(set(zones)) != len(zones):
        errors.append(FieldError("dnsbl_sites", "A zone is listed twice."))
    return errors
