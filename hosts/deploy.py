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
from hosts.render import HostFacts, HostFile, RenderedFiles, RenderError
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

# Longer than deploy_host's hard time limit (hosts.tasks), so a lease outlives its worker only
# when that worker died, never while it still runs.
LEASE = timedelta(minutes=20)
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


RSYNC = "/usr/bin/rsync"
RM = "/usr/bin/rm"
MKDIR = "/usr/bin/mkdir"
TAGS = ("postfix", "dovecot", "opendkim")


@dataclass(frozen=True)
class HostCommands:
    """Every command a deployment runs on a host; `privileged()` lists those run under `prefix`
    (`sudo -n` unless the SSH user is root), which `sudoers()` turns into the exact lines.

    Files reach the config directories in two steps: mailsec writes them over SFTP into its own
    upload directory (`upload_dir`, owned by the deploy user), then root's rsync copies them in
    (each file written to a temporary name in the target directory and renamed: atomic), owned
    by root (the OpenDKIM directory by the OpenDKIM user). Backups and restores are rsyncs of a
    whole directory to and from `DIR.mailsec-backup`.

    host.facts keys: `command_prefix` (argv), `upload_dir` (default /var/lib/mailsec-deploy),
    `postfix_reload`, `dovecot_reload` (argv), `opendkim_reload` (a list of argv), `smtp_check`
    and `imap_check` (`ADDRESS:PORT` whose greeting proves the service answers; default the
    host's address on 25 and 143), `dovecot_conf` (the main file's name, `dovecot.conf`).
    """

    prefix: tuple[str, ...]
    dirs: dict[str, str]
    upload_dir: str
    opendkim_user: str
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
        prefix = facts.get("command_prefix")
        upload = facts.get("upload_dir")
        opendkim_user = facts.get("opendkim_user")
        return cls(
            prefix=() if prefix == [] else tuple(_argv(prefix, default_prefix)),
            dirs={
                "postfix": host.postfix_config_dir.rstrip("/"),
                "dovecot": host.dovecot_config_dir.rstrip("/"),
                "opendkim": host.opendkim_config_dir.rstrip("/"),
            },
            upload_dir=(upload if isinstance(upload, str) else "/var/lib/mailsec-deploy").rstrip(
                "/"
            ),
            opendkim_user=opendkim_user if isinstance(opendkim_user, str) else "opendkim",
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

    # Where each tag's files are uploaded: for staging, for the swap.
    def upload(self, kind: str, tag: str) -> str:
        return f"{self.upload_dir}/{kind}/{tag}"

    def _chown(self, tag: str) -> list[str]:
        return [f"--chown={self.opendkim_user}:{self.opendkim_user}"] if tag == "opendkim" else []

    def create_dir(self, tag: str) -> list[str]:
        return [MKDIR, "-p", "--", self.dirs[tag]]

    def stage_copy(self, tag: str) -> list[str]:
        directory = self.dirs[tag]
        return [RSYNC, "-a", "--delete", "--", f"{directory}/", f"{_staging(directory)}/"]

    def stage_files(self, tag: str) -> list[str]:
        source = self.upload("staging", tag)
        return [RSYNC, "-rpt", "-c", "--", f"{source}/", f"{_staging(self.dirs[tag])}/"]

    def stage_remove(self, tag: str) -> list[str]:
        return [RM, "-rf", "--one-file-system", "--", _staging(self.dirs[tag])]

    def backup(self, tag: str) -> list[str]:
        directory = self.dirs[tag]
        return [RSYNC, "-a", "--delete", "--", f"{directory}/", f"{_backup(directory)}/"]

    def swap(self, tag: str) -> list[str]:
        source = self.upload("live", tag)
        return [RSYNC, "-rpt", "-c", *self._chown(tag), "--", f"{source}/", f"{self.dirs[tag]}/"]

    def changes(self, tag: str) -> list[str]:
        """The swap as a dry run: the names of the files it would write."""
        source = self.upload("live", tag)
        return [
            RSYNC, "-rpt", "-c", *self._chown(tag), "--dry-run", "--out-format=%n", "--",
            f"{source}/", f"{self.dirs[tag]}/",
        ]  # fmt: skip

    def restore(self, tag: str) -> list[str]:
        directory = self.dirs[tag]
        return [RSYNC, "-a", "--delete", "--", f"{_backup(directory)}/", f"{directory}/"]

    def remove_new_dir(self, tag: str) -> list[str]:
        return [RM, "-rf", "--one-file-system", "--", self.dirs[tag]]

    def validators(self) -> list[tuple[str, list[str]]]:
        staging = {tag: _staging(d) for tag, d in self.dirs.items()}
        out = [
            ("postfix check", [self.postfix, "-c", staging["postfix"], "check"]),
            ("postconf -n", [self.postconf, "-c", staging["postfix"], "-n"]),
            (
                "doveconf -n",
                [self.doveconf, "-c", f"{staging['dovecot']}/{self.dovecot_conf}", "-n"],
            ),
        ]
        for algorithm in ("rsa", "ed25519"):
            conf = f"{staging['opendkim']}/mailsec-{algorithm}.conf"
            out.append(("opendkim -n", [self.opendkim, "-n", "-x", conf]))
        return out

    def privileged(self) -> list[list[str]]:
        """Every command a deployment runs under the prefix, in the order it may run them."""
        commands: list[list[str]] = [self.create_dir("opendkim")]
        for tag in TAGS:
            commands += [self.stage_copy(tag), self.stage_files(tag), self.stage_remove(tag)]
        commands += [argv for _what, argv in self.validators()]
        for tag in TAGS:
            commands += [self.changes(tag), self.backup(tag), self.swap(tag), self.restore(tag)]
        # Only the OpenDKIM directory may be new (a host's first signing policy): a rollback of
        # that first deployment removes it again.
        commands.append(self.remove_new_dir("opendkim"))
        commands += [list(self.postfix_reload), list(self.dovecot_reload)]
        commands += [list(argv) for argv in self.opendkim_reload]
        return commands

    def sudoers(self, user: str) -> list[str]:
        """The sudoers lines that allow exactly these commands (no wildcards, no shell)."""
        return [
            f"{user} ALL=(root) NOPASSWD: {_sudoers_command(argv)}" for argv in self.privileged()
        ]


def _sudoers_command(argv: list[str]) -> str:
    """A command line as sudoers reads it: special characters escaped with a backslash."""
    return " ".join(re.sub(r"([,:=\\ ])", r"\\\1", word) for word in argv)


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
        self.lines: list[str] = deployment.log.splitlines()  # a redelivered run continues it

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

    def strict(
        self, argv: list[str] | tuple[str, ...], what: str, *, privileged: bool = True
    ) -> Completed:
        """Exit 0 and nothing on stderr, or DeployFailed."""
        done = self(argv, privileged=privileged)
        if done.rc != 0 or done.stderr.strip():
            raise DeployFailed(f"{what} failed")
        return done


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


def _acquire(host_id: int, deployment_id: int) -> str | None:
    """Take the lease and mark the deployment running, in one transaction on the host's row.

    A deployment already running with nobody else running on the host was left by a worker
    that died (its task redelivered): it takes its own lease over. Returns how the lease was
    taken, or None while another deployment holds it.
    """
    with transaction.atomic():
        Host.objects.select_for_update().filter(pk=host_id).first()
        now = timezone.now()
        how: str | None = "taken" if lease_take(host_id, now=now) else None
        if how is None:
            running = Deployment.objects.filter(host_id=host_id, state=DeploymentState.RUNNING)
            if (
                running.filter(pk=deployment_id).exists()
                and not running.exclude(pk=deployment_id).exists()
            ):
                Host.objects.filter(pk=host_id).update(deploying_until=now + LEASE)
                how = "taken over from this deployment's previous worker"
        if how is not None:
            Deployment.objects.filter(pk=deployment_id).update(
                state=DeploymentState.RUNNING, started_at=now
            )
        return how


def _wait_for_lease(host_id: int, deployment_id: int, wait: float) -> str:
    deadline = time.monotonic() + wait
    while (how := _acquire(host_id, deployment_id)) is None:
        if time.monotonic() > deadline:
            until = (
                Host.objects.filter(pk=host_id).values_list("deploying_until", flat=True).first()
            )
            raise HostBusy(f"another deployment holds this host until {until:%Y-%m-%d %H:%M:%S}")
        time.sleep(0.2)
    return how


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
    try:
        how = _wait_for_lease(host_id, deployment.pk, wait)
    except HostBusy as exc:
        log(str(exc))
        _finish(deployment, DeploymentState.FAILED, log)
        return {"state": deployment.state, "deployment": deployment.pk}
    try:
        deployment.refresh_from_db(fields=["state", "started_at"])
        log(f"lease {how}")
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
        f"connecting to {host.ssh_user}@{host.address}:{host.ssh_port} "
        f"(host key {host.host_key_fingerprint})"
    )
    with session_factory(
        host.address, host.ssh_port, host.ssh_user, private, host.host_key
    ) as session:
        run = _Runner(session, commands, log)
        try:
            return _deploy_on(host, deployment, log, session, run, commands)
        finally:
            # The upload directory held the rendered files, private keys included.
            run(["rm", "-rf", "--", f"{commands.upload_dir}/live", f"{commands.upload_dir}/staging"],
                privileged=False)  # fmt: skip


def _deploy_on(
    host: Host,
    deployment: Deployment,
    log: _Log,
    session: SshSession,
    run: _Runner,
    commands: HostCommands,
) -> str:
    _detect_versions(host, run)
    facts = host_facts(host)
    base_paths = [f"{commands.dirs['postfix']}/{n}" for n in ("main.cf", "master.cf")]
    current = {p: data for p in base_paths if (data := _read(session, p)) is not None}
    rendered = render_for_host(host, current, facts=facts)
    live: dict[str, bytes | None] = {f.path: _read(session, f.path) for f in rendered}
    by_tag = _by_tag(commands, rendered)
    _upload(session, run, commands, "live", by_tag)
    changed_paths = _changes(run, commands, by_tag)
    changed = [f for f in rendered if f.path in changed_paths]
    deployment.files = [
        {"path": f.path, "sha256": f.sha256, "changed": f.path in changed_paths} for f in rendered
    ]
    present = {p: b for p, b in live.items() if isinstance(b, bytes)}
    deployment.diff = _diff_text(present, rendered)
    deployment.save(update_fields=["files", "diff"])
    if not changed:
        log("every file is as rendered: nothing written, nothing reloaded")
        _record_files(host, deployment, rendered)
        return DeploymentState.UNCHANGED
    log(f"{len(changed)} of {len(rendered)} files change: " + ", ".join(f.path for f in changed))
    touched = {tag for tag, files in by_tag.items() if any(f in changed for f in files)}
    if not _validate_in_staging(session, run, commands, facts, host, by_tag):
        return DeploymentState.FAILED
    log("validation passed")
    existed = {tag: session.is_dir(commands.dirs[tag]) for tag in touched}
    for tag in sorted(touched):
        if existed[tag]:
            run.strict(commands.backup(tag), f"backing up {commands.dirs[tag]}")
    try:
        for tag in sorted(touched):
            if not existed[tag]:
                run.strict(commands.create_dir(tag), f"creating {commands.dirs[tag]}")
            run.strict(commands.swap(tag), f"writing {commands.dirs[tag]}")
        log("swapped: " + ", ".join(f.path for f in changed))
        _reload_and_verify(run, commands, touched, log)
    except (SshError, DeployFailed) as exc:
        log(f"failed after the swap: {exc}; restoring the previous files")
        try:
            for tag in sorted(touched):
                if existed[tag]:
                    run.strict(commands.restore(tag), f"restoring {commands.dirs[tag]}")
                else:
                    run.strict(commands.remove_new_dir(tag), f"removing {commands.dirs[tag]}")
            _reload_and_verify(run, commands, touched, log)
            log("rolled back: the previous configuration is live again")
        except (SshError, DeployFailed) as again:
            log(f"after the rollback: {again}")
        return DeploymentState.ROLLED_BACK
    _record_files(host, deployment, rendered)
    log("deployed")
    return DeploymentState.SUCCEEDED


def _read(session: SshSession, path: str) -> bytes | None:
    """The live file, or None when it does not exist or the deploy user may not read it (a
    private key): the rsync dry run then says whether it changes."""
    try:
        return session.read(path)
    except SshError:
        return None


def _by_tag(commands: HostCommands, rendered: RenderedFiles) -> dict[str, list[HostFile]]:
    out: dict[str, list[HostFile]] = {tag: [] for tag in TAGS}
    for file in rendered:
        out[_tag_of(commands.dirs, file.path)].append(file)
    return {tag: files for tag, files in out.items() if files}


def _tag_of(dirs: dict[str, str], path: str) -> str:
    for tag in TAGS:
        if path.startswith(dirs[tag] + "/"):
            return tag
    raise DeployFailed(f"{path} is outside the host's config directories")


def _upload(
    session: SshSession,
    run: _Runner,
    commands: HostCommands,
    kind: str,
    by_tag: dict[str, list[HostFile]],
    dirs: dict[str, str] | None = None,
) -> None:
    """Write the files into mailsec's own upload directory, under their config dir's tag."""
    dirs = dirs or commands.dirs
    root = f"{commands.upload_dir}/{kind}"
    run.strict(["rm", "-rf", "--", root], "clearing the upload directory", privileged=False)
    for tag, files in by_tag.items():
        target = commands.upload(kind, tag)
        session.mkdir(target, 0o755)
        for file in files:
            relative = file.path[len(dirs[tag]) + 1 :]
            path = f"{target}/{relative}"
            session.mkdir(path.rpartition("/")[0], 0o755)
            session.write(path, file.content, file.mode)


def _changes(run: _Runner, commands: HostCommands, by_tag: dict[str, list[HostFile]]) -> set[str]:
    """The rendered files whose content or mode differs on the host (rsync's own check)."""
    changed: set[str] = set()
    for tag in by_tag:
        done = run(commands.changes(tag))
        if done.rc != 0 and b"change_dir" in done.stderr:
            changed |= {f.path for f in by_tag[tag]}  # the directory does not exist yet
            continue
        if done.rc != 0 or done.stderr.strip():
            raise DeployFailed(f"comparing {commands.dirs[tag]} failed")
        names = done.stdout.decode("utf-8", "replace").splitlines()
        changed |= {f"{commands.dirs[tag]}/{n}" for n in names if n and not n.endswith("/")}
    return changed


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
    by_tag: dict[str, list[HostFile]],
) -> bool:
    """Copy the config directories to staging, add the rendering for there, validate."""
    staging_dirs = {tag: _staging(d) for tag, d in commands.dirs.items()}
    log = run.log
    try:
        for tag in TAGS:
            if not session.is_dir(commands.dirs[tag]):
                if tag != "opendkim":
                    raise DeployFailed(f"{commands.dirs[tag]} does not exist on the host")
                run.strict(commands.create_dir(tag), f"creating {commands.dirs[tag]}")
            run.strict(commands.stage_copy(tag), f"copying {commands.dirs[tag]} to staging")
        staged_facts = dataclasses.replace(
            facts,
            postfix_config_dir=staging_dirs["postfix"],
            dovecot_config_dir=staging_dirs["dovecot"],
            opendkim_config_dir=staging_dirs["opendkim"],
        )
        base = [f"{staging_dirs['postfix']}/{n}" for n in ("main.cf", "master.cf")]
        current = {p: data for p in base if (data := _read(session, p)) is not None}
        staged = render_for_host(host, current, facts=staged_facts)
        staged_by_tag: dict[str, list[HostFile]] = {}
        for file in staged:
            staged_by_tag.setdefault(_tag_of(staging_dirs, file.path), []).append(file)
        _upload(session, run, commands, "staging", staged_by_tag, staging_dirs)
        for tag in staged_by_tag:
            run.strict(commands.stage_files(tag), f"writing {staging_dirs[tag]}")
        maillog = (
            run([commands.postconf, "-c", staging_dirs["postfix"], "-h", "maillog_file"],
                privileged=False)
            .stdout.decode("utf-8", "replace").strip()
        )  # fmt: skip
        before = len(_read(session, maillog) or b"") if maillog else 0
        dkim = "opendkim" in staged_by_tag
        for what, argv in commands.validators():
            if what == "opendkim -n" and not dkim:
                continue
            try:
                run.strict(argv, what)
            finally:
                if what == "postfix check" and maillog:
                    logged = (_read(session, maillog) or b"")[before:]
                    text = logged.decode("utf-8", "replace")
                    problems = [line for line in text.splitlines() if _LOG_PROBLEM.search(line)]
                    if problems:
                        log("postfix check logged:\n" + "\n".join(problems))
                        raise DeployFailed("postfix check logged warnings")
        return True
    except DeployFailed as exc:
        log(f"refused at validation: {exc}; the live files were not touched")
        return False
    finally:
        for tag in TAGS:
            run(commands.stage_remove(tag))


def _reload_and_verify(run: _Runner, commands: HostCommands, touched: set[str], log: _Log) -> None:
    if "postfix" in touched:
        run.strict(commands.postfix_reload, "postfix reload")
    if "dovecot" in touched:
        run.strict(commands.dovecot_reload, "dovecot reload")
    if "opendkim" in touched:
        if not commands.opendkim_reload:
            log("OpenDKIM: no opendkim_reload command in the host's facts; not reloaded")
        for argv in commands.opendkim_reload:
            run.strict(argv, "opendkim reload")
    time.sleep(0.5)  # let the reloaded masters replace their listeners
    if not _greets(*commands.smtp_check, "220", log):
        raise DeployFailed("the SMTP service does not answer")
    if not _greets(*commands.imap_check, "* OK", log):
        raise DeployFailed("the IMAP service does not answer")


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
