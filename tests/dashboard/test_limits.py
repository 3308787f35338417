"""The domain quota and the check-now rate limit as the dashboard shows them.

(These belong in tests/dashboard/test_views.py; they sit here while that file is being edited
by others.)
"""

from __future__ import annotations

import pytest
from django.test import Client

from dns_records.models import Domain

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_adding_a_domain_over_the_quota_shows_why_on_the_form(owner, org, settings):
    settings.MAILSEC_DOMAINS_PER_ORGANISATION = 1
    Domain.objects.create(organisation=org, name="one.test")
    response = login(owner).post("/domains/add/", {"name": "two.test"}, HTTP_HX_REQUEST="true")
    assert response["HX-Retarget"] == "#domain-add-form"
    assert "already has 1 domains" in response.content.decode()
    assert not Domain.objects.filter(name="two.test").exists()


def test_check_now_beyond_the_rate_limit_shows_why_with_the_results(owner, org, settings):
    settings.MAILSEC_CHECK_NOW_PER_MINUTE = 1
    first, second = (Domain.objects.create(organisation=org, name=f"{n}.test") for n in "ab")
    client = login(owner)
    assert 'role="alert"' not in client.post(f"/domains/{first.pk}/check/").content.decode()
    response = client.post(f"/domains/{second.pk}/check/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith('<section id="check-results"')
    assert '<p class="error" role="alert">' in body
    assert "1 checks in the last minute" in body
    assert "Check now" in body
