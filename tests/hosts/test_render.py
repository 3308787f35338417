"""Rendering a policy for a host: the managed blocks, the admin's lines kept byte for byte,
idempotence, the maps, the Dovecot snippet per version, OpenDKIM, and the diff view.

The real Postfix, Dovecot and OpenDKIM read these files in test_render_validates.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dns_records.opendkim import SigningKey
from hosts.policy import (
    BlacklistEntry,
    DnsblMode,
    DnsblSite,
    PolicyValues,
    ReverseDnsCheck,
    TlsVersion,
)
from hosts.render import (
    HostFacts,
    RenderError,
    dovecot_syntax,
    parse_dovecot_version,
    parse_postfix_version,
    render_host,
)
from hosts.render.diff import FileStatus, diff_files
from hosts.render.managed import BEGIN, END, OVERRIDE_MARK
from hosts.render.maps import render_client_blacklist

MAIN = "/etc/postfix/main.cf"
MASTER = "/etc/postfix/master.cf"
CIDR = "/etc/postfix/mailsec/client_blacklist.cidr"
SNIPPET = "/etc/dovecot/conf.d/99-mailsec.conf"

ADMIN_MAIN = (
    b"# The admin's own comment, with trailing spaces   \n"
    b"smtpd_banner = $myhostname ESMTP\n"
    b"alias_maps = hash:/etc/aliases,\n"
    b"    hash:/etc/postfix/more_aliases\n"
    b"\n"
    b"relayhost =\r\n"  # a CRLF line stays CRLF
    b"# caf\xe9 (latin-1, not UTF-8)\n"
    b"biff = no"  # no newline at the end
)
ADMIN_MASTER = (
    b"smtp      inet  n       -       y       -       -       smtpd\n"
    b"pickup    unix  n       -       y       60      1       pickup\n"
    b"#submission inet n       -       y       -       -       smtpd\n"
    b"#  -o syslog_name=postfix/submission\n"
)


def key(domain: str = "example.org", selector: str = "r1", algorithm: str = "rsa") -> SigningKey:
    pem = f"-----BEGIN PRIVATE KEY-----\n{algorithm} {selector}\n-----END PRIVATE KEY-----\n"
    return SigningKey(domain, selector, algorithm, pem.encode())


def host(**changes) -> HostFacts:
    base = HostFacts(
        name="mx1",
        hostname="mx1.example.org",
        addresses=("192.0.2.25",),
        domains=("example.org",),
        dkim_keys=(key(), key(selector="e1", algorithm="ed25519")),
        blacklist=(BlacklistEntry("198.51.100.0/24", "Spam run"),),
    )
    return dataclasses.replace(base, **changes)


def render(policy: PolicyValues | None = None, facts: HostFacts | None = None, current=None):
    current = {MAIN: ADMIN_MAIN, MASTER: ADMIN_MASTER} if current is None else current
    return render_host(policy or PolicyValues(), facts or host(), current)


def managed_lines(content: bytes) -> list[bytes]:
    lines = content.split(b"\n")
    start, end = lines.index(BEGIN), lines.index(END)
    return lines[start + 1 : end]


def parameters(content: bytes) -> dict[str, str]:
    out = {}
    for line in managed_lines(content):
        if line and not line.startswith(b"#"):
            name, _, value = line.decode().partition(" = ")
            out[name] = value
    return out


# --- output shape ---------------------------------------------------------------------------------


def test_the_files_come_in_a_fixed_order_with_their_modes():
    rendered = render()
    assert [(f.path, f.mode, f.secret) for f in rendered] == [
        (MAIN, 0o644, False),
        (MASTER, 0o644, False),
        (CIDR, 0o644, False),
        (SNIPPET, 0o644, False),
        ("/etc/opendkim/mailsec-rsa.conf", 0o644, False),
        ("/etc/opendkim/mailsec-ed25519.conf", 0o644, False),
        ("/etc/opendkim/mailsec-internal-hosts", 0o644, False),
        ("/etc/opendkim/KeyTable", 0o644, False),
        ("/etc/opendkim/SigningTable", 0o644, False),
        ("/etc/opendkim/ed25519/KeyTable", 0o644, False),
        ("/etc/opendkim/ed25519/SigningTable", 0o644, False),
        ("/etc/opendkim/keys/example.org/e1.private", 0o600, True),
        ("/etc/opendkim/keys/example.org/r1.private", 0o600, True),
    ]


def test_what_mailsec_writes_has_lf_endings_and_a_trailing_newline():
    for file in render(current={}):
        if file.content:
            assert file.content.endswith(b"\n"), file.path
            assert b"\r" not in file.content, file.path


def test_rendering_is_deterministic():
    assert render() == render()
    keys = host().dkim_keys
    assert render(facts=host(dkim_keys=keys[::-1])) == render(facts=host(dkim_keys=keys))


def test_rendering_over_the_output_gives_the_output_again():
    first = render()
    second = render_host(PolicyValues(), host(), first.contents())
    assert second == first
    assert render_host(PolicyValues(), host(), second.contents()) == first


def test_rendering_over_the_output_after_a_policy_change_equals_rendering_fresh():
    changed = PolicyValues(message_size_limit=10 * 1024 * 1024, dkim_signing=False)
    assert render(changed, current=render().contents()) == render(changed)


# --- main.cf ------------------------------------------------------------------------------------


def test_the_admins_main_cf_is_kept_byte_for_byte_before_the_block():
    content = render().by_path()[MAIN].content
    # The only change to the admin's bytes: the newline their last line lacked.
    assert content.startswith(ADMIN_MAIN + b"\n" + BEGIN + b"\n")
    assert content.endswith(END + b"\n")


def test_an_empty_or_missing_main_cf_gets_just_the_block():
    content = render(current={}).by_path()[MAIN].content
    assert content.startswith(BEGIN + b"\n")


def test_the_block_sets_the_policys_values():
    policy = PolicyValues(
        message_size_limit=20_000_000,
        mynetworks=("127.0.0.0/8", "192.168.10.0/24", "2001:db8:1::/48"),
        smtpd_client_connection_count_limit=7,
        smtpd_client_connection_rate_limit=31,
        smtpd_client_message_rate_limit=41,
        smtpd_client_recipient_rate_limit=51,
        smtpd_error_sleep_time=3,
        smtpd_soft_error_limit=4,
        smtpd_hard_error_limit=9,
        anvil_rate_time_unit=120,
        tls_min_version=TlsVersion.TLS_1_3,
    )
    params = parameters(render(policy).by_path()[MAIN].content)
    assert params["myhostname"] == "mx1.example.org"
    assert params["message_size_limit"] == "20000000"
    assert params["mynetworks"] == "127.0.0.0/8, 192.168.10.0/24, [2001:db8:1::]/48"
    assert params["smtpd_relay_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    )
    assert params["smtpd_client_connection_count_limit"] == "7"
    assert params["smtpd_client_connection_rate_limit"] == "31"
    assert params["smtpd_client_message_rate_limit"] == "41"
    assert params["smtpd_client_recipient_rate_limit"] == "51"
    assert params["smtpd_error_sleep_time"] == "3s"
    assert params["smtpd_soft_error_limit"] == "4"
    assert params["smtpd_hard_error_limit"] == "9"
    assert params["anvil_rate_time_unit"] == "120s"
    assert params["smtpd_tls_auth_only"] == "yes"
    assert params["smtpd_tls_mandatory_protocols"] == ">=TLSv1.3"


def test_client_restrictions_put_the_blacklist_first_then_the_exemptions_then_the_checks():
    policy = PolicyValues(
        dnsbl_sites=(DnsblSite("zen.example.net"),), rhsbl_client_sites=("dbl.example.net",)
    )
    params = parameters(render(policy).by_path()[MAIN].content)
    assert params["smtpd_client_restrictions"] == (
        "check_client_access cidr:/etc/postfix/mailsec/client_blacklist.cidr, "
        "permit_mynetworks, permit_sasl_authenticated, reject_unknown_reverse_client_hostname, "
        "reject_rbl_client zen.example.net, reject_rhsbl_client dbl.example.net"
    )


def test_forward_confirmed_reverse_dns_and_no_blacklist():
    policy = PolicyValues(
        reverse_dns=ReverseDnsCheck.FORWARD_CONFIRMED, enforce_local_blacklist=False
    )
    params = parameters(render(policy).by_path()[MAIN].content)
    assert params["smtpd_client_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_unknown_client_hostname"
    )
    assert render(policy).by_path()[CIDR].content.count(b"\n") == 1  # the header alone


def test_helo_restrictions_follow_the_policy():
    policy = PolicyValues(
        helo_required=False,
        reject_invalid_helo_hostname=False,
        reject_unknown_helo_hostname=True,
        rhsbl_helo_sites=("dbl.example.net",),
    )
    params = parameters(render(policy).by_path()[MAIN].content)
    assert params["smtpd_helo_required"] == "no"
    assert params["smtpd_helo_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_non_fqdn_helo_hostname, "
        "reject_unknown_helo_hostname, reject_rhsbl_helo dbl.example.net"
    )


def test_sender_restrictions_are_managed_only_with_sender_blocklists():
    assert "smtpd_sender_restrictions" not in parameters(render().by_path()[MAIN].content)
    policy = PolicyValues(rhsbl_sender_sites=("dbl.example.net", "multi.surbl.example"))
    assert parameters(render(policy).by_path()[MAIN].content)["smtpd_sender_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_rhsbl_sender dbl.example.net, "
        "reject_rhsbl_sender multi.surbl.example"
    )


def test_postscreen_mode_weighs_the_sites_instead_of_rejecting_in_smtpd():
    policy = PolicyValues(
        dnsbl_mode=DnsblMode.POSTSCREEN,
        dnsbl_sites=(DnsblSite("zen.example.net", 3), DnsblSite("list.dnswl.example", -5)),
        dnsbl_threshold=3,
    )
    params = parameters(render(policy).by_path()[MAIN].content)
    assert params["postscreen_dnsbl_sites"] == "zen.example.net*3, list.dnswl.example*-5"
    assert params["postscreen_dnsbl_threshold"] == "3"
    assert params["postscreen_dnsbl_action"] == "enforce"
    assert "reject_rbl_client" not in params["smtpd_client_restrictions"]


def test_dkim_signing_wires_both_opendkim_instances_after_the_hosts_own_milters():
    facts = host(extra_milters=("inet:localhost:11332",), opendkim_ports=(12301, 12302))
    params = parameters(render(facts=facts).by_path()[MAIN].content)
    assert params["smtpd_milters"] == (
        "inet:localhost:11332, inet:127.0.0.1:12301, inet:127.0.0.1:12302"
    )
    assert params["non_smtpd_milters"] == "$smtpd_milters"
    assert params["milter_default_action"] == "accept"


def test_without_dkim_signing_there_is_no_milter_wiring_and_no_opendkim_file():
    rendered = render(PolicyValues(dkim_signing=False))
    assert "smtpd_milters" not in parameters(rendered.by_path()[MAIN].content)
    assert not [f for f in rendered if f.path.startswith("/etc/opendkim")]


def test_a_certificate_given_for_the_host_is_used_by_postfix_and_dovecot():
    facts = host(tls_cert_file="/etc/ssl/mx1.pem", tls_key_file="/etc/ssl/private/mx1.key")
    rendered = render(facts=facts).by_path()
    params = parameters(rendered[MAIN].content)
    assert params["smtpd_tls_cert_file"] == "/etc/ssl/mx1.pem"
    assert params["smtpd_tls_key_file"] == "/etc/ssl/private/mx1.key"
    assert b"ssl_cert = </etc/ssl/mx1.pem\n" in rendered[SNIPPET].content


def test_postfix_before_3_6_gets_the_exclusion_form_of_tls_protocols():
    policy = PolicyValues(tls_min_version=TlsVersion.TLS_1_3)
    params = parameters(render(policy, host(postfix_version="3.5.18")).by_path()[MAIN].content)
    assert params["smtpd_tls_mandatory_protocols"] == "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.2"


def test_a_parameter_the_admin_set_is_disabled_with_its_continuation_lines():
    admin = (
        b"message_size_limit = 5000\n"
        b"mynetworks = 10.0.0.0/8,\n"
        b"\t192.168.0.0/16\n"
        b"smtpd_banner = kept\n"
    )
    content = render(current={MAIN: admin}).by_path()[MAIN].content
    assert content.startswith(
        OVERRIDE_MARK + b"message_size_limit = 5000\n"
        + OVERRIDE_MARK + b"mynetworks = 10.0.0.0/8,\n"
        + OVERRIDE_MARK + b"\t192.168.0.0/16\n"
        + b"smtpd_banner = kept\n"
    )  # fmt: skip


def test_comment_and_blank_lines_inside_a_disabled_entry_are_disabled_with_it():
    """Postfix continues `a = b,` over comments and blank lines to the next indented line, so
    the whole run is one entry: leaving `  172.16.0.0/12` would continue `biff = no`."""
    admin = b"biff = no\nmynetworks = 10.0.0.0/8,\n# note\n\n    172.16.0.0/12\n# after\n"
    content = render(current={MAIN: admin}).by_path()[MAIN].content
    assert content.startswith(
        b"biff = no\n"
        + OVERRIDE_MARK + b"mynetworks = 10.0.0.0/8,\n"
        + OVERRIDE_MARK + b"# note\n"
        + OVERRIDE_MARK + b"\n"
        + OVERRIDE_MARK + b"    172.16.0.0/12\n"
        + b"# after\n"
    )  # fmt: skip
    restored = render(PolicyValues(), current={MAIN: content})
    assert restored == render(PolicyValues(), current={MAIN: admin})


def test_a_parameter_no_longer_managed_gets_the_admins_line_back_exactly():
    admin = b"smtpd_milters = unix:/run/rspamd.sock,\r\n  inet:127.0.0.1:8893\r\nbiff = no\n"
    signing = render(current={MAIN: admin}).by_path()[MAIN].content
    assert OVERRIDE_MARK + b"smtpd_milters = unix:/run/rspamd.sock,\r\n" in signing
    not_signing = render(PolicyValues(dkim_signing=False), current={MAIN: signing})
    assert not_signing.by_path()[MAIN].content.startswith(admin + BEGIN)


def test_a_block_in_the_middle_stays_there_and_the_lines_after_it_are_kept():
    first = render(current={MAIN: b"biff = no\n"}).by_path()[MAIN].content
    with_tail = first + b"# added later by the admin\ninet_protocols = ipv4\n"
    again = render(current={MAIN: with_tail}).by_path()[MAIN].content
    assert again == with_tail


def test_a_hand_edit_inside_the_block_is_overwritten():
    first = render().by_path()[MAIN].content
    edited = first.replace(b"message_size_limit = 26214400", b"message_size_limit = 1")
    assert render(current={MAIN: edited, MASTER: ADMIN_MASTER}).by_path()[MAIN].content == first


@pytest.mark.parametrize(
    "damaged",
    [
        BEGIN + b"\nbiff = no\n",
        b"biff = no\n" + END + b"\n",
        END + b"\n" + BEGIN + b"\n",
        BEGIN + b"\n" + END + b"\n" + BEGIN + b"\n" + END + b"\n",
    ],
)
def test_damaged_markers_are_refused_rather_than_guessed(damaged):
    with pytest.raises(RenderError, match="markers are damaged") as caught:
        render(current={MAIN: damaged})
    assert caught.value.errors[0].field == "current_files"


def test_current_files_must_be_bytes():
    with pytest.raises(RenderError, match="expected the file's bytes"):
        render(current={MAIN: "biff = no\n"})


def test_a_marker_like_line_with_other_text_is_the_admins():
    admin = BEGIN + b" (copied into a note)\n"
    assert render(current={MAIN: admin}).by_path()[MAIN].content.startswith(admin + BEGIN)


# --- master.cf ----------------------------------------------------------------------------------


def test_master_cf_gets_the_submission_service_and_keeps_everything_else():
    content = render().by_path()[MASTER].content
    assert content.startswith(ADMIN_MASTER + BEGIN + b"\n")
    block = b"\n".join(managed_lines(content))
    assert b"submission inet n - - - - smtpd\n" in block
    for option in (
        b"smtpd_tls_security_level=encrypt",
        b"smtpd_sasl_auth_enable=yes",
        b"smtpd_sasl_type=dovecot",
        b"smtpd_sasl_path=private/auth",
        b"smtpd_tls_auth_only=yes",
        b"smtpd_client_restrictions=permit_sasl_authenticated,reject",
    ):
        assert b"  -o " + option + b"\n" in block


def test_an_active_submission_service_of_the_admin_is_disabled_with_its_options():
    admin = (
        b"submission inet n - y - - smtpd\n"
        b"  -o smtpd_tls_security_level=may\n"
        b"pickup    unix  n       -       y       60      1       pickup\n"
    )
    content = render(current={MASTER: admin}).by_path()[MASTER].content
    assert content.startswith(
        OVERRIDE_MARK + b"submission inet n - y - - smtpd\n"
        + OVERRIDE_MARK + b"  -o smtpd_tls_security_level=may\n"
        + b"pickup    unix  n       -       y       60      1       pickup\n"
    )  # fmt: skip
    restored = render(PolicyValues(submission_enabled=False), current={MASTER: content})
    assert restored.by_path()[MASTER].content.startswith(admin + BEGIN)


def test_postscreen_replaces_the_smtp_listener_and_switching_back_restores_it():
    policy = PolicyValues(dnsbl_mode=DnsblMode.POSTSCREEN, dnsbl_sites=(DnsblSite("z.example"),))
    content = render(policy).by_path()[MASTER].content
    assert content.startswith(OVERRIDE_MARK + ADMIN_MASTER.split(b"\n")[0] + b"\n")
    block = managed_lines(content)
    assert b"smtp inet n - - - 1 postscreen" in block
    assert b"smtpd pass - - - - - smtpd" in block
    back = render(current={MAIN: ADMIN_MAIN, MASTER: content}).by_path()[MASTER].content
    assert back == render().by_path()[MASTER].content


def test_the_submission_service_name_can_carry_an_address():
    facts = host(submission_service="127.0.0.61:5870", smtp_service="127.0.0.61:2525")
    content = render(facts=facts).by_path()[MASTER].content
    assert b"127.0.0.61:5870 inet n - - - - smtpd\n" in content


# --- the blacklist map --------------------------------------------------------------------------


def test_the_blacklist_map_lists_the_most_specific_networks_first():
    entries = [
        BlacklistEntry("198.51.100.0/24", "the whole range"),
        BlacklistEntry("198.51.100.7", "this one"),
        BlacklistEntry("2001:db8::/32", ""),
        BlacklistEntry("192.0.2.0/24", "  extra   spaces  "),
    ]
    assert render_client_blacklist(entries).split(b"\n")[1:] == [
        b"198.51.100.7/32 REJECT this one",
        b"192.0.2.0/24 REJECT extra spaces",
        b"198.51.100.0/24 REJECT the whole range",
        b"[2001:db8::]/32 REJECT Blocked by local policy",
        b"",
    ]


def test_the_order_of_blacklist_entries_does_not_change_the_map():
    entries = [BlacklistEntry("192.0.2.0/24", "b"), BlacklistEntry("192.0.2.0/24", "a")]
    assert render_client_blacklist(entries) == render_client_blacklist(entries[::-1])


def test_a_blacklist_entry_that_would_inject_a_map_line_is_refused():
    facts = host(blacklist=(BlacklistEntry("192.0.2.0/24", "x\n0.0.0.0/0 OK"),))
    with pytest.raises(RenderError) as caught:
        render(facts=facts)
    assert caught.value.errors[0].field == "blacklist[0]"


# --- Dovecot ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("2.3.19.1 (9b53102964)\n", (2, 3, 19, 1)),
        ("2.4.1-4 (7d8c0e5759)", (2, 4, 1)),
        ("2.4.0 (0c8f3f6be0)", (2, 4, 0)),
        ("2.3.21", (2, 3, 21)),
    ],
)
def test_dovecot_version_output_is_parsed(text, numbers):
    assert parse_dovecot_version(text) == numbers


@pytest.mark.parametrize("text", ["", "dovecot: command not found", "v2.3", "2"])
def test_text_that_is_not_a_dovecot_version_is_refused(text):
    with pytest.raises(ValueError, match="not Dovecot's version"):
        parse_dovecot_version(text)


def test_the_syntax_follows_the_version_and_old_dovecot_is_refused():
    assert dovecot_syntax("2.3.19.1 (9b53102964)") == "2.3"
    assert dovecot_syntax("2.4.1-4 (7d8c0e5759)") == "2.4"
    with pytest.raises(ValueError, match="too old"):
        dovecot_syntax("2.2.36 (1f10bfa63)")


def test_postfix_version_output_is_parsed():
    assert parse_postfix_version("mail_version = 3.7.11\n") == (3, 7, 11)
    assert parse_postfix_version("3.10.2") == (3, 10, 2)
    with pytest.raises(ValueError, match="not Postfix's mail_version"):
        parse_postfix_version("postconf: fatal")


def test_dovecot_2_3_snippet():
    policy = PolicyValues(
        dovecot_mail_max_userip_connections=7,
        dovecot_login_process_limit=33,
        dovecot_auth_failure_delay=4,
    )
    text = render(policy).by_path()[SNIPPET].content.decode()
    assert "ssl = required\n" in text
    assert "ssl_min_protocol = TLSv1.2\n" in text
    assert "disable_plaintext_auth = yes\n" in text
    assert "auth_allow_cleartext" not in text
    assert "mail_max_userip_connections = 7\n" in text
    assert "auth_failure_delay = 4 secs\n" in text
    assert "service imap-login {\n  process_limit = 33\n}\n" in text
    assert "service pop3-login {\n  process_limit = 33\n}\n" in text
    assert (
        "service auth {\n"
        "  unix_listener /var/spool/postfix/private/auth {\n"
        "    mode = 0660\n    user = postfix\n    group = postfix\n  }\n}\n"
    ) in text


def test_dovecot_2_4_snippet_uses_the_new_names():
    """The shape only: the installed Dovecot is 2.3, so no 2.4 doveconf reads this here."""
    facts = host(
        dovecot_version="2.4.1-4 (7d8c0e5759)",
        tls_cert_file="/etc/ssl/mx1.pem",
        tls_key_file="/etc/ssl/private/mx1.key",
    )
    text = render(facts=facts).by_path()[SNIPPET].content.decode()
    assert "# Dovecot 2.4 syntax.\n" in text
    assert "ssl_server_cert_file = /etc/ssl/mx1.pem\n" in text
    assert "ssl_server_key_file = /etc/ssl/private/mx1.key\n" in text
    assert "auth_allow_cleartext = no\n" in text
    assert "ssl_min_protocol = TLSv1.2\n" in text
    assert "disable_plaintext_auth" not in text and "ssl_cert = " not in text
    assert (
        "  unix_listener /var/spool/postfix/private/auth {\n    type = auth\n    mode = 0660\n"
    ) in text


def test_without_tls_requirement_ssl_is_offered_and_cleartext_auth_still_refused():
    text = render(PolicyValues(imap_pop3_tls_required=False)).by_path()[SNIPPET].content
    assert b"ssl = yes\n" in text and b"disable_plaintext_auth = yes\n" in text


def test_without_submission_dovecot_exports_no_auth_socket():
    rendered = render(PolicyValues(submission_enabled=False)).by_path()
    assert b"unix_listener" not in rendered[SNIPPET].content
    assert b"submission" not in b"\n".join(managed_lines(rendered[MASTER].content))


# --- OpenDKIM -----------------------------------------------------------------------------------


def test_each_opendkim_instance_listens_on_its_own_port_with_its_own_tables():
    rendered = render().by_path()
    rsa = rendered["/etc/opendkim/mailsec-rsa.conf"].content.decode()
    ed = rendered["/etc/opendkim/mailsec-ed25519.conf"].content.decode()
    assert "Socket inet:8891@127.0.0.1\n" in rsa and "Socket inet:8892@127.0.0.1\n" in ed
    assert "SigningTable refile:/etc/opendkim/SigningTable\n" in rsa
    assert "SigningTable refile:/etc/opendkim/ed25519/SigningTable\n" in ed
    assert "SignatureAlgorithm ed25519-sha256\n" in ed
    assert rendered["/etc/opendkim/KeyTable"].content == (
        b"r1._domainkey.example.org example.org:r1:/etc/opendkim/keys/example.org/r1.private\n"
    )
    assert rendered["/etc/opendkim/keys/example.org/r1.private"].content == key().private_pem


def test_opendkim_signs_for_the_policys_mynetworks():
    policy = PolicyValues(mynetworks=("127.0.0.0/8", "192.168.10.0/24", "2001:DB8:1::/48"))
    rendered = render(policy).by_path()
    assert rendered["/etc/opendkim/mailsec-internal-hosts"].content == (
        b"127.0.0.0/8\n192.168.10.0/24\n2001:db8:1::/48\n"
    )
    for algorithm in ("rsa", "ed25519"):
        conf = rendered[f"/etc/opendkim/mailsec-{algorithm}.conf"].content
        assert b"InternalHosts file:/etc/opendkim/mailsec-internal-hosts\n" in conf


@pytest.mark.parametrize(
    ("bad_key", "words"),
    [
        (key(selector="../r1"), "selector cannot start or end with a dot"),
        (key(domain="example.org\nx"), "not a domain and selector"),
        (key(algorithm="dsa"), "not rsa or ed25519"),
        (SigningKey("example.org", "r9", "rsa", b"not a key"), "not PEM"),
        (SigningKey("example.org", "r9", "rsa", "text"), "not PEM"),  # type: ignore[arg-type]
    ],
)
def test_keys_that_cannot_be_written_safely_are_refused(bad_key, words):
    with pytest.raises(RenderError, match=words):
        render(facts=host(dkim_keys=(bad_key,)))


def test_a_selector_used_twice_for_a_domain_is_refused():
    with pytest.raises(RenderError, match="share a domain and selector"):
        render(facts=host(dkim_keys=(key(), key(algorithm="ed25519"))))


def test_each_file_carries_its_hash():
    for file in render():
        assert file.sha256 == hashlib.sha256(file.content).hexdigest()


def test_a_key_for_a_domain_the_host_does_not_serve_is_refused():
    with pytest.raises(RenderError, match="does not serve"):
        render(facts=host(dkim_keys=(key(domain="other.example"),)))


# --- refusing what cannot be rendered -------------------------------------------------------------


def test_an_invalid_policy_is_not_rendered_and_every_error_is_given():
    with pytest.raises(RenderError) as caught:
        render(PolicyValues(mynetworks=("0.0.0.0/0",), message_size_limit=1))
    assert {e.field for e in caught.value.errors} == {"mynetworks", "message_size_limit"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "mx1.example.org\nrelayhost = evil.example"),
        ("hostname", "mx1"),
        ("postfix_config_dir", "/etc/postfix/../../tmp"),
        ("postfix_config_dir", "etc/postfix"),
        ("dovecot_config_dir", "/etc/dovecot conf"),
        ("postfix_queue_directory", "/var/spool/postfix\n}"),
        ("submission_service", "submission inet n - - - - smtpd"),
        ("postfix_user", "postfix\n  mode = 0666"),
        ("extra_milters", ("inet:127.0.0.1:1, inet:evil:2",)),
        ("opendkim_ports", (8891, 8891)),
        ("opendkim_address", "localhost"),
        ("addresses", ("192.0.2.300",)),
        ("dovecot_version", "2.2.36"),
        ("postfix_version", "three"),
        ("tls_cert_file", "/etc/ssl/mx1.pem"),  # without its key
    ],
)
def test_host_facts_that_would_inject_or_do_not_fit_are_refused(field, value):
    with pytest.raises(RenderError) as caught:
        render(facts=host(**{field: value}))
    assert caught.value.errors


# --- the diff view ------------------------------------------------------------------------------


def test_the_diff_shows_text_changes_as_a_unified_diff():
    rendered = render()
    diffs = {d.path: d for d in diff_files({MAIN: ADMIN_MAIN, MASTER: ADMIN_MASTER}, rendered)}
    main = diffs[MAIN]
    assert main.status is FileStatus.CHANGED and not main.hidden
    assert main.diff.startswith(f"--- a{MAIN}\n+++ b{MAIN}\n")
    assert "-biff = no\n\\ No newline at end of file\n+biff = no\n" in main.diff
    assert "+message_size_limit = 26214400\n" in main.diff
    assert " # caf\\xe9 (latin-1, not UTF-8)\n" in main.diff  # shown escaped, not hidden
    assert diffs[SNIPPET].status is FileStatus.ADDED
    assert diffs[SNIPPET].diff.startswith(f"--- /dev/null\n+++ b{SNIPPET}\n")


def test_the_diff_of_an_unchanged_file_is_empty():
    rendered = render()
    diffs = diff_files(rendered.contents(), rendered)
    assert {d.status for d in diffs} == {FileStatus.UNCHANGED}
    assert all(d.diff == "" for d in diffs)


def test_private_keys_are_never_shown_only_their_hashes():
    rendered = render()
    path = "/etc/opendkim/keys/example.org/r1.private"
    old = b"-----BEGIN PRIVATE KEY-----\nold key\n-----END PRIVATE KEY-----\n"
    (diff,) = [d for d in diff_files({path: old}, rendered) if d.path == path]
    assert diff.status is FileStatus.CHANGED and diff.hidden and diff.diff == ""
    assert diff.current_sha256 == hashlib.sha256(old).hexdigest()
    assert diff.rendered_sha256 == hashlib.sha256(key().private_pem).hexdigest()
    assert "PRIVATE" not in repr(diff)


def test_a_file_that_is_not_text_is_shown_as_changed_with_hashes():
    rendered = render()
    (diff,) = [d for d in diff_files({MAIN: b"\xff\xfe\0binary"}, rendered) if d.path == MAIN]
    assert diff.hidden and diff.status is FileStatus.CHANGED and diff.diff == ""


# --- properties over arbitrary admin files --------------------------------------------------------

_ADMIN_LINES = st.one_of(
    st.sampled_from(
        [
            b"message_size_limit = 1000\n",
            b"mynetworks = 10.0.0.0/8,\n",
            b"smtpd_milters=unix:/run/x.sock\r\n",
            b"biff = no\n",
            b"alias_maps = hash:/etc/aliases\n",
            b"    hash:/etc/more\n",
            b"\tcontinued\r\n",
            b"\x0ccontinued after a form feed\n",
            b"\x0b\n",
            b"# a comment\n",
            b"#message_size_limit = 1\n",
            b"\n",
            b"\r\n",
            b"smtp inet n - y - - smtpd\n",
            b"submission inet n - y - - smtpd\n",
            b"  -o smtpd_tls_security_level=may\n",
            b"pickup unix n - y 60 1 pickup\n",
            BEGIN + b" but not alone\n",
        ]
    ),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"),
)


def _postfix_entries(data: bytes) -> list[tuple[bytes, ...]]:
    """The logical lines Postfix reads (main.cf and master.cf alike): comment, blank and
    whitespace-only lines skipped, a line starting with whitespace continuing the one before."""
    entries: list[list[bytes]] = []
    for line in data.split(b"\n"):
        stripped = line.strip(b" \t\v\f\r")
        if not stripped or stripped.startswith(b"#"):
            continue
        if line[:1] in {b" ", b"\t", b"\v", b"\f", b"\r"} and entries:
            entries[-1].append(stripped)
        else:
            entries.append([stripped])
    return [tuple(entry) for entry in entries]


def _entry_key(entry: tuple[bytes, ...]) -> object:
    """A main.cf parameter's name, or a master.cf service's (name, type)."""
    first = entry[0]
    name = re.match(rb"^([A-Za-z0-9_]+)[ \t\v\f\r]*=", first)
    return name.group(1) if name else tuple(first.split()[:2])


def _outside_block(content: bytes) -> bytes:
    lines = content.split(b"\n")
    start, end = lines.index(BEGIN), lines.index(END)
    return b"\n".join(lines[:start] + lines[end + 1 :])


def _inside_block(content: bytes) -> bytes:
    lines = content.split(b"\n")
    return b"\n".join(lines[lines.index(BEGIN) + 1 : lines.index(END)])


def _unmanaged(content: bytes) -> bytes:
    """The file with the managed block cut out and mailsec's override marks removed."""
    lines = content.split(b"\n")
    start, end = lines.index(BEGIN), lines.index(END)
    kept = lines[:start] + lines[end + 1 :]
    return b"\n".join(
        line[len(OVERRIDE_MARK) :] if line.startswith(OVERRIDE_MARK) else line for line in kept
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_ADMIN_LINES, max_size=25),
    tail=st.binary(max_size=10).map(lambda b: b.replace(b"\n", b"")),
    postscreen=st.booleans(),
)
def test_any_admin_file_is_kept_and_rendering_is_idempotent(lines, tail, postscreen):
    admin = b"".join(lines) + tail
    if OVERRIDE_MARK in admin or any(
        line.rstrip(b"\r") in {BEGIN, END} for line in admin.split(b"\n")
    ):
        return  # mailsec's own marks are covered by the tests above
    policy = PolicyValues(
        dnsbl_mode=DnsblMode.POSTSCREEN if postscreen else DnsblMode.SMTPD,
        dnsbl_sites=(DnsblSite("zen.example.net"),),
    )
    first = render(policy, current={MAIN: admin, MASTER: admin})
    assert render(policy, current=first.contents()) == first
    expected = admin + b"\n" if admin and not admin.endswith(b"\n") else admin
    for path in (MAIN, MASTER):
        content = first.by_path()[path].content
        assert _unmanaged(content) == expected
        # As Postfix reads it: every admin entry the block does not redefine, unchanged, and
        # none that it does (so no "overriding earlier entry", no duplicate service).
        managed = {_entry_key(e) for e in _postfix_entries(_inside_block(content))}
        assert _postfix_entries(_outside_block(content)) == [
            e for e in _postfix_entries(admin) if _entry_key(e) not in managed
        ]
    # Another policy over the output is the same as that policy over the admin's file.
    other = PolicyValues(dkim_signing=False, submission_enabled=False)
    assert render(other, current=first.contents()) == render(
        other, current={MAIN: admin, MASTER: admin}
    )
