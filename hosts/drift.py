"""Drift: the live files of a host compared with what mailsec last deployed there.

A hand edit (or a file removed) becomes one `HostEvent(kind="drift")` with the diff (secret
files as hashes only), once per distinct drift: the event records a fingerprint of the live
hashes, and the same drift found again is not reported again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hosts.models import DeployedFile, Host, HostEvent
from hosts.render.diff import diff_file
from hosts.ssh import SshError, SshSession
from mailsec import secrets

__all__ = ["host_drift_check", "hosts_drift_check"]


def _session(host: Host) -> SshSession:
    private = secrets.decrypt(host.ssh_private_key, context=host.secret_context).decode("ascii")
    return SshSession(host.address, host.ssh_port, host.ssh_user, private, host.host_key)


def host_drift_check(host: Host) -> HostEvent | None:
    """Compare the host's live files with the deployed ones; a new drift gives a new event."""
    deployed = list(DeployedFile.objects.filter(host=host).order_by("path"))
    if not deployed or not host.host_key_confirmed:
        return None
    drifted: list[dict[str, Any]] = []
    diffs: list[str] = []
    with _session(host) as session:
        for row in deployed:
            try:
                live = session.read(row.path)
            except SshError:
                continue  # a private key the deploy user may not read: not compared here
            live_hash = None if live is None else hashlib.sha256(live).hexdigest()
            if live_hash == row.sha256:
                continue
            drifted.append(
                {"path": row.path, "deployed_sha256": row.sha256, "live_sha256": live_hash}
            )
            if live is None:
                diffs.append(f"{row.path}: removed on the host\n")
            elif row.secret:
                diffs.append(f"{row.path}: changed (hidden) sha256 {row.sha256} -> {live_hash}\n")
            else:
                # Deployed content as "a", the live file as "b": what the hand edit did.
                entry = diff_file(row.path, bytes(row.content), live, secret=False)
                diffs.append(entry.diff or f"{row.path}: changed (binary)\n")
    if not drifted:
        return None
    fingerprint = hashlib.sha256(json.dumps(drifted, sort_keys=True).encode()).hexdigest()
    last = host.events.filter(kind="drift").order_by("-created_at", "-id").first()
    if last is not None and last.details.get("fingerprint") == fingerprint:
        return None
    paths = ", ".join(item["path"] for item in drifted)
    return HostEvent.objects.create(
        host=host,
        kind="drift",
        summary=f"Changed on the host since mailsec deployed them: {paths}"[:500],
        details={"fingerprint": fingerprint, "files": drifted, "diff": "".join(diffs)},
    )


def hosts_drift_check() -> dict[str, int]:
    """Every host with deployed files; a host that cannot be reached is counted, not raised."""
    checked = events = errors = 0
    host_ids = DeployedFile.objects.values_list("host_id", flat=True).distinct()
    for host in Host.objects.filter(pk__in=host_ids, host_key_confirmed=True).order_by("pk"):
        checked += 1
        try:
            if host_drift_check(host) is not None:
                events += 1
        except (SshError, OSError, ValueError):
            errors += 1
    return {"checked": checked, "drift_events": events, "unreachable": errors}
