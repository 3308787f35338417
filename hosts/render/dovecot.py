"""The policy as a Dovecot snippet, `conf.d/99-mailsec.conf`, in 2.3 or 2.4 syntax. Pure.

Controls 4 (IMAP/POP3 only over TLS, no cleartext authentication, a minimum TLS version), 6
(the authentication socket Postfix's submission service asks) and 8 (per-user-and-address
connections, login processes, a delay after failed logins). The file is mailsec's alone: it
is rendered whole, and Dovecot reads it last of conf.d, so its settings win.

The two syntaxes differ where mailsec writes: 2.3 has `ssl_cert = <file` and
`disable_plaintext_auth`; 2.4 has `ssl_server_cert_file = file`, `auth_allow_cleartext` and
an explicit `type = auth` on the listener (2.3 infers the type from the listener's name).
"""

from __future__ import annotations

from hosts.policy import PolicyValues
from hosts.render.facts import HostFacts, dovecot_syntax
from hosts.render.postfix import SASL_PATH

SNIPPET = "conf.d/99-mailsec.conf"  # relative to the Dovecot config directory
HEADER = "# mailsec managed (do not edit; changes are overwritten)\n"


def render_dovecot(policy: PolicyValues, host: HostFacts) -> bytes:
    """The snippet for the syntax of the host's Dovecot version."""
    syntax = dovecot_syntax(host.dovecot_version)
    lines = [HEADER.rstrip("\n"), f"# Dovecot {syntax} syntax."]
    lines.append(f"ssl = {'required' if policy.imap_pop3_tls_required else 'yes'}")
    lines.append(f"ssl_min_protocol = {policy.tls_min_version}")
    if host.tls_cert_file is not None and host.tls_key_file is not None:
        if syntax == "2.3":
            lines += [f"ssl_cert = <{host.tls_cert_file}", f"ssl_key = <{host.tls_key_file}"]
        else:
            lines += [
                f"ssl_server_cert_file = {host.tls_cert_file}",
                f"ssl_server_key_file = {host.tls_key_file}",
            ]
    # Passwords never cross the network in clear, whatever ssl says.
    lines.append("disable_plaintext_auth = yes" if syntax == "2.3" else "auth_allow_cleartext = no")
    lines.append(f"auth_failure_delay = {policy.dovecot_auth_failure_delay} secs")
    lines.append(f"mail_max_userip_connections = {policy.dovecot_mail_max_userip_connections}")
    for service in ("imap-login", "pop3-login"):
        lines += [
            f"service {service} {{",
            f"  process_limit = {policy.dovecot_login_process_limit}",
            "}",
        ]
    if policy.submission_enabled:
        queue = host.postfix_queue_directory.rstrip("/")
        lines += [
            "service auth {",
            f"  unix_listener {queue}/{SASL_PATH} {{",
            *(["    type = auth"] if syntax == "2.4" else []),
            "    mode = 0660",
            f"    user = {host.postfix_user}",
            f"    group = {host.postfix_user}",
            "  }",
            "}",
        ]
    return ("\n".join(lines) + "\n").encode("ascii")
