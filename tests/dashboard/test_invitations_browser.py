"""Invitations in headless Chromium: an owner invites, the invited account accepts on its
Organisations page, and a new person signs up through the link; no console errors (CSP)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from mailsec.models import Membership, Role
from tests.conftest import PASSWORD
from tests.dashboard.test_browser import browser_page  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GOOD = "a much better passphrase 42"


def _log_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_invite_accept_and_sign_up_in_the_browser(browser_page, live_server, owner, org):  # noqa: F811
    page, problems = browser_page
    erin = User.objects.create_user(username="erin", password=PASSWORD)

    _log_in(page, live_server.url, owner.username)
    page.goto(f"{live_server.url}/organisations/")
    form = f"#org-{org.slug} form.add-form"
    page.fill(f"{form} input[name=username]", "erin")
    page.select_option(f"{form} select[name=role]", "admin")
    page.click(f"{form} button[type=submit]")
    page.locator("#invitation-link").wait_for()
    assert "erin has been invited as admin" in page.inner_text("#organisations")
    page.fill(f"{form} input[name=username]", "nina")
    page.click(f"{form} button[type=submit]")
    page.locator("text=nina has been invited").wait_for()
    link = page.inner_text("#invitation-link")
    page.click("header .logout button")

    _log_in(page, live_server.url, erin.username)
    page.goto(f"{live_server.url}/organisations/")
    page.click("#invitations button:has-text('Accept')")
    page.locator(f"#org-{org.slug}").wait_for()
    assert Membership.objects.get(user=erin, organisation=org).role == Role.ADMIN
    page.click("header .logout button")

    page.goto(link)
    page.fill("#sign-up-password1", GOOD)
    page.fill("#sign-up-password2", GOOD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/organisations/")
    page.locator(f"#org-{org.slug}").wait_for()
    assert Membership.objects.get(user__username="nina", organisation=org).role == Role.VIEWER
    assert problems == [], problems
