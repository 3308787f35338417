"""Core read queries: a user sees their own tokens and their own organisations' members only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from mailsec.models import Membership, Role, TokenScope
from mailsec.selectors import (
    api_token_of,
    api_tokens_of,
    membership_visible,
    memberships_with_members,
    organisation_visible,
)
from mailsec.services.members import membership_set
from mailsec.services.tokens import api_token_create

pytestmark = pytest.mark.django_db


def test_api_tokens_of_lists_only_the_users_own_tokens(owner, outsider):
    own, _key = api_token_create(user=owner, scope=TokenScope.READ, actor=None)
    api_token_create(user=outsider, scope=TokenScope.READ, actor=None)
    assert list(api_tokens_of(owner)) == [own]
    assert list(api_tokens_of(AnonymousUser())) == []


def test_api_token_of_finds_the_users_token_and_not_someone_elses(owner, outsider):
    token, _key = api_token_create(user=owner, scope=TokenScope.WRITE, actor=None)
    assert api_token_of(owner, token.pk) == token
    assert api_token_of(outsider, token.pk) is None


def test_memberships_with_members_lists_each_own_organisation_with_its_members(
    owner, viewer, outsider, org, django_assert_num_queries
):
    with django_assert_num_queries(2):
        entries = [(m.organisation, list(m.organisation.memberships.all())) for m in
                   memberships_with_members(owner)]  # fmt: skip
    assert [organisation for organisation, _members in entries] == [org]
    assert [m.user.username for m in entries[0][1]] == ["olivia", "victor"]


def test_memberships_with_members_is_ordered_by_organisation_name(owner, other_org, org):
    membership_set(organisation=other_org, user=owner, role=Role.VIEWER, actor=None)
    names = [m.organisation.name for m in memberships_with_members(owner)]
    assert names == ["Acme Mail", "Other Org"]


def test_membership_visible_is_none_for_another_organisations_membership(owner, outsider, org):
    own = Membership.objects.get(user=owner, organisation=org)
    assert membership_visible(owner, own.pk) == own
    assert membership_visible(outsider, own.pk) is None


def test_organisation_visible_needs_a_membership(owner, outsider, org):
    assert organisation_visible(owner, org.slug) == org
    assert organisation_visible(outsider, org.slug) is None
    assert organisation_visible(AnonymousUser(), org.slug) is None
