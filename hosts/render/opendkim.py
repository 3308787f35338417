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
from dataclasses import dataclass

from dns_records.dkim import DkimAlgorithm
from dns_records.opendkim import PRIVATE_KEY_MODE, instance_settings, render_opendkim
from hosts.render.facts import HostFacts

CONF_MODE = 0o644


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
    """One instance's opendkim.conf: signing only, on its loopback port, its own tables."""
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
        "OversignHeaders From\n" + instance_settings(str(algorithm), config_dir=config_dir)
    )
    return text.encode("ascii")


def render_opendkim_files(host: HostFacts) -> list[OpendkimFile]:
    """Both instances' configuration, then their tables, then the keys (sorted)."""
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
