"""`GET /api/v1/overview/`: the same scorecard as JSON, per organisation the caller belongs to."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dns_records.models import CheckState, Domain
from mailsec.models import TokenScope
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


def _check(domain, name, status, summary="x"):
    now = timezone.now()
    CheckState.objects.create(
        domain=domain, name=name, status=status, summary=summary, checked_at=now, changed_at=now
    )


def test_the_overview_lists_the_thirteen_controls_of_the_callers_organisations_only(
    owner, org, other_org
):
    mine = Domain.objects.create(organisation=org, name="mine.test")
    _check(mine, "spf", "fail", "No SPF record")
    _check(mine, "mx", "ok")
    theirs = Domain.objects.create(organisation=other_org, name="theirs.test")
    _check(theirs, "dmarc", "fail", "No DMARC record")
    body = token_client(owner, TokenScope.READ).get("/api/v1/overview/").json()
    assert [o["organisation"]["slug"] for o in body["organisations"]] == [org.slug]
    card = body["organisations"][0]
    controls = {c["key"]: c for c in card["controls"]}
    assert [c["number"] for c in card["controls"]] == list(range(1, 14))
    assert controls["spf"]["status"] == "fail"
    assert controls["spf"]["offenders"] == [
        {
            "kind": "domain",
            "name": "mine.test",
            "status": "fail",
            "summary": "No SPF record",
            "url": f"/domains/{mine.pk}/",
        }
    ]
    assert controls["two_mx"]["status"] == "ok"
    assert controls["dmarc"]["status"] == "unmeasured"
    assert controls["open_relay"]["status"] == "unmeasured"
    assert card["status"] == "fail"
    assert card["action_first"][0] == "spf"
    assert card["domains"]["total"] == 1
    assert set(card["trends"]) == {
        "check_changes", "check_failures", "listing_changes", "host_events"
    }  # fmt: skip
    assert "theirs.test" not in str(body)


def test_the_overview_needs_authentication_and_hides_other_organisations(
    owner, org, other_org, outsider
):
    anonymous = APIClient().get("/api/v1/overview/")
    assert anonymous.status_code in (401, 403)
    assert anonymous["Content-Type"].startswith("application/json")
    client = token_client(owner, TokenScope.READ)
    assert client.get(f"/api/v1/overview/?organisation={other_org.slug}").status_code == 404
    narrowed = client.get(f"/api/v1/overview/?organisation={org.slug}").json()
    assert len(narrowed["organisations"]) == 1
    # Read-only: a write is refused even with a write token.
    assert token_client(owner).post("/api/v1/overview/", {}).status_code == 405
    assert [o["organisation"]["slug"] for o in token_client(outsider).get(
        "/api/v1/overview/"
    ).json()["organisations"]] == [other_org.slug]  # fmt: skip


def test_the_overview_is_in_the_schema():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    # Warnings are tests/mailsec/test_openapi.py's business; this asserts the path and shape.
    call_command("spectacular", "--validate", stdout=out)
    schema = out.getvalue()
    assert "/api/v1/overview/" in schema
    assert "Scorecard:" in schema and "action_first" in schema
