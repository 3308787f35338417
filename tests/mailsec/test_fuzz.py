"""Random text in every place a client controls never gives a 500, and under /api/ every
answer is JSON, errors in the API's error shape.

Text includes NUL and the other controls, lone surrogates (sent as JSON escapes, or as the
bytes a careless client would send), non-ASCII and huge strings. No endpoint fuzzed here
contacts anything: the DNS update target, whose server mailsec would send to, is left out.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from dns_records.models import Domain
from mailsec.models import Organisation

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SPECIAL = [
    "",
    "\x00",
    "a\x00b",
    "\x01\x1f\x7f",
    "\r\n",
    "\t",
    "\ud800",
    "\udfff",
    "\ufeff",
    "\u202e",
    "%00",
    "%",
    "../..",
    "good.test",
    "GOOD.TEST.",
    "xn--",
    "💌.test",
    "' OR 1=1 --",
    "<script>",
]
# Every code point, surrogates included.
ANY_CHAR = st.characters(codec=None, exclude_categories=[])
TEXT = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(ANY_CHAR, max_size=60),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "\x00", "é", "."]), st.integers(1000, 50_000)
    ),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def encode(text: str) -> str:
    """Percent-encoded UTF-8, lone surrogates as the bytes they would be (invalid UTF-8)."""
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


def form_body(fields: dict[str, str]) -> str:
    return "&".join(f"{encode(name)}={encode(value)}" for name, value in fields.items())


def assert_api_answer(response: Any) -> None:
    assert response.status_code < 500, response.content[:300]
    if response.status_code in (204, 304):
        return
    assert response["Content-Type"].split(";")[0] == "application/json", response.content[:300]
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "details"}, body


@pytest.fixture
def domain(org: Organisation) -> Domain:
    return Domain.objects.get_or_create(organisation=org, name="good.test")[0]


@pytest.fixture
def ui(owner: Any) -> Client:
    client = Client()
    client.force_login(owner)
    return client


# --- the API --------------------------------------------------------------------------------------


@FUZZ
@given(
    name=st.sampled_from(["search", "organisation", "status", "limit", "offset", "ordering"])
    | TEXT,
    value=TEXT,
)
def test_api_query_parameters(owner_api: APIClient, domain: Domain, name: str, value: str) -> None:
    query = f"{encode(name)}={encode(value)}"
    for path in [
        "/api/v1/domains/",
        "/api/v1/domains/good.test/",
        "/api/v1/domains/good.test/checks/",
    ]:
        assert_api_answer(owner_api.get(f"{path}?{query}"))


@FUZZ
@given(segment=TEXT.filter(bool), action=st.sampled_from(["", "checks/", "events/", "dkim-keys/"]))
def test_api_path_segments(owner_api: APIClient, domain: Domain, segment: str, action: str) -> None:
    encoded = encode(segment)
    assert_api_answer(owner_api.get(f"/api/v1/domains/{encoded}/{action}"))
    assert_api_answer(owner_api.get(f"/api/v1/tasks/{encoded}/"))
    assert_api_answer(owner_api.get(f"/api/v1/dkim-keys/{encoded}/"))
    assert_api_answer(owner_api.delete(f"/api/v1/dkim-selectors/{encoded}/"))
    assert_api_answer(owner_api.get(f"/api/v1/{encoded}"))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/dkim-keys/x/"),
        ("delete", "/api/v1/dkim-selectors/x/"),
        ("get", "/api/v1/dkim-keys/99999999999999999999999/"),
        ("delete", "/api/v1/dkim-selectors/99999999999999999999999/"),
    ],
)
def test_a_dkim_id_that_is_not_a_number_is_a_404(
    owner_api: APIClient, method: str, path: str
) -> None:
    response = getattr(owner_api, method)(path)
    assert_api_answer(response)
    assert response.status_code == 404


@FUZZ
@given(name=TEXT, organisation=TEXT | st.none())
def test_api_domain_create_fields(
    owner_api: APIClient, name: str, organisation: str | None
) -> None:
    payload: dict[str, Any] = {"name": name}
    if organisation is not None:
        payload["organisation"] = organisation
    body = json.dumps(payload)  # lone surrogates go as \\udxxx escapes
    assert_api_answer(owner_api.post("/api/v1/domains/", body, content_type="application/json"))
    assert_api_answer(
        owner_api.post(
            "/api/v1/domains/", form_body(payload), content_type="application/x-www-form-urlencoded"
        )
    )


@FUZZ
@given(document=JSON_VALUES)
def test_api_json_bodies(owner_api: APIClient, domain: Domain, document: Any) -> None:
    body = json.dumps(document)
    for path in [
        "/api/v1/domains/",
        "/api/v1/domains/good.test/dkim-keys/",
        "/api/v1/domains/good.test/dkim-selectors/",
    ]:
        assert_api_answer(owner_api.post(path, body, content_type="application/json"))


@FUZZ
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            # Not "charset=\x00": Django's request (codecs.lookup) raises ValueError before
            # any middleware, but servers refuse NUL in a header before Django sees it.
            "application/x-www-form-urlencoded; charset=bogus",
        ]
    ),
)
def test_api_raw_bodies(owner_api: APIClient, raw: bytes, content_type: str) -> None:
    assert_api_answer(owner_api.post("/api/v1/domains/", raw, content_type=content_type))


# --- the UI -----------------------------------------------------------------------------------------


def assert_ui_answer(response: Any) -> None:
    assert response.status_code < 500, response.content[:300]


@FUZZ
@given(q=TEXT, status=TEXT, page=TEXT)
def test_ui_list_parameters(ui: Client, domain: Domain, q: str, status: str, page: str) -> None:
    query = form_body({"q": q, "status": status, "page": page})
    assert_ui_answer(ui.get(f"/domains/?{query}"))
    assert_ui_answer(ui.get(f"/audit/?{form_body({'page': page})}"))


@FUZZ
@given(name=TEXT, organisation=TEXT)
def test_ui_domain_add_form(ui: Client, name: str, organisation: str) -> None:
    body = form_body({"name": name, "organisation": organisation})
    response = ui.post("/domains/add/", body, content_type="application/x-www-form-urlencoded")
    assert_ui_answer(response)


@FUZZ
@given(name=TEXT, scope=TEXT | st.just("read"), expires=TEXT | st.just("30"))
def test_ui_token_form(ui: Client, name: str, scope: str, expires: str) -> None:
    body = form_body({"name": name, "scope": scope, "expires": expires})
    assert_ui_answer(ui.post("/tokens/", body, content_type="application/x-www-form-urlencoded"))


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(["algorithm", "selector", "note", "bits", "rotation_days", "remove"])
        | TEXT,
        TEXT,
        max_size=4,
    )
)
def test_ui_dkim_forms(ui: Client, domain: Domain, fields: dict[str, str]) -> None:
    body = form_body(fields)
    for path in [
        f"/domains/{domain.pk}/dkim/keys/",
        f"/domains/{domain.pk}/dkim/selectors/",
        f"/domains/{domain.pk}/dkim/rotation/",
    ]:
        assert_ui_answer(ui.post(path, body, content_type="application/x-www-form-urlencoded"))
