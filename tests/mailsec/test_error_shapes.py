"""Malformed requests get a 4xx, never a 500, and every answer under /api/ is the API's JSON
error shape {"error": {"code", "message", "details"}}, whichever layer refused the request."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from dns_records.models import Domain
from mailsec.models import Organisation

pytestmark = pytest.mark.django_db

DOMAINS = "/api/v1/domains/"


def assert_error_shape(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].split(";")[0] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
def domain(org: Organisation) -> Domain:
    return Domain.objects.create(organisation=org, name="good.test")


@pytest.fixture
def ui(owner: Any) -> Client:
    client = Client()
    client.force_login(owner)
    return client


# --- NUL and other controls ---------------------------------------------------------------------


@pytest.mark.parametrize("parameter", ["search", "organisation", "status", "limit", "ordering"])
@pytest.mark.parametrize("value", ["a\x00b", "\x00", "x\x01", "\x1f", "\x7f"])
def test_a_control_character_in_a_query_parameter_is_a_400(
    owner_api: APIClient, parameter: str, value: str
) -> None:
    error = assert_error_shape(owner_api.get(DOMAINS, {parameter: value}), 400, "invalid")
    assert error["details"] == {"parameter": parameter}


def test_a_control_character_in_a_parameter_name_is_a_400(owner_api: APIClient) -> None:
    assert_error_shape(owner_api.get(DOMAINS + "?se%00arch=x"), 400, "invalid")


@pytest.mark.parametrize("segment", ["good%00.test", "%00", "a%0Ab", "%1B"])
def test_a_control_character_in_a_path_segment_is_a_400(
    owner_api: APIClient, domain: Domain, segment: str
) -> None:
    assert_error_shape(owner_api.get(f"{DOMAINS}{segment}/"), 400, "invalid")
    assert_error_shape(owner_api.delete(f"{DOMAINS}{segment}/"), 400, "invalid")
    assert Domain.objects.filter(pk=domain.pk).exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "a\x00.test"},
        {"name": "good.test", "organisation": "\x00"},
        {"name": "\ud800.test"},
        {"name\x00": "good.test"},
        {"name": ["\x00"]},
    ],
)
def test_a_control_character_or_lone_surrogate_in_json_is_a_400(
    owner_api: APIClient, payload: dict[str, Any]
) -> None:
    body = json.dumps(payload)  # ensure_ascii: \\u0000 and \\ud800 escapes, as a client sends
    response = owner_api.post(DOMAINS, body, content_type="application/json")
    assert_error_shape(response, 400, "invalid")
    assert not Domain.objects.exists()


def test_line_breaks_and_tabs_in_json_values_reach_the_serializer(owner_api: APIClient) -> None:
    response = owner_api.post(DOMAINS, {"name": "a\tb\n.test"}, format="json")
    error = assert_error_shape(response, 400, "invalid")
    assert "name" in error["details"]  # the serializer's verdict, not the guard's


def test_a_nul_in_a_form_body_to_the_api_is_a_400(owner_api: APIClient) -> None:
    response = owner_api.post(DOMAINS, {"name": "a\x00.test"}, format="multipart")
    assert_error_shape(response, 400, "invalid")


def test_a_nul_in_a_ui_form_field_is_refused(ui: Client) -> None:
    response = ui.post("/tokens/", {"name": "ci\x00", "scope": "read", "expires": "30"})
    assert response.status_code == 400
    response = ui.post("/domains/add/", {"name": "a\x00.test"})
    assert response.status_code == 400
    assert not Domain.objects.exists()


def test_a_nul_in_a_ui_query_parameter_is_refused(ui: Client) -> None:
    assert ui.get("/domains/", {"q": "a\x00"}).status_code == 400
    assert ui.get("/domains/", {"q": "good"}).status_code == 200


# --- deep JSON, big bodies, many fields ---------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deeply_nested_json_is_a_400(owner_api: APIClient, depth: int) -> None:
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    response = owner_api.post(DOMAINS, body, content_type="application/json")
    assert_error_shape(response, 400, "invalid")


def test_json_nested_a_little_reaches_the_serializer(owner_api: APIClient) -> None:
    response = owner_api.post(DOMAINS, {"name": [[["x"]]]}, format="json")
    assert "name" in assert_error_shape(response, 400, "invalid")["details"]


def test_an_oversized_json_body_is_a_413(owner_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "a" * 2000 + ".test"})
    response = owner_api.post(DOMAINS, body, content_type="application/json")
    assert_error_shape(response, 413, "too_large")


def test_an_oversized_body_of_another_type_is_a_413(owner_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = owner_api.post(DOMAINS, "x" * 2000, content_type="text/plain")
    assert_error_shape(response, 413, "too_large")


def test_an_oversized_form_body_is_a_413(owner_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = owner_api.post(
        DOMAINS, "name=" + "a" * 2000, content_type="application/x-www-form-urlencoded"
    )
    assert_error_shape(response, 413, "too_large")


def test_a_multipart_body_over_the_largest_upload_is_a_413_before_it_is_read(
    owner_api: APIClient, settings: Any
) -> None:
    """Uploaded files escape DATA_UPLOAD_MAX_MEMORY_SIZE (Django spools them to disk), so the
    guard refuses a multipart body larger than any endpoint takes by its Content-Length."""
    from mailsec.middleware import MULTIPART_OVERHEAD

    settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES = 1000
    big = io.BytesIO(b"<feedback/>" + b" " * (MULTIPART_OVERHEAD + 2000))
    big.name = "report.xml"
    response = owner_api.post("/api/v1/reports/", {"file": big}, format="multipart")
    body = assert_error_shape(response, 413, "too_large")
    assert body["details"]["max_bytes"] == 1000 + MULTIPART_OVERHEAD


def test_too_many_form_fields_is_a_400(owner_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{n}=x" for n in range(50))
    response = owner_api.post(DOMAINS, body, content_type="application/x-www-form-urlencoded")
    assert_error_shape(response, 400, "too_many_fields")


def test_too_many_query_parameters_is_a_400(owner_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(f"f{n}=x" for n in range(50))
    assert_error_shape(owner_api.get(f"{DOMAINS}?{query}"), 400, "too_many_fields")


# --- answers from other layers under /api/ ------------------------------------------------------


def test_a_bad_host_header_is_a_400_in_the_shape(owner_api: APIClient) -> None:
    assert_error_shape(owner_api.get(DOMAINS, HTTP_HOST="evil.example"), 400, "bad_request")


def test_a_bad_host_header_outside_the_api_is_still_a_400(ui: Client) -> None:
    assert ui.get("/domains/", HTTP_HOST="evil.example").status_code == 400


@pytest.mark.parametrize(
    "path", ["/api/v1/docs/", "/api/v1/schema/", "/api/v1/schema/?format=json"]
)
def test_docs_and_schema_without_credentials_are_a_401_in_the_shape(path: str) -> None:
    assert_error_shape(APIClient().get(path), 401, "not_authenticated")


def test_docs_and_schema_still_serve_the_signed_in(ui: Client) -> None:
    assert ui.get("/api/v1/docs/").status_code == 200
    assert ui.get("/api/v1/schema/").status_code == 200


def test_an_unknown_api_path_is_a_404_in_the_shape(owner_api: APIClient) -> None:
    assert_error_shape(owner_api.get("/api/v1/nothing/"), 404, "not_found")


def test_a_wrong_method_is_a_405_in_the_shape(owner_api: APIClient, domain: Domain) -> None:
    assert_error_shape(owner_api.put(f"{DOMAINS}good.test/", {}), 405)


# --- the final slash ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "delete", "patch"])
def test_an_api_path_without_its_slash_is_a_404_not_a_redirect(
    owner_api: APIClient, method: str
) -> None:
    response = getattr(owner_api, method)("/api/v1/domains", {"name": "new.test"}, format="json")
    error = assert_error_shape(response, 404, "not_found")
    assert error["details"] == {"path": "/api/v1/domains/"}
    assert "slash" in error["message"]
    assert not Domain.objects.exists()


def test_a_domain_path_without_its_slash_is_a_404(owner_api: APIClient, domain: Domain) -> None:
    error = assert_error_shape(owner_api.delete("/api/v1/domains/good.test"), 404, "not_found")
    assert error["details"] == {"path": "/api/v1/domains/good.test/"}
    assert Domain.objects.filter(pk=domain.pk).exists()


def test_a_ui_form_post_without_its_slash_is_a_404_not_a_redirect(ui: Client) -> None:
    response = ui.post("/domains/add", {"name": "new.test"})
    assert response.status_code == 404
    assert not Domain.objects.exists()


def test_the_ui_still_appends_the_slash(ui: Client) -> None:
    response = ui.get("/domains")
    assert response.status_code == 301
    assert response["Location"] == "/domains/"


@pytest.mark.parametrize(
    "query", ["limit=99999999999999999999", "offset=99999999999999999999", "limit=5000"]
)
def test_pagination_beyond_any_bound_is_clamped_not_a_500(
    owner_api: APIClient, org: Organisation, query: str
) -> None:
    Domain.objects.create(organisation=org, name="paged.example")
    response = owner_api.get(f"{DOMAINS}?{query}")
    assert response.status_code == 200
    assert len(response.json()["results"]) <= 1000
