"""The check registry: every check is found, named once, and has its template partial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dns_records.checks import all_checks, check_label, check_names

TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "dashboard" / "partials" / "checks"


def test_every_check_module_is_registered_in_page_order():
    assert check_names() == [
        "delegation", "spf", "dmarc", "dkim", "mx", "rdns", "mta_sts", "tls_rpt", "dnssec",
        "bimi",
    ]  # fmt: skip


def test_every_check_has_its_template_partial():
    missing = [c.name for c in all_checks() if not (TEMPLATES / f"{c.name}.html").is_file()]
    assert missing == []


def test_a_retired_check_keeps_its_stored_name_as_label():
    assert check_label("spf") == "SPF"
    assert check_label("no_such_check") == "no_such_check"


def test_the_checks_import_without_django_or_a_network_library():
    code = (
        "import sys, dns_records.checks as c; c.all_checks(); import dns_records.spf;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'dns', 'spf', 'rest_framework', 'celery', 'socket', 'ssl', 'http'});"
        "print(','.join(bad))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert result.stdout.strip() == ""
