"""Real Postfix, Dovecot and Knot for the probe tests, on 127.0.0.90-99.

One Postfix serves several SMTP listeners on port 25 (and 587 and 465 on the correct address),
each on its own address with its own faults (`-o` overrides in master.cf); two Dovecots serve IMAP/POP3 (one correct, one allowing
cleartext login and TLS 1.0). A Knot on 127.0.0.99 answers PTR and TLSA questions. The
certificates are signed by a CA made here (given to mailsec as MAILSEC_TLS_CA_FILE).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certificates import cert_pem, key_pem, make_ca
from tests.servers import missing, stop_process, wait_for_tcp

GOOD = "127.0.0.90"  # correct Postfix and Dovecot
PLAIN_AUTH = "127.0.0.91"  # Postfix offering AUTH before STARTTLS; Dovecot with cleartext login
OLD_TLS = "127.0.0.92"  # Postfix accepting TLS 1.0
OPEN_RELAY = "127.0.0.93"  # Postfix relaying for its mynetworks, which holds the probe's source
EXPIRED = "127.0.0.94"  # Postfix presenting an expired certificate
REFUSED = "127.0.0.95"  # a listener that must see no connection
WRONG_NAME = "127.0.0.96"  # Postfix presenting a certificate for another name
KNOT_ADDRESS = "127.0.0.99"
MX_NAME = "mx.probe.test"
SIZE_LIMIT = 10_240_000
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def binary(name: str) -> str:
    found = shutil.which(name, path=PATH)
    if found is None:
        missing(f"{name} is not installed")
    return str(found)


@dataclass
class Certificates:
    ca: Path
    valid: tuple[Path, Path]  # (cert, key) for MX_NAME
    expired: tuple[Path, Path]
    wrong_name: tuple[Path, Path]
    valid_der: bytes = b""


def make_certificates(directory: Path) -> Certificates:
    now = datetime.datetime.now(datetime.UTC)
    year = datetime.timedelta(days=400)
    ca = make_ca("mailsec probe test CA", not_before=now - year, not_after=now + year)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.pem)

    def leaf(
        label: str, name: str, start: datetime.datetime, end: datetime.datetime
    ) -> tuple[Path, Path]:
        cert, key = ca.issue(name, dns_names=[name], not_before=start, not_after=end)
        cert_file, key_file = directory / f"{label}.pem", directory / f"{label}.key"
        # The chain file: the leaf, then the CA (DANE-TA records match the CA).
        cert_file.write_bytes(cert_pem(cert) + ca.pem)
        key_file.write_bytes(key_pem(key))
        key_file.chmod(0o644)  # Dovecot's config reader and Postfix both read it
        return cert_file, key_file

    day = datetime.timedelta(days=1)
    return Certificates(
        ca=ca_file,
        valid=leaf("valid", MX_NAME, now - day, now + 90 * day),
        expired=leaf("expired", MX_NAME, now - 60 * day, now - day),
        wrong_name=leaf("wrong", "other.example.org", now - day, now + 90 * day),
    )


def leaf_der(cert_file: Path) -> bytes:
    cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    return cert.public_bytes(serialization.Encoding.DER)


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
    return done.stdout


@dataclass
class ProbePostfix:
    """One Postfix, an smtpd on port 25 of each test address, each with its own faults."""

    base: Path
    certs: Certificates
    sasl_socket: Path

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def start(self) -> None:
        binary("postfix")
        for name in ("etc", "spool", "data"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix")
        text = b"".join(
            Path(p).read_bytes()
            for p in ("/usr/share/postfix/main.cf.debian", "/usr/share/postfix/main.cf.tls")
        )
        cert, key = self.certs.valid
        base = self.base
        ours = (
            f"\nqueue_directory = {base / 'spool'}\ndata_directory = {base / 'data'}\n"
            f"maillog_file = {self.maillog}\nmaillog_file_prefixes = /var,/dev/stdout,{base}\n"
            "inet_interfaces = all\ninet_protocols = ipv4\nmydestination =\n"
            "alias_maps =\nalias_database =\nsmtpd_peername_lookup = no\n"
            f"myhostname = {MX_NAME}\nsmtpd_banner = $myhostname ESMTP\n"
            "mynetworks = 192.0.2.1/32\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
            f"message_size_limit = {SIZE_LIMIT}\n"
            f"smtpd_tls_chain_files = {key},{cert}\n"
            "smtpd_tls_cert_file =\nsmtpd_tls_key_file =\n"
            "smtpd_tls_security_level = may\n"
            "smtpd_tls_protocols = >=TLSv1.2\nsmtpd_tls_mandatory_protocols = >=TLSv1.2\n"
            "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
            f"smtpd_sasl_path = {self.sasl_socket}\nsmtpd_tls_auth_only = yes\n"
            "relayhost =\ndefault_transport = discard:no delivery in tests\n"
        ).encode()
        # Each setting once: the Debian defaults' lines for the ones set here are dropped.
        keys = {line.split(b"=")[0].strip() for line in ours.splitlines() if b"=" in line}
        kept = [
            line
            for line in text.splitlines()
            if line.startswith((b"#", b" ", b"\t")) or line.split(b"=")[0].strip() not in keys
        ]
        (self.config_dir / "main.cf").write_bytes(b"\n".join(kept) + b"\n" + ours)
        smtpd = "inet  n       -       n       -       -       smtpd"
        expired_cert, expired_key = self.certs.expired
        wrong_cert, wrong_key = self.certs.wrong_name
        listeners = [
            f"{GOOD}:25 {smtpd}",
            f"{GOOD}:587 {smtpd}\n  -o smtpd_tls_security_level=encrypt",
            f"{GOOD}:465 {smtpd}\n  -o smtpd_tls_wrappermode=yes",
            f"{PLAIN_AUTH}:25 {smtpd}\n  -o smtpd_tls_auth_only=no",
            f"{OLD_TLS}:25 {smtpd}\n  -o smtpd_tls_protocols=>=TLSv1\n"
            "  -o tls_medium_cipherlist=DEFAULT:@SECLEVEL=0",
            f"{OPEN_RELAY}:25 {smtpd}\n  -o mynetworks=127.0.0.0/8",
            f"{EXPIRED}:25 {smtpd}\n  -o smtpd_tls_chain_files={expired_key},{expired_cert}",
            f"{WRONG_NAME}:25 {smtpd}\n  -o smtpd_tls_chain_files={wrong_key},{wrong_cert}",
        ]
        master = Path("/etc/postfix/master.cf").read_text()
        lines = [line for line in master.splitlines() if not line.startswith("smtp      inet")]
        (self.config_dir / "master.cf").write_text("\n".join(lines + listeners) + "\n")
        run(binary("postfix"), "-c", str(self.config_dir), "post-install", "create-missing")
        run(binary("postfix"), "-c", str(self.config_dir), "start")
        listening = [(a, 25) for a in (GOOD, PLAIN_AUTH, OLD_TLS, OPEN_RELAY, EXPIRED, WRONG_NAME)]
        for address, port in [*listening, (GOOD, 587), (GOOD, 465)]:
            if not wait_for_tcp(address, port, 20):
                raise RuntimeError(f"postfix did not listen on {address}:{port}: " + self.log())

    def stop(self) -> None:
        pid_file = self.base / "spool" / "pid" / "master.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@dataclass
class ProbeDovecot:
    """Dovecot with IMAP 143/993 and POP3 110/995 on `address`.

    `insecure`: cleartext login allowed before TLS, and TLS 1.0 accepted. The correct one also
    serves Postfix's SASL socket (`auth_socket`)."""

    base: Path
    address: str
    cert: tuple[Path, Path]
    insecure: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def auth_socket(self) -> Path:
        return self.base / "auth-client"

    def log(self) -> str:
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        binary("dovecot")
        (self.base / "run").mkdir(parents=True, exist_ok=True)
        (self.base / "mail").mkdir(exist_ok=True)
        cert, key = self.cert
        if self.insecure:
            security = (
                "disable_plaintext_auth = no\nssl_min_protocol = TLSv1\n"
                "ssl_cipher_list = DEFAULT:@SECLEVEL=0\n"
            )
        else:
            security = "disable_plaintext_auth = yes\nssl_min_protocol = TLSv1.2\n"
        conf = self.base / "dovecot.conf"
        conf.write_text(
            f"""base_dir = {self.base / "run"}
instance_name = mailsec-probe-{self.address}
listen = {self.address}
protocols = imap pop3
log_path = {self.base / "dovecot.log"}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{security}auth_mechanisms = plain login
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid={os.getuid()} gid={os.getgid()} home={self.base / "mail"}/%u
}}
mail_location = maildir:{self.base / "mail"}/%u
service auth {{
  unix_listener {self.auth_socket} {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  inet_listener imap {{
    port = 143
  }}
  inet_listener imaps {{
    port = 993
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 110
  }}
  inet_listener pop3s {{
    port = 995
    ssl = yes
  }}
}}
"""
        )
        check = subprocess.run(
            [binary("doveconf"), "-c", str(conf), "-n"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"dovecot config refused: {check.stderr}")
        self.process = subprocess.Popen(
            [binary("dovecot"), "-F", "-c", str(conf)],
            stdout=(self.base / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for port in (143, 993, 110, 995):
            if not wait_for_tcp(self.address, port, 20):
                self.stop()
                raise RuntimeError(f"dovecot did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def zone_files(directory: Path, tlsa: list[str]) -> Path:
    """probe.test (the MX name and its TLSA) and 127.in-addr.arpa (PTRs of the test addresses:
    all mx.probe.test but OLD_TLS's, which names another host)."""
    directory.mkdir(parents=True, exist_ok=True)
    soa = "@ 3600 IN SOA ns.probe.test. hostmaster.probe.test. 1 3600 600 86400 60\n@ 3600 IN NS ns.probe.test.\n"
    records = "".join(f"_25._tcp.mx 60 IN TLSA {record}\n" for record in tlsa)
    (directory / "probe.test.zone").write_text(
        "$ORIGIN probe.test.\n"
        + soa
        + f"ns 60 IN A {KNOT_ADDRESS}\nmx 60 IN A {GOOD}\nrelay 60 IN A {OPEN_RELAY}\n"
        + "@ 60 IN MX 10 mx.probe.test.\n@ 60 IN MX 20 relay.probe.test.\n"
        + records
    )
    ptrs = ""
    for address in (GOOD, PLAIN_AUTH, OPEN_RELAY, EXPIRED, WRONG_NAME):
        last = ipaddress.ip_address(address).packed[3]
        ptrs += f"{last}.0.0 60 IN PTR {MX_NAME}.\n"
    ptrs += f"{ipaddress.ip_address(OLD_TLS).packed[3]}.0.0 60 IN PTR elsewhere.example.org.\n"
    (directory / "127.in-addr.arpa.zone").write_text(
        "$ORIGIN 127.in-addr.arpa.\n" + soa.replace("ns.probe.test.", "ns.probe.test.") + ptrs
    )
    return directory
