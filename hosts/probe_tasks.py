"""Celery tasks for live probes (registered under hosts.tasks.* names; imported by HostsConfig)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task

from hosts.services import domain_mx_probe_run, host_probe_run, hosts_probe_queue_due
from mailsec.jobs import task_run_execute

PROBE_SOFT_LIMIT = 150  # the probes' own total deadline is 90 s
PROBE_HARD_LIMIT = 180


@shared_task(
    name="hosts.tasks.probe_host", soft_time_limit=PROBE_SOFT_LIMIT, time_limit=PROBE_HARD_LIMIT
)
def probe_host(task_run_id: str, host_id: int) -> None:
    """Probe one host's SMTP, IMAP and POP3 services and record the results."""

    def work() -> dict[str, Any]:
        return host_probe_run(host_id)

    task_run_execute(
        task_run_id=task_run_id, stale_after=timedelta(seconds=PROBE_HARD_LIMIT), work=work
    )


@shared_task(
    name="hosts.tasks.probe_domain_mx",
    soft_time_limit=PROBE_SOFT_LIMIT,
    time_limit=PROBE_HARD_LIMIT,
)
def probe_domain_mx(task_run_id: str, domain_id: int) -> None:
    """Probe port 25 of a domain's MX targets that are no managed host."""

    def work() -> dict[str, Any]:
        return domain_mx_probe_run(domain_id)

    task_run_execute(
        task_run_id=task_run_id, stale_after=timedelta(seconds=PROBE_HARD_LIMIT), work=work
    )


@shared_task(name="hosts.tasks.queue_due_probes", soft_time_limit=60, time_limit=90)
def queue_due_probes() -> int:
    """Beat: queue a probe of each host (and each domain's MX targets, a bounded number a
    tick) not probed within MAILSEC_PROBE_INTERVAL_MINUTES."""
    return hosts_probe_queue_due()
