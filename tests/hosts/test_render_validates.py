"""The real Postfix, Dovecot and OpenDKIM read what mailsec renders, with no error or warning.

Postfix: the installed package's main.cf and master.cf (Debian's main.cf template plus its TLS
lines, as the package's postinst writes them, when /etc/postfix/main.cf does not exist) are
copied into a temporary config directory, with the queue and data directories moved there too;
mailsec renders over them, and `postfix check` and `postconf -n` must pass with nothing on
stderr (a warning is a failure: it is what a deployment's validation step refuses). `postconf
-h` and `postmap -q` then show that Postfix reads the policy's values and the blacklist map.

Dovecot: the rendered 2.3 snippet is included by a minimal dovecot.conf with the test's own
paths and read by the installed `doveconf` (2.3.19). No Dovecot 2.4 is installed here, so the
2.4 snippet is checked for its shape in test_render.py only; what this file does show is that
2.3 refuses it, which is why the version is detected rather than assumed.

OpenDKIM: both instances' configuration, with generated keys, pass `opendkim -n`.

Live: one Postfix and one Dovecot started from the rendered files enforce the policy on
loopback connections: the blacklist, the size limit, relay refusal, HELO checks, submission
with AUTH only after STARTTLS through Dovecot's socket, the minimum TLS version, no IMAP login
before TLS, and the per-client connection limit. (DKIM signing end to end and deployment
belong to the deployment's tests.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import os
import pwd
import shutil
import signal
import smtplib
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dns_records.dkim import DkimAlgorithm, generate_key
from dns_records.opendkim import SigningKey
from hosts.policy import (
    BlacklistEntry,
    DnsblMode,
    DnsblSite,
    PolicyValues,
    ReverseDnsCheck,
    TlsVersion,
)
from hosts.render import HostFacts, RenderedFiles, render_host
from hosts.render.dovecot import render_dovecot
from tests.servers import free_port, missing, stop_process, wait_for_tcp

PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
DEBIAN_MAIN = [Path("/usr/share/postfix/main.cf.debian"), Path("/usr/share/postfix/main.cf.tls")]


def binary(name: str) -> str:
    found = shutil.which(name, path=PATH)
    if found is None:
        missing(f"{name} is not installed (scripts/install-system-deps installs it)")
    assert found is not None
    return found


def run(*command: str) -> str:
    """Run a real tool; anything on stderr or a non-zero exit fails the test."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr}"
    assert result.stderr == "", f"{command} wrote to stderr:\n{result.stderr}"
    return result.stdout


def packaged_main_cf() -> bytes:
    live = Path("/etc/postfix/main.cf")
    if live.exists():
        return live.read_bytes()
    if not all(p.exists() for p in DEBIAN_MAIN):
        missing("neither /etc/postfix/main.cf nor Debian's main.cf template is installed")
    return b"".join(p.read_bytes() for p in DEBIAN_MAIN)


@pytest.fixture
def postfix_dir(tmp_path: Path) -> Path:
    """A copy of the packaged configuration whose queue and data directories are the test's."""
    binary("postfix")
    directory = tmp_path / "postfix"
    directory.mkdir()
    (tmp_path / "spool").mkdir()
    (tmp_path / "data").mkdir()
    main = packaged_main_cf()
    if not main.endswith(b"\n"):
        main += b"\n"
    main += admin_paths(tmp_path)
    shutil.chown(tmp_path / "data", "postfix")
    (directory / "main.cf").write_bytes(main)
    shutil.copyfile("/etc/postfix/master.cf", directory / "master.cf")
    return directory


def admin_paths(base: Path) -> bytes:
    """The admin's lines moving the queue, data and log of the copy under `base`.

    With maillog_file set, `postfix check` writes its warnings there rather than to syslog.
    """
    return (
        f"queue_directory = {base / 'spool'}\ndata_directory = {base / 'data'}\n"
        f"maillog_file = {base / 'maillog'}\nmaillog_file_prefixes = /var,/dev/stdout,{base}\n"
    ).encode()


def facts(postfix_dir: Path, **changes) -> HostFacts:
    base = HostFacts(
        name="mx1",
        hostname="mx1.example.org",
        addresses=("192.0.2.25",),
        domains=("example.org",),
        blacklist=(
            BlacklistEntry("198.51.100.0/24", "Spam run"),
            BlacklistEntry("198.51.100.7", "This host"),
            BlacklistEntry("2001:db8::/32", ""),
        ),
        postfix_config_dir=str(postfix_dir),
        postfix_queue_directory=str(postfix_dir.parent / "spool"),
    )
    return dataclasses.replace(base, **changes)


def deploy(rendered: RenderedFiles, under: Path) -> None:
    """Write the rendered files that belong under `under`, with their modes."""
    for file in rendered:
        if Path(file.path).is_relative_to(under):
            Path(file.path).parent.mkdir(parents=True, exist_ok=True)
            Path(file.path).write_bytes(file.content)
            Path(file.path).chmod(file.mode)


def render_postfix(postfix_dir: Path, policy: PolicyValues, **changes) -> RenderedFiles:
    current = {
        str(postfix_dir / n): (postfix_dir / n).read_bytes() for n in ("main.cf", "master.cf")
    }
    rendered = render_host(policy, facts(postfix_dir, **changes), current)
    deploy(rendered, postfix_dir)
    return rendered


def postfix_validates(postfix_dir: Path) -> str:
    """What a deployment runs on its staging copy; returns `postconf -n`."""
    postfix = binary("postfix")
    run(postfix, "-c", str(postfix_dir), "post-install", "create-missing")
    run(postfix, "-c", str(postfix_dir), "check")
    maillog = postfix_dir.parent / "maillog"
    logged = maillog.read_text() if maillog.exists() else ""
    assert not any(word in logged for word in ("warning:", "error:", "fatal:", "panic:")), logged
    return run(binary("postconf"), "-c", str(postfix_dir), "-n")


def postconf(postfix_dir: Path, *args: str) -> str:
    return run(binary("postconf"), "-c", str(postfix_dir), *args).strip()


POLICIES = {
    "defaults": PolicyValues(),
    "strict": PolicyValues(
        reverse_dns=ReverseDnsCheck.FORWARD_CONFIRMED,
        reject_unknown_helo_hostname=True,
        tls_min_version=TlsVersion.TLS_1_3,
        rhsbl_client_sites=("dbl.example.net",),
        rhsbl_sender_sites=("dbl.example.net", "multi.surbl.example"),
        rhsbl_helo_sites=("dbl.example.net",),
        dnsbl_sites=(DnsblSite("zen.example.net"),),
    ),
    "postscreen": PolicyValues(
        dnsbl_mode=DnsblMode.POSTSCREEN,
        dnsbl_sites=(DnsblSite("zen.example.net", 3), DnsblSite("list.dnswl.example", -5)),
        dnsbl_threshold=2,
    ),
    "minimal": PolicyValues(
        enforce_local_blacklist=False,
        reverse_dns=ReverseDnsCheck.NONE,
        helo_required=False,
        submission_enabled=False,
        dkim_signing=False,
    ),
}


@pytest.mark.parametrize("name", POLICIES)
def test_postfix_checks_the_rendered_configuration_without_a_warning(postfix_dir, name):
    render_postfix(postfix_dir, POLICIES[name])
    assert "message_size_limit = 26214400" in postfix_validates(postfix_dir)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("3.7.11", ">=TLSv1.3"), ("3.5.18", "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.2")],
)
def test_postfix_reads_both_forms_of_the_minimum_tls_version(postfix_dir, version, expected):
    render_postfix(
        postfix_dir, PolicyValues(tls_min_version=TlsVersion.TLS_1_3), postfix_version=version
    )
    postfix_validates(postfix_dir)
    assert postconf(postfix_dir, "-h", "smtpd_tls_mandatory_protocols") == expected


def test_the_check_is_one_that_fails_on_a_warning(postfix_dir):
    """A parameter defined twice makes postconf warn: why the admin's own definitions of a
    managed parameter are disabled, and proof the check above can fail."""
    with (postfix_dir / "main.cf").open("ab") as main:
        main.write(b"biff = yes\nbiff = no\n")
    with pytest.raises(AssertionError, match="overriding earlier entry"):
        postfix_validates(postfix_dir)


def test_postfix_reads_the_policys_values(postfix_dir):
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
    )
    render_postfix(postfix_dir, policy, opendkim_ports=(12301, 12302))
    postfix_validates(postfix_dir)
    expected = {
        "message_size_limit": "20000000",
        "mynetworks": "127.0.0.0/8, 192.168.10.0/24, [2001:db8:1::]/48",
        "smtpd_client_connection_count_limit": "7",
        "smtpd_client_connection_rate_limit": "31",
        "smtpd_client_message_rate_limit": "41",
        "smtpd_client_recipient_rate_limit": "51",
        "smtpd_error_sleep_time": "3s",
        "smtpd_soft_error_limit": "4",
        "smtpd_hard_error_limit": "9",
        "anvil_rate_time_unit": "120s",
        "smtpd_tls_auth_only": "yes",
        "smtpd_helo_required": "yes",
        "myhostname": "mx1.example.org",
        "smtpd_milters": "inet:127.0.0.1:12301, inet:127.0.0.1:12302",
        "milter_default_action": "accept",
        "smtpd_relay_restrictions": (
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
        ),
        "smtpd_client_restrictions": (
            f"check_client_access cidr:{postfix_dir}/mailsec/client_blacklist.cidr, "
            "permit_mynetworks, permit_sasl_authenticated, reject_unknown_reverse_client_hostname"
        ),
    }
    for name, value in expected.items():
        assert postconf(postfix_dir, "-h", name) == value, name


def test_postfix_reads_the_submission_service(postfix_dir):
    render_postfix(postfix_dir, PolicyValues())
    postfix_validates(postfix_dir)
    options = {
        "smtpd_tls_security_level": "encrypt",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": "private/auth",
        "smtpd_tls_auth_only": "yes",
        "smtpd_client_restrictions": "permit_sasl_authenticated,reject",
    }
    for name, value in options.items():
        assert postconf(postfix_dir, "-P", f"submission/inet/{name}") == (
            f"submission/inet/{name} = {value}"
        )


def test_postscreen_takes_over_the_smtp_port(postfix_dir):
    render_postfix(postfix_dir, POLICIES["postscreen"])
    postfix_validates(postfix_dir)
    assert postconf(postfix_dir, "-M", "smtp/inet").split()[-1] == "postscreen"
    assert postconf(postfix_dir, "-M", "smtpd/pass").split()[-1] == "smtpd"
    assert postconf(postfix_dir, "-h", "postscreen_dnsbl_sites") == (
        "zen.example.net*3, list.dnswl.example*-5"
    )


def test_the_admins_conflicting_lines_are_disabled_and_postfix_does_not_warn(postfix_dir):
    with (postfix_dir / "main.cf").open("ab") as main:
        main.write(
            b"message_size_limit = 5000\nmynetworks = 10.0.0.0/8,\n# note\n\n    172.16.0.0/12\n"
        )
    with (postfix_dir / "master.cf").open("ab") as master:
        master.write(b"submission inet n - y - - smtpd\n  -o smtpd_tls_security_level=may\n")
    render_postfix(postfix_dir, PolicyValues())
    postfix_validates(postfix_dir)
    assert postconf(postfix_dir, "-h", "message_size_limit") == "26214400"
    assert postconf(postfix_dir, "-h", "mynetworks") == "127.0.0.0/8, [::1]/128"
    assert postconf(postfix_dir, "-P", "submission/inet/smtpd_tls_security_level") == (
        "submission/inet/smtpd_tls_security_level = encrypt"
    )


def test_rendering_twice_over_the_live_files_changes_nothing(postfix_dir):
    first = render_postfix(postfix_dir, POLICIES["strict"])
    second = render_postfix(postfix_dir, POLICIES["strict"])
    assert second == first


def test_postfix_refuses_the_blacklisted_networks_with_their_reasons(postfix_dir):
    render_postfix(postfix_dir, PolicyValues())
    postfix_validates(postfix_dir)
    table = f"cidr:{postfix_dir}/mailsec/client_blacklist.cidr"
    postmap = binary("postmap")

    def lookup(address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [postmap, "-c", str(postfix_dir), "-q", address, table],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert lookup("198.51.100.7").stdout == "REJECT This host\n"
    assert lookup("198.51.100.8").stdout == "REJECT Spam run\n"
    assert lookup("2001:db8::25").stdout == "REJECT Blocked by local policy\n"
    unlisted = lookup("192.0.2.1")
    assert unlisted.returncode == 1 and unlisted.stdout == "" and unlisted.stderr == ""


# --- Dovecot --------------------------------------------------------------------------------------


@pytest.fixture
def dovecot_conf(tmp_path: Path) -> Path:
    """A standalone dovecot.conf with the test's paths, including conf.d/*.conf."""
    binary("doveconf")
    directory = tmp_path / "dovecot"
    (directory / "conf.d").mkdir(parents=True)
    (directory / "run").mkdir()
    subprocess.run(
        [
            binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=mx1.example.org",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    conf = directory / "dovecot.conf"
    conf.write_text(
        f"base_dir = {directory / 'run'}\n"
        "instance_name = mailsec-render-test\n"
        "listen = 127.0.0.60\n"
        f"log_path = {directory / 'dovecot.log'}\n"
        "protocols = imap pop3\n"
        f"ssl_cert = <{directory / 'cert.pem'}\n"
        f"ssl_key = <{directory / 'key.pem'}\n"
        "passdb {\n  driver = static\n  args = password=test\n}\n"
        f"userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={directory}/%u\n}}\n"
        "!include conf.d/*.conf\n"
    )
    return conf


def dovecot_host(conf: Path, **changes) -> HostFacts:
    base = HostFacts(
        name="mx1",
        hostname="mx1.example.org",
        dovecot_version="2.3.19.1 (9b53102964)",
        dovecot_config_dir=str(conf.parent),
        postfix_queue_directory=str(conf.parent / "spool"),
    )
    return dataclasses.replace(base, **changes)


def doveconf(conf: Path, *args: str) -> str:
    return run(binary("doveconf"), "-c", str(conf), *args)


def test_dovecot_reads_the_rendered_2_3_snippet(dovecot_conf):
    policy = PolicyValues(
        tls_min_version=TlsVersion.TLS_1_3,
        dovecot_mail_max_userip_connections=7,
        dovecot_login_process_limit=33,
        dovecot_auth_failure_delay=4,
    )
    rendered = render_host(policy, dovecot_host(dovecot_conf), {})
    deploy(rendered, dovecot_conf.parent)
    assert (dovecot_conf.parent / "conf.d" / "99-mailsec.conf").exists()
    config = doveconf(dovecot_conf, "-n")
    assert "ssl = required\n" in config
    assert f"  unix_listener {dovecot_conf.parent}/spool/private/auth {{\n" in config
    assert "service imap-login {\n  process_limit = 33\n}" in config
    values = {
        "ssl": "required",
        "ssl_min_protocol": "TLSv1.3",
        "disable_plaintext_auth": "yes",
        "mail_max_userip_connections": "7",
        "auth_failure_delay": "4 secs",
    }
    for name, value in values.items():
        assert doveconf(dovecot_conf, "-h", name).strip() == value, name


def test_dovecot_2_3_refuses_the_2_4_snippet_so_the_version_decides(dovecot_conf):
    snippet = render_dovecot(
        PolicyValues(), dovecot_host(dovecot_conf, dovecot_version="2.4.1-4 (7d8c0e5759)")
    )
    (dovecot_conf.parent / "conf.d" / "99-mailsec.conf").write_bytes(snippet)
    with pytest.raises(AssertionError, match="auth_allow_cleartext"):
        doveconf(dovecot_conf, "-n")


# --- OpenDKIM -------------------------------------------------------------------------------------


def test_opendkim_accepts_both_instances_configuration(tmp_path):
    opendkim = binary("opendkim")
    keys = (
        SigningKey("example.org", "r1", "rsa", generate_key(DkimAlgorithm.RSA).private_pem),
        SigningKey("example.org", "e1", "ed25519", generate_key(DkimAlgorithm.ED25519).private_pem),
    )
    host = HostFacts(
        name="mx1",
        hostname="mx1.example.org",
        domains=("example.org",),
        dkim_keys=keys,
        opendkim_config_dir=str(tmp_path / "opendkim"),
        opendkim_run_dir=str(tmp_path / "run"),
        opendkim_user=pwd.getpwuid(os.getuid()).pw_name,
        opendkim_address="127.0.0.60",
    )
    policy = PolicyValues(mynetworks=("127.0.0.0/8", "::1/128", "2001:db8:1::/48"))
    rendered = render_host(policy, host, {})
    directory = tmp_path / "opendkim"
    deploy(rendered, directory)
    for algorithm in ("rsa", "ed25519"):
        run(opendkim, "-n", "-x", str(directory / f"mailsec-{algorithm}.conf"))


def test_opendkims_check_reads_the_data_sets_and_fails_on_a_bad_line(tmp_path):
    """What makes the check above mean something: -n opens the tables and internal hosts."""
    opendkim = binary("opendkim")
    host = HostFacts(
        name="mx1",
        hostname="mx1.example.org",
        opendkim_config_dir=str(tmp_path / "opendkim"),
        opendkim_user=pwd.getpwuid(os.getuid()).pw_name,
    )
    deploy(render_host(PolicyValues(), host, {}), tmp_path / "opendkim")
    conf = tmp_path / "opendkim" / "mailsec-rsa.conf"
    (tmp_path / "opendkim" / "mailsec-internal-hosts").unlink()
    with pytest.raises(AssertionError, match="mailsec-internal-hosts"):
        run(opendkim, "-n", "-x", str(conf))
    conf.write_bytes(conf.read_bytes() + b"NoSuchSetting yes\n")
    with pytest.raises(AssertionError, match="unrecognized parameter"):
        run(opendkim, "-n", "-x", str(conf))


# --- the rendered policy enforced by a running Postfix and Dovecot --------------------------------
#
# One Postfix and one Dovecot, started from the rendered files on 127.0.0.60 and stopped by
# their own pids. Clients connect from other loopback addresses: 127.0.0.61 is blacklisted,
# 127.0.0.62 is the policy's mynetworks, 127.0.0.63 is a stranger. No message is ever sent
# past RCPT (nothing is queued, nothing is delivered), and nothing looks anything up in DNS:
# reverse DNS and blocklist checks are off in this policy and the admin's part of main.cf says
# smtpd_peername_lookup = no, so the system resolver is never asked.

LISTEN = "127.0.0.60"
BLACKLISTED, TRUSTED, STRANGER = "127.0.0.61", "127.0.0.62", "127.0.0.63"
LIVE_POLICY = PolicyValues(
    message_size_limit=2 * 1024 * 1024,
    reverse_dns=ReverseDnsCheck.NONE,
    mynetworks=(f"{TRUSTED}/32",),
    tls_min_version=TlsVersion.TLS_1_3,
    smtpd_client_connection_count_limit=2,
    dkim_signing=False,
)
PASSWORD = "live-test-password"


@dataclasses.dataclass
class LiveServers:
    smtp_port: int
    submission_port: int
    imap_port: int
    maillog: Path


def _stop_pid_file(pid_file: Path) -> None:
    """SIGTERM the daemon whose pid the file holds (ours: the file is in our directory)."""

    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):

    postfix, dovecot = binary("postfix"), binary("dovecot")
    # Postfix's and Dovecot's unprivileged processes must reach the queue: pytest's temporary
    # tree is private to its user, so the instance lives in a directory of its own under /tmp.
    base = Path(tempfile.mkdtemp(prefix="mailsec-live-", dir="/tmp"))
    base.chmod(0o755)
    etc, spool, data = base / "etc", base / "spool", base / "data"
    for directory in (etc, spool, data):
        directory.mkdir()
    subprocess.run(
        [
            binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=mx1.example.org",
            "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    smtp_port, submission_port = free_port(LISTEN), free_port(LISTEN)
    smtp_service = f"{LISTEN}:{smtp_port}"
    main = packaged_main_cf().rstrip(b"\n") + b"\n"
    main += admin_paths(base) + (
        b"inet_interfaces = all\ninet_protocols = ipv4\nmydestination =\n"
        b"alias_maps =\nalias_database =\nsmtpd_peername_lookup = no\n"
    )
    shutil.chown(data, "postfix")
    master = Path("/etc/postfix/master.cf").read_bytes()
    smtp_line = master.split(b"\nsmtp ", 1)
    assert len(smtp_line) == 2, "the packaged master.cf has an smtp inet service"
    master = smtp_line[0] + b"\n" + smtp_service.encode() + b" " + smtp_line[1]
    dovecot_dir = base / "dovecot"
    host = HostFacts(
        name="mx1",
        hostname="mx1.example.org",
        postfix_config_dir=str(etc),
        postfix_queue_directory=str(spool),
        dovecot_config_dir=str(dovecot_dir),
        smtp_service=smtp_service,
        submission_service=f"{LISTEN}:{submission_port}",
        tls_cert_file=str(base / "cert.pem"),
        tls_key_file=str(base / "key.pem"),
        blacklist=(BlacklistEntry(f"{BLACKLISTED}/32", "Listed by the live test"),),
    )
    rendered = render_host(
        LIVE_POLICY, host, {str(etc / "main.cf"): main, str(etc / "master.cf"): master}
    )
    deploy(rendered, base)
    postfix_validates(etc)

    imap_port = free_port(LISTEN)
    (dovecot_dir / "run").mkdir()
    conf = dovecot_dir / "dovecot.conf"
    conf.write_text(
        f"base_dir = {dovecot_dir / 'run'}\n"
        "instance_name = mailsec-live-test\n"
        f"listen = {LISTEN}\n"
        f"log_path = {dovecot_dir / 'dovecot.log'}\n"
        "protocols = imap\n"
        "auth_mechanisms = plain login\n"
        f"passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n"
        f"userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={dovecot_dir}/%u\n}}\n"
        f"service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n"
        "  inet_listener imaps {\n    port = 0\n  }\n}\n"
        "!include conf.d/*.conf\n"
    )
    doveconf(conf, "-n")

    processes = [
        subprocess.Popen(
            [dovecot, "-F", "-c", str(conf)],
            stdout=(dovecot_dir / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [postfix, "-c", str(etc), "start-fg"],
            stdout=(base / "postfix-stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    try:
        for port in (smtp_port, submission_port, imap_port):
            if not wait_for_tcp(LISTEN, port):
                log = (base / "maillog").read_text() if (base / "maillog").exists() else ""
                pytest.fail(f"port {port} did not open:\n{log}")
        yield LiveServers(smtp_port, submission_port, imap_port, base / "maillog")
    finally:
        # Postfix's master and Dovecot start their own sessions: stop each by its pid file.
        _stop_pid_file(spool / "pid" / "master.pid")
        _stop_pid_file(dovecot_dir / "run" / "master.pid")
        for process in processes:
            stop_process(process)
        shutil.rmtree(base, ignore_errors=True)


def smtp(live: LiveServers, source: str, *, submission: bool = False):

    port = live.submission_port if submission else live.smtp_port
    return smtplib.SMTP(LISTEN, port, timeout=10, source_address=(source, 0))


def tls_context(maximum=None):

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        context.maximum_version = maximum
    return context


def test_live_a_blacklisted_client_is_refused_with_the_reason(live):
    with smtp(live, BLACKLISTED) as client:
        client.ehlo("client.example.net")
        assert client.docmd("MAIL FROM:<a@example.net>")[0] == 250
        code, text = client.docmd("RCPT TO:<b@example.org>")
    assert code == 554 and b"Client host rejected: Listed by the live test" in text


def test_live_a_message_over_the_size_limit_is_refused(live):
    with smtp(live, TRUSTED) as client:
        client.ehlo("client.example.net")
        assert client.esmtp_features["size"] == str(2 * 1024 * 1024)
        code, text = client.docmd(f"MAIL FROM:<a@example.net> SIZE={3 * 1024 * 1024}")
        assert code == 552 and b"Message size exceeds fixed limit" in text
        assert client.docmd("MAIL FROM:<a@example.net> SIZE=1000")[0] == 250
        client.docmd("RSET")


def test_live_only_mynetworks_relays_without_authentication(live):
    with smtp(live, TRUSTED) as client:
        client.ehlo("client.example.net")
        client.docmd("MAIL FROM:<a@example.net>")
        assert client.docmd("RCPT TO:<b@example.org>")[0] == 250
        client.docmd("RSET")  # never DATA: nothing is queued or delivered
    with smtp(live, STRANGER) as client:
        client.ehlo("client.example.net")
        client.docmd("MAIL FROM:<a@example.net>")
        code, text = client.docmd("RCPT TO:<b@example.org>")
    assert code == 554 and b"Relay access denied" in text


def test_live_a_non_fqdn_helo_is_refused_and_helo_is_required(live):
    with smtp(live, STRANGER) as client:
        assert client.docmd("MAIL FROM:<a@example.net>")[0] == 503
        client.ehlo("bare")
        client.docmd("MAIL FROM:<a@example.net>")
        code, text = client.docmd("RCPT TO:<b@example.org>")
    assert code == 504 and b"need fully-qualified hostname" in text


def test_live_submission_offers_auth_only_after_tls_and_relays_for_authenticated_users(live):

    with smtp(live, STRANGER, submission=True) as client:
        client.ehlo("client.example.net")
        assert not client.has_extn("auth")
        assert client.docmd("MAIL FROM:<a@example.org>")[0] == 530  # TLS first
        client.starttls(context=tls_context())
        client.ehlo("client.example.net")
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("someone@example.org", "wrong")
        assert client.login("someone@example.org", PASSWORD)[0] == 235
        client.docmd("MAIL FROM:<someone@example.org>")
        assert client.docmd("RCPT TO:<b@example.net>")[0] == 250
        client.docmd("RSET")


def test_live_submission_refuses_a_client_without_authentication(live):
    with smtp(live, STRANGER, submission=True) as client:
        client.ehlo("client.example.net")
        client.starttls(context=tls_context())
        client.ehlo("client.example.net")
        client.docmd("MAIL FROM:<a@example.org>")
        assert client.docmd("RCPT TO:<b@example.net>")[0] == 554


def test_live_tls_below_the_minimum_version_is_refused_by_postfix_and_dovecot(live):

    old = tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    with smtp(live, STRANGER, submission=True) as client:
        client.ehlo("client.example.net")
        with pytest.raises(ssl.SSLError):
            client.starttls(context=old)
    imap = imaplib.IMAP4(LISTEN, live.imap_port, timeout=10)
    try:
        with pytest.raises(ssl.SSLError):
            imap.starttls(ssl_context=old)
    finally:
        with contextlib.suppress(OSError):  # the failed handshake already closed it
            imap.shutdown()
    modern = imaplib.IMAP4(LISTEN, live.imap_port, timeout=10)
    try:
        modern.starttls(ssl_context=tls_context())
        assert modern.login("someone", PASSWORD)[0] == "OK"
    finally:
        modern.logout()


def test_live_imap_refuses_a_login_before_tls(live):

    imap = imaplib.IMAP4(LISTEN, live.imap_port, timeout=10)
    try:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            imap.login("someone", PASSWORD)
    finally:
        imap.logout()


def test_live_a_client_over_the_connection_count_limit_is_turned_away(live):

    held = [smtp(live, STRANGER), smtp(live, STRANGER)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            smtp(live, STRANGER)
        assert caught.value.smtp_code == 421
    finally:
        for client in held:
            client.close()
    # mynetworks is exempt from the limits (smtpd_client_event_limit_exceptions).
    trusted = [smtp(live, TRUSTED) for _ in range(3)]
    for client in trusted:
        client.close()
