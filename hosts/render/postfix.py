"""The policy as Postfix configuration: main.cf parameters and master.cf services. Pure.

main.cf gets a managed block of parameters (controls 1, 2, 3, 6, 7, 8, 9, 11, 13); master.cf a
managed block with the submission service (control 6) and, in postscreen mode, postscreen in
front of smtpd (control 13). hosts.render.managed keeps every other line of both files.

Restriction lists always start with the exemptions (`permit_mynetworks`,
`permit_sasl_authenticated`) so that the policy's checks never refuse the host's own users;
the local blacklist comes first of all, so a listed network is refused even from mynetworks.
smtpd_recipient_restrictions is left to the admin (policy services, greylisting): relay
control lives in smtpd_relay_restrictions, where Postfix 2.10+ keeps it.
"""

from __future__ import annotations

import ipaddress
import re

from hosts.policy import DnsblMode, PolicyValues, ReverseDnsCheck
from hosts.render.facts import HostFacts, parse_postfix_version
from hosts.render.managed import merge_block
from hosts.render.maps import CLIENT_BLACKLIST

SASL_PATH = "private/auth"  # relative to the queue directory; Dovecot's listener is created there
_PARAMETER = re.compile(rb"^([A-Za-z0-9_]+)[ \t\v\f\r]*=")
_SERVICE = re.compile(rb"^([^\s#]\S*)[ \t]+(\S+)")


def _tls_protocols(policy: PolicyValues, host: HostFacts) -> str:
    if parse_postfix_version(host.postfix_version)[:2] >= (3, 6):
        return f">={policy.tls_min_version}"
    excluded = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"]
    if policy.tls_min_version == "TLSv1.3":
        excluded.append("TLSv1.2")
    return ", ".join(f"!{name}" for name in excluded)


def _mynetworks(policy: PolicyValues) -> str:
    out = []
    for text in policy.mynetworks:
        network = ipaddress.ip_network(text)
        out.append(
            f"[{network.network_address}]/{network.prefixlen}"
            if network.version == 6
            else str(network)
        )
    return ", ".join(out)


def milters(host: HostFacts) -> list[str]:
    """The milters in Postfix's syntax: the host's own first, then OpenDKIM RSA and Ed25519."""
    address = host.opendkim_address
    if ipaddress.ip_address(address).version == 6:
        address = f"[{address}]"
    return [*host.extra_milters, *(f"inet:{address}:{port}" for port in host.opendkim_ports)]


def postscreen_enabled(policy: PolicyValues) -> bool:
    return policy.dnsbl_mode == DnsblMode.POSTSCREEN and bool(policy.dnsbl_sites)


def main_cf_parameters(policy: PolicyValues, host: HostFacts) -> dict[str, str]:
    """The parameters the managed block sets, in the order it writes them."""
    exempt = ["permit_mynetworks", "permit_sasl_authenticated"]
    params: dict[str, str] = {
        "myhostname": host.hostname,
        # 1. message size
        "message_size_limit": str(policy.message_size_limit),
        # 7. relay: only mynetworks and authenticated clients, to any destination
        "mynetworks": _mynetworks(policy),
        "smtpd_relay_restrictions": ", ".join([*exempt, "reject_unauth_destination"]),
    }

    # 2, 3, 9, 13: the client's address and names
    client: list[str] = []
    if policy.enforce_local_blacklist:
        client.append(f"check_client_access cidr:{host.postfix_config_dir}/{CLIENT_BLACKLIST}")
    client += exempt
    if policy.reverse_dns == ReverseDnsCheck.REVERSE:
        client.append("reject_unknown_reverse_client_hostname")
    elif policy.reverse_dns == ReverseDnsCheck.FORWARD_CONFIRMED:
        client.append("reject_unknown_client_hostname")
    if policy.dnsbl_mode == DnsblMode.SMTPD:
        client += [f"reject_rbl_client {site.zone}" for site in policy.dnsbl_sites]
    client += [f"reject_rhsbl_client {zone}" for zone in policy.rhsbl_client_sites]
    params["smtpd_client_restrictions"] = ", ".join(client)

    params["smtpd_helo_required"] = "yes" if policy.helo_required else "no"
    helo = list(exempt)
    if policy.reject_invalid_helo_hostname:
        helo.append("reject_invalid_helo_hostname")
    if policy.reject_non_fqdn_helo_hostname:
        helo.append("reject_non_fqdn_helo_hostname")
    if policy.reject_unknown_helo_hostname:
        helo.append("reject_unknown_helo_hostname")
    helo += [f"reject_rhsbl_helo {zone}" for zone in policy.rhsbl_helo_sites]
    params["smtpd_helo_restrictions"] = ", ".join(helo)
    if policy.rhsbl_sender_sites:
        params["smtpd_sender_restrictions"] = ", ".join(
            [*exempt, *(f"reject_rhsbl_sender {zone}" for zone in policy.rhsbl_sender_sites)]
        )

    if postscreen_enabled(policy):
        params["postscreen_access_list"] = "permit_mynetworks"
        params["postscreen_dnsbl_sites"] = ", ".join(
            f"{site.zone}*{site.weight}" for site in policy.dnsbl_sites
        )
        params["postscreen_dnsbl_threshold"] = str(policy.dnsbl_threshold)
        params["postscreen_dnsbl_action"] = "enforce"
        params["postscreen_greet_action"] = "enforce"

    # 4, 6: TLS. AUTH is never offered before STARTTLS, on any smtpd service.
    params["smtpd_tls_auth_only"] = "yes"
    params["smtpd_tls_mandatory_protocols"] = _tls_protocols(policy, host)
    if host.tls_cert_file is not None and host.tls_key_file is not None:
        params["smtpd_tls_cert_file"] = host.tls_cert_file
        params["smtpd_tls_key_file"] = host.tls_key_file

    # 8. anvil: per-client connection, rate and error limits (mynetworks is exempt by default)
    params |= {
        "smtpd_client_connection_count_limit": str(policy.smtpd_client_connection_count_limit),
        "smtpd_client_connection_rate_limit": str(policy.smtpd_client_connection_rate_limit),
        "smtpd_client_message_rate_limit": str(policy.smtpd_client_message_rate_limit),
        "smtpd_client_recipient_rate_limit": str(policy.smtpd_client_recipient_rate_limit),
        "smtpd_error_sleep_time": f"{policy.smtpd_error_sleep_time}s",
        "smtpd_soft_error_limit": str(policy.smtpd_soft_error_limit),
        "smtpd_hard_error_limit": str(policy.smtpd_hard_error_limit),
        "anvil_rate_time_unit": f"{policy.anvil_rate_time_unit}s",
    }

    # 11. DKIM: both OpenDKIM instances as milters; a milter that is down never loses mail.
    if policy.dkim_signing:
        params |= {
            "milter_default_action": "accept",
            "milter_protocol": "6",
            "smtpd_milters": ", ".join(milters(host)),
            "non_smtpd_milters": "$smtpd_milters",
        }
    return params


def _main_cf_key(line: bytes) -> str | None:
    match = _PARAMETER.match(line)
    return match.group(1).decode("ascii") if match else None


def render_main_cf(policy: PolicyValues, host: HostFacts, current: bytes) -> bytes:
    """The admin's main.cf with the managed block holding the policy's parameters."""
    params = main_cf_parameters(policy, host)
    body = [b"# Rendered by mailsec from the host's policy. Parameters defined above are\n"]
    body.append(b"# disabled with '#mailsec-overridden: ' while this block sets them.\n")
    body += [f"{name} = {value}\n".encode("ascii") for name, value in params.items()]
    return merge_block(current, body, managed=set(params), key_of=_main_cf_key, filename="main.cf")


def master_cf_services(policy: PolicyValues, host: HostFacts) -> list[tuple[str, str, list[str]]]:
    """(service, type, lines) for each service the managed block defines."""
    services: list[tuple[str, str, list[str]]] = []
    if postscreen_enabled(policy):
        services += [
            (host.smtp_service, "inet", [f"{host.smtp_service} inet n - - - 1 postscreen"]),
            ("smtpd", "pass", ["smtpd pass - - - - - smtpd"]),
            ("dnsblog", "unix", ["dnsblog unix - - - - 0 dnsblog"]),
            ("tlsproxy", "unix", ["tlsproxy unix - - - - 0 tlsproxy"]),
        ]
    if policy.submission_enabled:
        name = host.submission_service
        services.append(
            (
                name,
                "inet",
                [
                    f"{name} inet n - - - - smtpd",
                    "  -o syslog_name=postfix/submission",
                    "  -o smtpd_tls_security_level=encrypt",
                    "  -o smtpd_sasl_auth_enable=yes",
                    "  -o smtpd_sasl_type=dovecot",
                    f"  -o smtpd_sasl_path={SASL_PATH}",
                    "  -o smtpd_sasl_security_options=noanonymous",
                    "  -o smtpd_tls_auth_only=yes",
                    "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject",
                    "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
                    "  -o milter_macro_daemon_name=ORIGINATING",
                ],
            )
        )
    return services


def _master_cf_key(line: bytes) -> tuple[str, str] | None:
    match = _SERVICE.match(line)
    if match is None:
        return None
    return match.group(1).decode("ascii", "replace"), match.group(2).decode("ascii", "replace")


def render_master_cf(policy: PolicyValues, host: HostFacts, current: bytes) -> bytes:
    """The admin's master.cf with the managed block holding the policy's services."""
    services = master_cf_services(policy, host)
    body = [b"# Rendered by mailsec from the host's policy.\n"]
    for _name, _type, lines in services:
        body += [f"{line}\n".encode("ascii") for line in lines]
    return merge_block(
        current,
        body,
        managed={(name, kind) for name, kind, _ in services},
        key_of=_master_cf_key,
        filename="master.cf",
    )
