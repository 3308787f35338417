"""DKIM signing (control 11): two OpenDKIM instances' configuration, tables and keys. Pure.

dns_records.opendkim renders the key and signing tables and the private keys, split per
algorithm because one OpenDKIM 2.11 instance signs with one algorithm only. This module adds
each instance's own configuration file (`mailsec-rsa.conf`, `mailsec-ed25519.conf`: mode,
socket, pid file, user, canonicalization) around `instance_settings`, and places every file
under the host's OpenDKIM directory. Postfix reaches the instances through the milter wiring
in hosts.render.postfix. Private keys are mode 0600 and marked secret, so a diff never shows
them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from dns_records.dkim import DkimAlgorithm
from dns_records.opendkim import PRIVATE_KEY_MODE, instance_settings, render_opendkim
from hosts.render.facts import HostFacts

CONF_MODE = 0o644
INTERNAL_HOSTS = "mailsec-internal-hosts"


@dataclass(frozen=True)
class OpendkimFile:
    """One file under the OpenDKIM directory: absolute path, bytes, mode, and whether secret."""

    path: str
    content: bytes
    mode: int
    secret: bool


def conf_name(algorithm: DkimAlgorithm) -> str:
    return f"mailsec-{algorithm}.conf"


def render_instance_conf(host: HostFacts, algorithm: DkimAlgorithm) -> bytes:
    """One instance's opendkim.conf: signing only, on its loopback port, its own tables.

    OpenDKIM signs for clients that authenticated and for `InternalHosts`, which mailsec sets
    to the policy's mynetworks: the hosts trusted to relay are the ones whose mail is signed.
    """
    config_dir = host.opendkim_config_dir.rstrip("/")
    port = host.opendkim_ports[0 if algorithm is DkimAlgorithm.RSA else 1]
    address = host.opendkim_address
    if ipaddress.ip_address(address).version == 6:
        address = f"[{address}]"
    run_dir = host.opendkim_run_dir.rstrip("/")
    text = (
        "# mailsec managed (do not edit; changes are overwritten)\n"
        "Mode s\n"
        "Syslog yes\n"
        "UMask 007\n"
        f"Socket inet:{port}@{address}\n"
        f"PidFile {run_dir}/mailsec-{algorithm}.pid\n"
        f"UserID {host.opendkim_user}\n"
        "Canonicalization relaxed/simple\n"
        "OversignHeaders From\n"
        f"InternalHosts file:{config_dir}/{INTERNAL_HOSTS}\n"
        + instance_settings(str(algorithm), config_dir=config_dir)
    )
    return text.encode("ascii")


def render_internal_hosts(mynetworks: Sequence[str]) -> bytes:
    """OpenDKIM's InternalHosts data set: one network per line, IPv6 in lower case."""
    networks = [str(ipaddress.ip_network(text)) for text in mynetworks]
    return "".join(f"{network}\n" for network in networks).encode("ascii")


def render_opendkim_files(host: HostFacts, mynetworks: Sequence[str]) -> list[OpendkimFile]:
    """Both instances' configuration and internal hosts, then their tables, then the keys."""
    config_dir = host.opendkim_config_dir.rstrip("/")
    files = [
        OpendkimFile(
            f"{config_dir}/{conf_name(algorithm)}",
            render_instance_conf(host, algorithm),
            CONF_MODE,
            secret=False,
        )
        for algorithm in (DkimAlgorithm.RSA, DkimAlgorithm.ED25519)
    ]
    files.append(
        OpendkimFile(
            f"{config_dir}/{INTERNAL_HOSTS}",
            render_internal_hosts(mynetworks),
            CONF_MODE,
            secret=False,
        )
    )
    for rendered in render_opendkim(host.dkim_keys, key_dir=f"{config_dir}/keys"):
        files.append(
            OpendkimFile(
                f"{config_dir}/{rendered.path}",
                rendered.content,
                rendered.mode,
                secret=rendered.mode == PRIVATE_KEY_MODE,
            )
        )
    return files
