"""manage.py poll_blacklists [--json] [--organisation SLUG]."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

pytestmark = [pytest.mark.knot, pytest.mark.django_db]


def test_json_lists_every_target_and_zone(bl_dns, org, acme, other_org):
    out = StringIO()
    call_command("poll_blacklists", "--json", "--organisation", org.slug, stdout=out)
    rows = json.loads(out.getvalue())
    assert {"target", "zone", "status", "code", "reason"} == set(rows[0])
    by_key = {(r["target"], r["zone"]): r for r in rows}
    assert by_key["192.0.2.25", "zen.spamhaus.org"] == {
        "target": "192.0.2.25", "zone": "zen.spamhaus.org", "status": "listed",
        "code": "127.0.0.4", "reason": "https://www.spamhaus.org/query/ip/192.0.2.25",
    }  # fmt: skip
    assert by_key["192.0.2.10", "zen.spamhaus.org"]["status"] == "clean"
    assert by_key["192.0.2.66", "zen.spamhaus.org"]["status"] == "error"
    assert {r["status"] for r in rows} == {"listed", "clean", "error"}


def test_text_output_names_the_listings(bl_dns, org, acme):
    out = StringIO()
    call_command("poll_blacklists", stdout=out)
    assert "LISTED 192.0.2.25" in out.getvalue()


def test_unknown_organisation_is_an_error(bl_dns, org):
    with pytest.raises(CommandError):
        call_command("poll_blacklists", "--organisation", "nope")
