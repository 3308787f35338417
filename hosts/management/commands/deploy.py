"""manage.py deploy HOST [--json] [--sudoers]: deploy a host's policy now, in this process, or
print the sudoers lines its deploy user needs."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hosts.deploy import HostCommands, deployment_run
from hosts.models import Deployment, DeploymentState, Host
from mailsec.services.audit import audit_record


class Command(BaseCommand):
    help = "Deploy a managed host's rendered configuration (by name or id) and print the outcome."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("host", help="The host's name (or its id)")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON")
        parser.add_argument(
            "--sudoers",
            action="store_true",
            help="Print the sudoers lines the host's deploy user needs, and deploy nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["host"]
        hosts = Host.objects.filter(name=name)
        if not hosts.exists() and name.isdigit():
            hosts = Host.objects.filter(pk=int(name))
        if hosts.count() != 1:
            raise CommandError(
                f"{name}: no such host"
                if not hosts.exists()
                else f"{name}: several hosts; use the id"
            )
        host = hosts.get()
        if options["sudoers"]:
            for line in HostCommands.for_host(host).sudoers(host.ssh_user):
                self.stdout.write(line)
            return
        if not host.host_key_confirmed:
            raise CommandError(f"{host.name}: confirm its SSH host key fingerprint first")
        with transaction.atomic():
            deployment = Deployment.objects.create(host=host)
            audit_record(
                actor=None, action="host.deploy", obj=host, organisation=host.organisation,
                after={"deployment": str(deployment.uid), "via": "manage.py deploy"},
            )  # fmt: skip
        deployment_run(deployment.pk)
        deployment.refresh_from_db()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "host": host.name,
                        "deployment": deployment.pk,
                        "state": deployment.state,
                        "files": deployment.files,
                        "log": deployment.log,
                    },
                    indent=2,
                )
            )
        else:
            self.stdout.write(deployment.log)
            self.stdout.write(f"{host.name}: {deployment.state}")
        if deployment.state in (DeploymentState.FAILED, DeploymentState.ROLLED_BACK):
            raise SystemExit(1)
