"""Deploying a host's rendered configuration: validate in staging, swap, reload, verify, roll back.

`deployment_run(deployment_id)` does one deployment, start to end:

1. Take the host's lease: a conditional UPDATE of `Host.deploying_until` (free or expired), so
   one deployment runs per host across every worker; a worker that died leaves a lease that
   expires and is taken over. A second deployment waits for the lease (`wait` seconds) and
   then fails saying who holds it.
2. Connect with the pinned host key (a changed key fails here, before anything is sent),
   detect the Postfix and Dovecot versions, read the live files, render.
3. Every rendered file equal to the live one: "unchanged", nothing written, nothing reloaded.
4. Otherwise copy each config directory to a sibling staging directory (`DIR.mailsec-staging`),
   write the files rendered for the staging paths there and validate: `postfix -c STAGING
   check` (and no warning in its maillog), `postconf -c STAGING -n`, `doveconf -c
   STAGING/dovecot.conf -n`, `opendkim -n -x CONF` per instance; any non-zero exit or anything
   on stderr is a failure. On failure the staging copies are removed and the live files were
   never touched: "failed" with the validators' output.
5. Back up the live directories (`DIR.mailsec-backup`), swap each changed file atomically
   (written to a temporary name in the same directory, then renamed over the old one), reload
   what changed (Postfix, Dovecot, OpenDKIM), and check the services answer (an SMTP banner, an
   IMAP greeting). Any failure after the swap restores the old files the same way, reloads
   again and ends "rolled_back" with the whole log.

Commands run with the host's prefix (`sudo -n` when the SSH user is not root; see the README,
"Managed hosts: the deploy user", for the exact sudoers lines). Each command is in
`HostCommands`; a host whose binaries or service names differ sets them in `host.facts`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hosts.assemble import host_facts, render_for_host
from hosts.models import DeployedFile, Deployment, DeploymentState, Host, HostEvent
from hosts.render import HostFacts, RenderedFiles, RenderError
from hosts.render.diff import FileStatus, diff_files
from hosts.ssh import Completed, HostKeyMismatch, SshError, SshSession, service_banner
from mailsec import secrets

__all__ = [
    "FINISHED",
    "HostBusy",
    "HostCommands",
    "deployment_run",
    "lease_release",
    "lease_take",
]

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=15)
DEFAULT_WAIT = 300.0
FINISHED = (
    DeploymentState.SUCCEEDED,
    DeploymentState.UNCHANGED,
    DeploymentState.ROLLED_BACK,
    DeploymentState.FAILED,
)
STAGING_SUFFIX = ".mailsec-staging"
BACKUP_SUFFIX = ".mailsec-backup"
_LOG_PROBLEM = re.compile(r"\b(warning|error|fatal|panic):", re.IGNORECASE)


class HostBusy(Exception):
    """Another deployment holds the host's lease."""


class DeployFailed(Exception):
    """A step failed; the message is what the log says."""


def lease_take(host_id: int, *, now: Any = None) -> bool:
    """Take the host's deployment lease if it is free or expired. One UPDATE: atomic."""
    now = now or timezone.now()
    taken = (
        Host.objects.filter(pk=host_id)
        .filter(Q(deploying_until__isnull=True) | Q(deploying_until__lt=now))
        .update(deploying_until=now + LEASE)
    )
    return taken == 1


def lease_release(host_id: int) -> None:
    Host.objects.filter(pk=host_id).update(deploying_until=None)


def _staging(directory: str) -> str:
    return directory.rstrip("/") + STAGING_SUFFIX


def _backup(directory: str) -> str:
    return directory.rstrip("/") + BACKUP_SUFFIX


def _argv(value: Any, default: list[str]) -> list[str]:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return default


@dataclass(frozen=True)
class HostCommands:
    """Every command a deployment runs on a host (each under `prefix`).

    host.facts keys: `command_prefix` (argv; default `sudo -n` unless the SSH user is root),
    `postfix_reload`, `dovecot_reload` (argv), `opendkim_reload` (a list of argv), `smtp_check`
    and `imap_check` (`ADDRESS:PORT` whose greeting proves the service answers; default the
    host's address on 25 and 143), `dovecot_conf` (the main file's name, `dovecot.conf`).
    """

    prefix: tuple[str, ...]
    postfix: str
    postconf: str
    doveconf: str
    dovecot: str
    opendkim: str
    postfix_reload: tuple[str, ...]
    dovecot_reload: tuple[str, ...]
    opendkim_reload: tuple[tuple[str, ...], ...]
    dovecot_conf: str
    smtp_check: tuple[str, int]
    imap_check: tuple[str, int]

    @classmethod
    def for_host(cls, host: Host) -> HostCommands:
        facts: dict[str, Any] = host.facts if isinstance(host.facts, dict) else {}
        default_prefix = [] if host.ssh_user == "root" else ["sudo", "-n"]
        postfix = "/usr/sbin/postfix"
        opendkim_reload = facts.get("opendkim_reload")
        reloads: tuple[tuple[str, ...], ...] = ()
        if isinstance(opendkim_reload, list):
            reloads = tuple(tuple(_argv(r, [])) for r in opendkim_reload if _argv(r, []))
        return cls(
            prefix=tuple(_argv(facts.get("command_prefix"), default_prefix))
            if facts.get("command_prefix") != []
            else (),
            postfix=postfix,
            postconf="/usr/sbin/postconf",
            doveconf="/usr/bin/doveconf",
            dovecot="/usr/sbin/dovecot",
            opendkim="/usr/sbin/opendkim",
            postfix_reload=tuple(
                _argv(
                    facts.get("postfix_reload"),
                    [postfix, "-c", host.postfix_config_dir.rstrip("/"), "reload"],
                )
            ),
            dovecot_reload=tuple(
                _argv(facts.get("dovecot_reload"), ["/usr/bin/doveadm", "reload"])
            ),
            opendkim_reload=reloads,
            dovecot_conf=str(facts.get("dovecot_conf") or "dovecot.conf"),
            smtp_check=_endpoint(facts.get("smtp_check"), host.address, 25),
            imap_check=_endpoint(facts.get("imap_check"), host.address, 143),
        )


def _endpoint(value: Any, address: str, port: int) -> tuple[str, int]:
    if isinstance(value, str) and ":" in value:
        host, _, text = value.rpartition(":")
        if text.isdigit():
            return host.strip("[]"), int(text)
    return address, port


class _Log:
    """The deployment's log, saved as it grows so the UI can show progress."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        for line in message.rstrip("\n").splitlines() or [""]:
            self.lines.append(f"{stamp} {line}")
        self.deployment.log = "\n".join(self.lines) + "\n"
        Deployment.objects.filter(pk=self.deployment.pk).update(log=self.deployment.log)


class _Runner:
    def __init__(self, session: SshSession, commands: HostCommands, log: _Log) -> None:
        self.session = session
        self.commands = commands
        self.log = log

    def __call__(self, argv: list[str] | tuple[str, ...], *, privileged: bool = True) -> Completed:
        full = [*(self.commands.prefix if privileged else ()), *argv]
        self.log(f"$ {shlex.join(full)}")
        done = self.session.run(full, timeout=120)
        for stream, limit in ((done.stdout, 0 if done.rc == 0 else 40), (done.stderr, 200)):
            lines = stream.decode("utf-8", "replace").strip().splitlines()
            if done.rc == 0 and stream is done.stdout and len(lines) <= 3:
                limit = 3  # a version, a path: short answers are worth the line
            if lines and limit:
                more = [f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else []
                self.log("  " + "\n  ".join(lines[:limit] + more))
        if done.rc != 0:
            self.log(f"  exit {done.rc}")
        return done

    def strict(self, argv: list[str] | tuple[str, ...], what: str) -> Completed:
        """Exit 0 and nothing on stderr, or DeployFailed."""
        done = self(argv)
        if done.rc != 0 or done.stderr.strip():
            raise DeployFailed(f"{what} failed")
        return done


def _redirect(facts: HostFacts, dirs: dict[str, str]) -> HostFacts:
    return dataclasses.replace(
        facts,
        postfix_config_dir=dirs[facts.postfix_config_dir],
        dovecot_config_dir=dirs[facts.dovecot_config_dir],
        opendkim_config_dir=dirs[facts.opendkim_config_dir],
    )


def _directory_of(path: str, directories: list[str]) -> str:
    for directory in directories:
        if path.startswith(directory.rstrip("/") + "/"):
            return directory
    raise DeployFailed(f"{path} is outside the host's config directories")


def _write_atomic(
    session: SshSession, path: str, data: bytes, mode: int, owner: tuple[int, int] | None
) -> None:
    parent, _, name = path.rpartition("/")
    session.mkdir(parent)
    temporary = f"{parent}/.{name}.mailsec-new"
    session.write(temporary, data, mode)
    if owner is not None:
        session.chown(temporary, *owner)
    session.rename(temporary, path)


def _diff_text(live: dict[str, bytes], rendered: RenderedFiles) -> str:
    parts = []
    for entry in diff_files(live, rendered):
        if entry.status is FileStatus.UNCHANGED:
            continue
        if entry.hidden:
            parts.append(
                f"{entry.path}: {entry.status} (hidden) sha256 "
                f"{entry.current_sha256 or '-'} -> {entry.rendered_sha256}\n"
            )
        else:
            parts.append(entry.diff)
    return "".join(parts)


def _uid_gid(run: _Runner, user: str) -> tuple[int, int] | None:
    uid, gid = run(["id", "-u", user], privileged=False), run(["id", "-g", user], privileged=False)
    if uid.rc != 0 or gid.rc != 0:
        return None
    return int(uid.stdout.strip()), int(gid.stdout.strip())


def _greets(address: str, port: int, expected: str, log: _Log, *, wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    last = ""
    while True:
        try:
            line = service_banner(address, port, timeout=5)
            if line.startswith(expected):
                log(f"{address}:{port} answers: {line}")
                return True
            last = f"answered {line!r}"
        except SshError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            log(f"{address}:{port} does not answer as expected: {last}")
            return False
        time.sleep(0.3)


def _wait_for_lease(host_id: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not lease_take(host_id):
        if time.monotonic() > deadline:
            until = (
                Host.objects.filter(pk=host_id).values_list("deploying_until", flat=True).first()
            )
            raise HostBusy(f"another deployment holds this host until {until:%Y-%m-%d %H:%M:%S}")
        time.sleep(0.2)


def deployment_run(
    deployment_id: int,
    *,
    wait: float = DEFAULT_WAIT,
    session_factory: Callable[..., SshSession] = SshSession,
) -> dict[str, Any]:
    """Run the deployment (see the module docstring); returns {"state", "deployment"}."""
    deployment = Deployment.objects.select_related("host").get(pk=deployment_id)
    if deployment.state in FINISHED:
        return {"state": deployment.state, "deployment": deployment.pk}
    host_id = deployment.host_id
    log = _Log(deployment)
    log(deployment.log.strip()) if deployment.log.strip() else None
    try:
        _wait_for_lease(host_id, wait)
    except HostBusy as exc:
        log(str(exc))
        _finish(deployment, DeploymentState.FAILED, log)
        return {"state": deployment.state, "deployment": deployment.pk}
    try:
        deployment.state = DeploymentState.RUNNING
        deployment.started_at = timezone.now()
        deployment.save(update_fields=["state", "started_at"])
        host = Host.objects.select_related("policy", "organisation").get(pk=host_id)
        state = _deploy(host, deployment, log, session_factory)
    except HostKeyMismatch as exc:
        log(f"refused: {exc}")
        state = DeploymentState.FAILED
    except (SshError, RenderError, DeployFailed, OSError) as exc:
        log(f"failed: {exc}")
        state = DeploymentState.FAILED
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        _finish(deployment, DeploymentState.FAILED, log)
        lease_release(host_id)
        raise
    _finish(deployment, state, log)
    lease_release(host_id)
    return {"state": deployment.state, "deployment": deployment.pk}


def _finish(deployment: Deployment, state: str, log: _Log) -> None:
    deployment.state = state
    deployment.finished_at = timezone.now()
    deployment.save(update_fields=["state", "finished_at", "log", "files", "diff"])
    if state in (DeploymentState.FAILED, DeploymentState.ROLLED_BACK):
        HostEvent.objects.create(
            host_id=deployment.host_id,
            kind="deploy_failed" if state == DeploymentState.FAILED else "rolled_back",
            summary=(log.lines[-1] if log.lines else state)[:500],
            details={"deployment": deployment.pk},
        )


def _deploy(
    host: Host, deployment: Deployment, log: _Log, session_factory: Callable[..., SshSession]
) -> str:
    if not host.host_key_confirmed or not host.host_key:
        raise DeployFailed("the host key is not confirmed: confirm its fingerprint first")
    if not host.ssh_private_key:
        raise DeployFailed("the host has no SSH client key")
    private = secrets.decrypt(host.ssh_private_key, context=host.secret_context).decode("ascii")
    commands = HostCommands.for_host(host)
    log(
        f"connecting to {host.ssh_user}@{host.address}:{host.ssh_port} (host key {host.host_key_fingerprint})"
    )
    with session_factory(
        host.address, host.ssh_port, host.ssh_user, private, host.host_key
    ) as session:
        run = _Runner(session, commands, log)
        _detect_versions(host, run)
        facts = host_facts(host)
        directories = [
            facts.postfix_config_dir,
            facts.dovecot_config_dir,
            facts.opendkim_config_dir,
        ]
        base_paths = [
            f"{facts.postfix_config_dir.rstrip('/')}/{n}" for n in ("main.cf", "master.cf")
        ]
        current = {p: data for p in base_paths if (data := session.read(p)) is not None}
        rendered = render_for_host(host, current, facts=facts)
        live: dict[str, bytes | None] = {f.path: session.read(f.path) for f in rendered}
        modes = {path: session.mode(path) for path, data in live.items() if data is not None}
        present = {p: b for p, b in live.items() if b is not None}
        changed = [f for f in rendered if live[f.path] != f.content]
        deployment.files = [
            {"path": f.path, "sha256": f.sha256, "changed": live[f.path] != f.content}
            for f in rendered
        ]
        deployment.diff = _diff_text(present, rendered)
        deployment.save(update_fields=["files", "diff"])
        if not changed:
            log("every file is as rendered: nothing written, nothing reloaded")
            _record_files(host, deployment, rendered)
            return DeploymentState.UNCHANGED
        log(
            f"{len(changed)} of {len(rendered)} files change: " + ", ".join(f.path for f in changed)
        )
        touched = {_directory_of(f.path, directories) for f in changed}
        staged = _validate_in_staging(session, run, commands, facts, host, directories, rendered)
        log("validation passed" if staged else "validation failed")
        if not staged:
            return DeploymentState.FAILED
        for directory in sorted(touched):
            backup = _backup(directory)
            run(["rm", "-rf", "--one-file-system", "--", backup])
            if session.is_dir(directory):  # a first deployment creates the directory
                run.strict(["cp", "-a", "--", directory, backup], f"backing up {directory}")
        owner = _uid_gid(run, facts.opendkim_user) if any(f.secret for f in changed) else None
        done: list[str] = []
        try:
            for file in changed:
                _write_atomic(
                    session, file.path, file.content, file.mode, owner if file.secret else None
                )
                done.append(file.path)
            log("swapped: " + ", ".join(done))
            _reload_and_verify(run, commands, facts, touched, log)
        except (SshError, DeployFailed) as exc:
            log(f"failed after the swap: {exc}; restoring the previous files")
            _restore(session, live, modes, done, owner, log)
            try:
                _reload_and_verify(run, commands, facts, touched, log)
                log("rolled back: the previous configuration is live again")
            except (SshError, DeployFailed) as again:
                log(f"after the rollback: {again}")
            return DeploymentState.ROLLED_BACK
        _record_files(host, deployment, rendered)
        log("deployed")
        return DeploymentState.SUCCEEDED


def _detect_versions(host: Host, run: _Runner) -> None:
    postconf = run(
        ["/usr/sbin/postconf", "-c", host.postfix_config_dir.rstrip("/"), "-h", "mail_version"],
        privileged=False,
    )
    dovecot = run(["/usr/sbin/dovecot", "--version"], privileged=False)
    facts = dict(host.facts) if isinstance(host.facts, dict) else {}
    if postconf.rc == 0 and postconf.stdout.strip():
        facts["postfix_version"] = postconf.stdout.decode("ascii", "replace").strip()
    if dovecot.rc == 0 and dovecot.stdout.strip():
        facts["dovecot_version"] = dovecot.stdout.decode("ascii", "replace").strip()
    if facts != host.facts:
        host.facts = facts
        Host.objects.filter(pk=host.pk).update(facts=facts)


def _validate_in_staging(
    session: SshSession,
    run: _Runner,
    commands: HostCommands,
    facts: HostFacts,
    host: Host,
    directories: list[str],
    rendered: RenderedFiles,
) -> bool:
    """Copy the config directories to staging, write the rendering for there, validate."""
    dirs = {d: _staging(d) for d in directories}
    log = run.log
    try:
        for live_dir, staging in dirs.items():
            run(["rm", "-rf", "--one-file-system", "--", staging])
            if session.is_dir(live_dir):
                run.strict(["cp", "-a", "--", live_dir, staging], f"copying {live_dir} to staging")
            else:
                session.mkdir(staging)
        staged_facts = _redirect(facts, dirs)
        base = [f"{staged_facts.postfix_config_dir}/{n}" for n in ("main.cf", "master.cf")]
        current = {p: data for p in base if (data := session.read(p)) is not None}
        staged = render_for_host(host, current, facts=staged_facts)
        for file in staged:
            _write_atomic(session, file.path, file.content, file.mode, None)
        postfix_dir = dirs[facts.postfix_config_dir]
        maillog = (
            run([commands.postconf, "-c", postfix_dir, "-h", "maillog_file"], privileged=False)
            .stdout.decode("utf-8", "replace")
            .strip()
        )
        before = len(session.read(maillog) or b"") if maillog else 0
        try:
            run.strict([commands.postfix, "-c", postfix_dir, "check"], "postfix check")
        finally:
            if maillog:
                logged = (session.read(maillog) or b"")[before:].decode("utf-8", "replace")
                problems = [line for line in logged.splitlines() if _LOG_PROBLEM.search(line)]
                if problems:
                    log("postfix check logged:\n" + "\n".join(problems))
                    raise DeployFailed("postfix check logged warnings")
        run.strict([commands.postconf, "-c", postfix_dir, "-n"], "postconf -n")
        dovecot_conf = f"{dirs[facts.dovecot_config_dir]}/{commands.dovecot_conf}"
        run.strict([commands.doveconf, "-c", dovecot_conf, "-n"], "doveconf -n")
        opendkim_dir = dirs[facts.opendkim_config_dir]
        for file in staged:
            if file.path.startswith(opendkim_dir + "/") and file.path.endswith(".conf"):
                run.strict([commands.opendkim, "-n", "-x", file.path], "opendkim -n")
        return True
    except DeployFailed as exc:
        log(f"refused at validation: {exc}; the live files were not touched")
        return False
    finally:
        for staging in dirs.values():
            run(["rm", "-rf", "--one-file-system", "--", staging])


def _reload_and_verify(
    run: _Runner, commands: HostCommands, facts: HostFacts, touched: set[str], log: _Log
) -> None:
    if facts.postfix_config_dir in touched:
        run.strict(commands.postfix_reload, "postfix reload")
    if facts.dovecot_config_dir in touched:
        run.strict(commands.dovecot_reload, "dovecot reload")
    if facts.opendkim_config_dir in touched:
        if not commands.opendkim_reload:
            log("OpenDKIM: no opendkim_reload command in the host's facts; not reloaded")
        for argv in commands.opendkim_reload:
            run.strict(argv, "opendkim reload")
    time.sleep(0.5)  # let the reloaded masters replace their listeners
    if not _greets(*commands.smtp_check, "220", log):
        raise DeployFailed("the SMTP service does not answer")
    if not _greets(*commands.imap_check, "* OK", log):
        raise DeployFailed("the IMAP service does not answer")


def _restore(
    session: SshSession,
    live: dict[str, bytes | None],
    modes: dict[str, int | None],
    done: list[str],
    owner: tuple[int, int] | None,
    log: _Log,
) -> None:
    """Put back each swapped file as it was (content and mode); remove the ones it added."""
    for path in reversed(done):
        old = live[path]
        if old is None:
            session.remove(path)
        else:
            mode = modes.get(path) or 0o644
            _write_atomic(session, path, old, mode, owner if path.endswith(".private") else None)
    log("restored: " + ", ".join(done))


@transaction.atomic
def _record_files(host: Host, deployment: Deployment, rendered: RenderedFiles) -> None:
    paths = [f.path for f in rendered]
    for file in rendered:
        DeployedFile.objects.update_or_create(
            host=host,
            path=file.path,
            defaults={
                "sha256": file.sha256,
                "mode": file.mode,
                "secret": file.secret,
                "content": b"" if file.secret else file.content,
                "deployment": deployment,
            },
        )
    DeployedFile.objects.filter(host=host).exclude(path__in=paths).delete()
