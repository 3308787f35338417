"""A real Dovecot for the IMAP tests: its own config, users, mail and test CA, on 127.0.0.41.

Users come from a passwd-file, mail lives in Maildirs under the instance's directory, and the
server's certificate (for 127.0.0.41 and imap.reports.test) is signed by a CA made here, which
the tests give mailsec as MAILSEC_TLS_CA_FILE. Started with `dovecot -F` in its own process
group and stopped by that pid only.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.certificates import cert_pem, key_pem, make_ca
from tests.servers import free_port, missing, stop_process, wait_for_tcp

IMAP_ADDRESS = "127.0.0.41"
HOST_NAME = "imap.reports.test"
MAIL_USER = "nobody"  # the system user owning the Maildirs (never root)


def make_certificates(
    directory: Path, address: str = IMAP_ADDRESS, host_name: str = HOST_NAME
) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for the address and host name (by default
    127.0.0.41 and imap.reports.test): (ca_file, cert_file, key_file)."""
    now = datetime.datetime.now(datetime.UTC)
    hour, day = datetime.timedelta(hours=1), datetime.timedelta(days=1)
    ca = make_ca("mailsec test CA", not_before=now - hour, not_after=now + 2 * day)
    cert, key = ca.issue(
        host_name,
        dns_names=[host_name],
        ip_addresses=[address],
        not_before=now - hour,
        not_after=now + day,
    )
    ca_file = directory / "ca.pem"
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.pem)
    cert_file.write_bytes(cert_pem(cert))
    key_file.write_bytes(key_pem(key))
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@dataclass
class DovecotServer:
    """Dovecot on 127.0.0.41 with an IMAPS and an IMAP (STARTTLS) port, both picked free.

    `capabilities`, when set, replaces the IMAP capability list announced after login (a
    server without MOVE, say).
    """

    users: dict[str, str]
    capabilities: str = ""
    directory: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="mailsec-dovecot-"))
    )
    imaps_port: int = field(default_factory=lambda: free_port(IMAP_ADDRESS))
    imap_port: int = field(default_factory=lambda: free_port(IMAP_ADDRESS))
    process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def config(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def log(self) -> str:
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def maildir(self, user: str) -> Path:
        return self.directory / "mail" / user

    def start(self) -> None:
        if shutil.which("dovecot") is None:
            missing("dovecot is not installed")
        # The login and mail processes run as other users: they must reach the directory.
        self.directory.chmod(0o755)
        _ca, cert, key = make_certificates(self.directory)
        passwd = self.directory / "passwd"
        passwd.write_text(
            "".join(f"{user}:{{PLAIN}}{pw}::::::\n" for user, pw in self.users.items())
        )
        passwd.chmod(0o644)
        (self.directory / "mail").mkdir()
        account = pwd.getpwnam(MAIL_USER)
        os.chown(self.directory / "mail", account.pw_uid, account.pw_gid)
        capability = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        self.config.write_text(
            f"""
base_dir = {self.directory}/run
instance_name = mailsec-test-{self.imaps_port}
listen = {IMAP_ADDRESS}
protocols = imap
log_path = {self.directory}/dovecot.log
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={account.pw_uid} gid={account.pw_gid} home={self.directory}/mail/%u
}}
first_valid_uid = 1
mail_location = maildir:{self.directory}/mail/%u/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
{capability}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )
        check = subprocess.run(
            ["doveconf", "-c", str(self.config), "-n"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"dovecot config refused: {check.stderr}")
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.config)],
            stdout=(self.directory / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not (
            wait_for_tcp(IMAP_ADDRESS, self.imaps_port, timeout=20)
            and wait_for_tcp(IMAP_ADDRESS, self.imap_port, timeout=5)
        ):
            self.stop()
            raise RuntimeError(f"dovecot did not start:\n{self.log}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
