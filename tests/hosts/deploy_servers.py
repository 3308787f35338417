"""Real servers for the deployment tests: an sshd standing for the managed host, and the Postfix
and Dovecot instances whose config directories that "host" holds (test temporary dirs).

sshd listens on 127.0.0.70, Postfix on 127.0.0.71, Dovecot on 127.0.0.72; every process is
started in its own process group and stopped by its pid, even when the test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port, missing, stop_process, wait_for_tcp

SSH_ADDRESS = "127.0.0.70"
POSTFIX_ADDRESS = "127.0.0.71"
DOVECOT_ADDRESS = "127.0.0.72"
OPENDKIM_ADDRESS = "127.0.0.73"
KNOT_ADDRESS = "127.0.0.74"
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def binary(name: str) -> str:
    found = shutil.which(name, path=PATH)
    if found is None:
        missing(f"{name} is not installed (scripts/install-system-deps installs it)")
    assert found is not None
    return found


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


@dataclass
class Sshd:
    """An OpenSSH server with its own host key, trusting one client key."""

    directory: Path
    address: str = SSH_ADDRESS
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host_key_line(self) -> str:
        parts = (self.directory / "hostkey.pub").read_text().split()
        return f"{parts[0]} {parts[1]}"

    def authorize(self, public_line: str) -> None:
        with (self.directory / "authorized_keys").open("a") as handle:
            handle.write(public_line.strip() + "\n")

    def new_host_key(self) -> None:
        """Replace the host key (a reinstalled server, or a man in the middle) and restart."""
        self.stop()
        for name in ("hostkey", "hostkey.pub"):
            (self.directory / name).unlink()
        run(
            binary("ssh-keygen"),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            str(self.directory / "hostkey"),
        )
        self.start()

    def start(self) -> None:
        sshd = binary("sshd")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "hostkey").exists():
            run(
                binary("ssh-keygen"),
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                str(self.directory / "hostkey"),
            )
        (self.directory / "authorized_keys").touch()
        if not self.port:
            self.port = free_port(self.address)
        config = self.directory / "sshd_config"
        config.write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            f"HostKey {self.directory / 'hostkey'}\n"
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            f"PidFile {self.directory / 'sshd.pid'}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sshd, "-D", "-f", str(config), "-E", str(self.directory / "log")],
            start_new_session=True,
        )
        if not wait_for_tcp(self.address, self.port):
            self.stop()
            raise RuntimeError("sshd did not start: " + (self.directory / "log").read_text())

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@dataclass
class PostfixInstance:
    """A Postfix with its config in `base/etc`, queue in `base/spool`, log in `base/maillog`."""

    base: Path
    address: str = POSTFIX_ADDRESS
    port: int = 0
    submission_port: int = 0
    relayhost: str = ""

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    def prepare(self) -> None:
        binary("postfix")
        for name in ("etc", "spool", "data"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix")
        if not self.port:
            self.port = free_port(self.address)
        if not self.submission_port:
            self.submission_port = free_port(self.address)
        main = Path("/etc/postfix/main.cf")
        if main.exists():
            text = main.read_bytes()
        else:
            text = b"".join(
                Path(p).read_bytes()
                for p in ("/usr/share/postfix/main.cf.debian", "/usr/share/postfix/main.cf.tls")
            )
        if not text.endswith(b"\n"):
            text += b"\n"
        base = self.base
        text += (
            f"queue_directory = {base / 'spool'}\ndata_directory = {base / 'data'}\n"
            f"maillog_file = {self.maillog}\nmaillog_file_prefixes = /var,/dev/stdout,{base}\n"
            "inet_interfaces = all\ninet_protocols = ipv4\nmydestination =\n"
            "alias_maps =\nalias_database =\n"
            # The system resolver is never asked about a client (no DNS outside the test).
            "smtpd_peername_lookup = no\n"
            f"relayhost = {self.relayhost}\n"
        ).encode()
        (self.config_dir / "main.cf").write_bytes(text)
        master = Path("/etc/postfix/master.cf").read_text()
        lines = []
        for line in master.splitlines():
            if line.startswith("smtp ") and " inet " in line:
                line = f"{self.address}:{self.port}" + line[len("smtp") :]
            lines.append(line)
        (self.config_dir / "master.cf").write_text("\n".join(lines) + "\n")
        run(binary("postfix"), "-c", str(self.config_dir), "post-install", "create-missing")

    def start(self) -> None:
        run(binary("postfix"), "-c", str(self.config_dir), "start")
        if not wait_for_tcp(self.address, self.port, 20):
            raise RuntimeError("postfix did not start: " + self.log())

    def master_pid(self) -> int:
        return int((self.base / "spool" / "pid" / "master.pid").read_text().split()[0])

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def reloads(self) -> int:
        return self.log().count("reload -- version")

    def stop(self) -> None:
        pid_file = self.base / "spool" / "pid" / "master.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split()[0])
        except ValueError:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def smtp(self, source: str = "127.0.0.75") -> smtplib.SMTP:
        return smtplib.SMTP(self.address, self.port, timeout=10, source_address=(source, 0))


@dataclass
class DovecotInstance:
    """A Dovecot whose dovecot.conf includes `conf.d/*.conf` from its own config dir."""

    base: Path
    address: str = DOVECOT_ADDRESS
    imap_port: int = 0
    cert: Path = field(default_factory=Path)
    key: Path = field(default_factory=Path)

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def conf(self) -> Path:
        return self.config_dir / "dovecot.conf"

    def prepare(self) -> None:
        binary("dovecot")
        (self.config_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        for name in ("run", "mail"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        if not self.imap_port:
            self.imap_port = free_port(self.address)
        self.cert = self.base / "cert.pem"
        self.key = self.base / "key.pem"
        run(
            binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=mx1.example.org", "-keyout", str(self.key), "-out", str(self.cert),
        )  # fmt: skip
        pop3 = free_port(self.address)
        imaps = free_port(self.address)
        pop3s = free_port(self.address)
        self.conf.write_text(
            f"""base_dir = {self.base / "run"}
instance_name = mailsec-deploy-test
listen = {self.address}
protocols = imap
log_path = {self.base / "dovecot.log"}
ssl_cert = <{self.cert}
ssl_key = <{self.key}
mail_location = maildir:{self.base / "mail"}/%u
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid={os.getuid()} gid={os.getgid()} home={self.base / "mail"}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {imaps}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
  }}
}}
!include_try conf.d/*.conf
"""
        )

    def start(self) -> None:
        # Dovecot's daemon keeps inherited pipes open: its output goes nowhere.
        subprocess.run(
            [binary("dovecot"), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=30, check=True, start_new_session=True,
        )  # fmt: skip
        if not wait_for_tcp(self.address, self.imap_port, 20):
            raise RuntimeError("dovecot did not start: " + self.log())

    def log(self) -> str:
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        pid_file = self.base / "run" / "master.pid"
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
