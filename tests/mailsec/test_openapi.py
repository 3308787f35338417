"""The OpenAPI schema: generated from every app's API, valid, and without warnings."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_schema_is_valid_and_names_every_enum_once():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    assert "/api/v1/domains/{name}/checks/" in schema
    assert "/api/v1/tasks/{id}/" in schema
    assert "CheckStatusEnum" in schema
