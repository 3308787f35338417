"""The domain page's DKIM panel: keys with their record, generate, rotate, retire, other
senders' selectors, automatic rotation and publishing; roles and organisations respected."""

from __future__ import annotations

import base64
import html

import pytest
from django.test import Client

from dns_records.models import DkimKey, DkimKeyState, DkimSelector, Domain
from tests.conftest import generated_dkim_key

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name="dkim.test")


def test_the_domain_page_shows_each_key_with_its_record_to_copy(owner, domain):
    key = generated_dkim_key(domain, owner, selector="s1")
    page = login(owner).get(f"/domains/{domain.pk}/").content.decode()
    assert 'id="dkim-panel"' in page
    assert "s1._domainkey.dkim.test" in page
    assert key.dns_value in page and f'data-copy="#dkim-value-{key.pk}"' in page
    # A pending key keeps the panel polling until DNS shows its record.
    assert 'hx-trigger="every 5s"' in page


def test_generating_a_key_from_the_panel(owner, domain):
    response = login(owner).post(
        f"/domains/{domain.pk}/dkim/keys/", {"algorithm": "ed25519", "selector": ""}, headers=HTMX
    )
    assert response.status_code == 200
    key = DkimKey.objects.get(domain=domain)
    assert key.algorithm == "ed25519" and key.state == DkimKeyState.GENERATING
    assert key.selector in response.content.decode()


def test_a_bad_selector_is_shown_in_the_form(owner, domain):
    response = login(owner).post(
        f"/domains/{domain.pk}/dkim/keys/", {"algorithm": "rsa", "selector": "no way"}, headers=HTMX
    )
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert not DkimKey.objects.exists()


def test_rotate_and_retire_buttons(owner, domain):
    key = generated_dkim_key(domain, owner)
    DkimKey.objects.filter(pk=key.pk).update(state=DkimKeyState.ACTIVE)
    client = login(owner)
    assert client.post(f"/dkim-keys/{key.pk}/rotate/", headers=HTMX).status_code == 200
    assert DkimKey.objects.filter(predecessor=key).exists()
    client.post(f"/dkim-keys/{key.pk}/retire/", headers=HTMX)
    key.refresh_from_db()
    assert key.state == DkimKeyState.RETIRING


def test_watching_a_selector_and_setting_rotation_and_publishing(owner, domain):
    client = login(owner)
    client.post(
        f"/domains/{domain.pk}/dkim/selectors/", {"selector": "google", "note": "GW"}, headers=HTMX
    )
    assert DkimSelector.objects.get(domain=domain).selector == "google"
    client.post(f"/domains/{domain.pk}/dkim/rotation/", {"rotation_days": "90"}, headers=HTMX)
    domain.refresh_from_db()
    assert domain.dkim_rotation_days == 90
    response = client.post(
        f"/domains/{domain.pk}/dkim/dns-update/",
        {"server": "127.0.0.19:53", "zone": "dkim.test", "tsig_name": "k",
         "tsig_algorithm": "hmac-sha256", "tsig_secret": base64.b64encode(b"s" * 32).decode()},
        headers=HTMX,
    )  # fmt: skip
    assert "publishes and removes" in response.content.decode()
    assert "c3Nz" not in response.content.decode()  # the secret is never shown back


def test_a_viewer_sees_the_keys_but_no_buttons_and_cannot_post(owner, viewer, domain):
    key = generated_dkim_key(domain, owner)
    page = login(viewer).get(f"/domains/{domain.pk}/").content.decode()
    assert key.selector in page and "Generate" not in page and "Rotate" not in page
    response = login(viewer).post(
        f"/domains/{domain.pk}/dkim/keys/", {"algorithm": "rsa"}, headers=HTMX
    )
    assert "cannot change" in response.content.decode()
    assert DkimKey.objects.count() == 1


def test_another_organisations_domain_and_keys_are_not_found(owner, outsider, domain):
    key = generated_dkim_key(domain, owner)
    client = login(outsider)
    assert client.get(f"/domains/{domain.pk}/dkim/").status_code == 404
    assert client.post(f"/dkim-keys/{key.pk}/retire/", headers=HTMX).status_code == 404
    assert client.post(f"/domains/{domain.pk}/dkim/keys/", {"algorithm": "rsa"}).status_code == 404


def test_every_pending_keys_record_joins_the_records_to_publish(owner, domain):
    from django.utils import timezone

    from dns_records.results import CheckOutcome
    from dns_records.services import check_outcomes_store
    from dns_records.status import CheckStatus

    records = [
        {
            "name": f"s{n}._domainkey.dkim.test",
            "type": "TXT",
            "value": f"v=DKIM1; k=ed25519; p=K{n}",
        }
        for n in (1, 2)
    ]
    details = {"suggested_records": records, "suggested_record": records[0]}
    outcome = CheckOutcome("dkim", CheckStatus.WARNING, "waiting", details)
    check_outcomes_store(domain=domain, outcomes=[outcome], checked_at=timezone.now())
    page = html.unescape(login(owner).get(f"/domains/{domain.pk}/").content.decode())
    assert 's1._domainkey.dkim.test. 3600 IN TXT "v=DKIM1; k=ed25519; p=K1"' in page
    assert 's2._domainkey.dkim.test. 3600 IN TXT "v=DKIM1; k=ed25519; p=K2"' in page


def test_selectors_seen_passing_in_reports_are_offered_to_watch(owner, viewer, domain):
    """A selector that signed the domain's mail and passed in DMARC reports, and that mailsec
    neither holds a key for nor watches, is offered; watching it takes it off the offer."""
    import datetime as dt

    from tests.reports.factories import Rec, make_report, own

    yesterday = dt.date.today() - dt.timedelta(days=1)
    make_report(
        organisation=domain.organisation,
        policy_domain=domain.name,
        day=yesterday,
        records=[
            own("192.0.2.1", 40, domain=domain.name, selector="google"),
            # Failing and foreign signatures are not offered.
            Rec("192.0.2.2", 5, dkim_aligned="fail", dkim=[(domain.name, "broken", "fail")]),
            Rec("192.0.2.3", 7, dkim=[("esp.example", "esp1", "pass")]),
        ],
    )
    client = login(owner)
    page = client.get(f"/domains/{domain.pk}/").content.decode()
    assert "google._domainkey.dkim.test" in page
    assert "40 of 40 messages passed" in page
    assert "broken._domainkey" not in page
    assert "esp1._domainkey" not in page
    # A viewer sees the offer but no button.
    assert (
        "seen in DMARC reports" not in login(viewer).get(f"/domains/{domain.pk}/").content.decode()
    )

    response = client.post(
        f"/domains/{domain.pk}/dkim/selectors/",
        {"selector": "google", "note": "seen in DMARC reports"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert DkimSelector.objects.filter(domain=domain, selector="google").exists()
    panel = response.content.decode()
    assert "messages passed" not in panel  # watched now: no longer offered
