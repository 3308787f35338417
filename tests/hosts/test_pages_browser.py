"""A person in headless Chromium registers a host (real sshd on 127.0.0.80), compares and
confirms its fingerprint, reads the host page, and edits a policy: no console or CSP error."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from dns_records.models import Domain
from hosts import services
from hosts.models import Host, Policy
from tests.conftest import PASSWORD
from tests.hosts.deploy_servers import Sshd, binary
from tests.servers import missing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
SSH_ADDRESS = "127.0.0.80"
SCREENSHOTS = Path(os.environ.get("MAILSEC_SCREENSHOT_DIR", "/tmp/h_hosts_screens"))


@pytest.fixture
def sshd(tmp_path: Path, settings: Any) -> Iterator[Sshd]:
    settings.MAILSEC_PROBE_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    server = Sshd(tmp_path / "sshd", address=SSH_ADDRESS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        missing("Chromium is not installed at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console", lambda m: problems.append(m.text) if m.type in {"error", "warning"} else None
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            yield page, problems
        finally:
            browser.close()
            connections.close_all()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def log_in(page: Any, live_server: Any, user: Any) -> None:
    page.goto(f"{live_server.url}/hosts/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/hosts/")


def test_register_confirm_and_read_the_host_page(
    browser_page: Any, live_server: Any, owner: Any, org: Any, sshd: Sshd
) -> None:
    page, problems = browser_page
    Domain.objects.create(organisation=org, name="acme.test")
    policy = services.policy_create(organisation=org, name="Strict", values={}, actor=owner)
    log_in(page, live_server, owner)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "host-list.png"), full_page=True)

    page.fill("#host-name", "mx1.acme.test")
    page.fill("#host-address", sshd.address)
    page.fill("#host-ssh_port", str(sshd.port))
    page.check("input[name=domains][value='acme.test']")
    page.select_option("#host-policy", str(policy.pk))
    page.click("#host-add button[type=submit]")
    page.wait_for_url(f"{live_server.url}/hosts/*/", timeout=15_000)
    host = Host.objects.get()

    fingerprint = subprocess.run(
        [binary("ssh-keygen"), "-lf", str(sshd.directory / "hostkey.pub")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert page.locator("#host-fingerprint").inner_text() == fingerprint.split()[1]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "host-unconfirmed.png"), full_page=True)

    page.fill("#host-key-fingerprint", fingerprint)  # the whole ssh-keygen line, as pasted
    page.click("#host-key button[type=submit]")
    page.locator("#host-key .badge.ok").wait_for(timeout=10_000)
    assert page.locator("#host-deployments button").is_enabled()
    host.refresh_from_db()
    assert host.host_key_confirmed
    assert page.locator("#host-authorized-key").inner_text().strip() == host.ssh_public_key
    assert "PRIVATE KEY" not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "host-confirmed.png"), full_page=True)
    assert problems == []


def test_the_policy_form_groups_every_control(
    browser_page: Any, live_server: Any, owner: Any, org: Any
) -> None:
    page, problems = browser_page
    policy = services.policy_create(organisation=org, name="Strict", values={}, actor=owner)
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/policies/{policy.pk}/")
    assert page.locator("section.control").count() == 13
    page.fill("#policy-mynetworks", "0.0.0.0/0")
    page.click("button[type=submit].primary")
    page.locator("#policy-mynetworks_error").wait_for(timeout=10_000)
    assert "open relay" in page.locator("#policy-mynetworks_error").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "policy-form.png"), full_page=True)
    page.fill("#policy-mynetworks", "127.0.0.0/8\n192.0.2.0/24")
    page.click("button[type=submit].primary")
    page.get_by_text("Saved.").wait_for(timeout=10_000)
    assert Policy.objects.get().values["mynetworks"] == ["127.0.0.0/8", "192.0.2.0/24"]
    assert problems == []
