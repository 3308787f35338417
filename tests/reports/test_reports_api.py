"""The reports read API: list with filters, detail with paged records, summary, TLS reports."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from dns_records.models import Domain
from mailsec.models import TokenScope
from tests.conftest import token_client
from tests.reports.factories import (
    forwarded,
    make_report,
    make_source,
    make_tls_report,
    own,
    spoof,
)

pytestmark = pytest.mark.django_db

TODAY = timezone.now().date()
D = "example.com"


def days_ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


@pytest.fixture
def reports(org, other_org):
    Domain.objects.create(organisation=org, name=D)
    first = make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        report_id="g-1",
        records=[own("192.0.2.1", 900), spoof("203.0.113.9", 50), forwarded("198.51.100.7", 40)],
    )
    second = make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(10),
        org_name="yahoo.com",
        report_id="y-1",
        records=[own("192.0.2.1", 100)],
    )
    theirs = make_report(
        organisation=other_org, policy_domain=D, day=days_ago(1), records=[spoof("203.0.113.1", 9)]
    )
    return first, second, theirs


def test_list_carries_the_contract_fields(owner_api, reports):
    response = owner_api.get("/api/v1/reports/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    item = body["results"][0]
    for key in (
        "org_name",
        "report_id",
        "domain",
        "date_begin",
        "date_end",
        "record_count",
        "message_count",
        "dmarc_pass_count",
    ):
        assert key in item, key
    assert item["org_name"] == "google.com"
    assert item["report_id"] == "g-1"
    assert item["domain"] == D
    assert item["record_count"] == 3
    assert item["message_count"] == 990
    assert item["dmarc_pass_count"] == 940
    assert item["dmarc_fail_count"] == 50
    assert item["policy"]["p"] == "none"
    assert item["url"] == f"/api/v1/reports/{reports[0].pk}/"


def test_list_filters_by_domain_and_dates(owner_api, reports, org):
    make_report(organisation=org, policy_domain="other.example", day=days_ago(1), records=[])
    assert owner_api.get("/api/v1/reports/").json()["count"] == 3
    assert owner_api.get(f"/api/v1/reports/?domain={D}").json()["count"] == 2
    since = owner_api.get(f"/api/v1/reports/?since={days_ago(5).isoformat()}").json()
    assert sorted(r["report_id"] for r in since["results"])[0] == "g-1"
    assert "y-1" not in {r["report_id"] for r in since["results"]}
    assert owner_api.get(f"/api/v1/reports/?domain={D}&since={days_ago(5)}").json()["count"] == 1
    assert owner_api.get(f"/api/v1/reports/?domain={D}&until={days_ago(5)}").json()["count"] == 1


def test_bad_dates_are_a_400_in_the_error_shape(owner_api, reports):
    response = owner_api.get("/api/v1/reports/?since=yesterday")
    assert response.status_code == 400
    assert "since" in str(response.json()["error"])


def test_huge_limits_and_offsets_are_bounded_not_a_500(owner_api, reports):
    for query in ("limit=99999999999999999999", "offset=99999999999999999999", "limit=5000"):
        response = owner_api.get(f"/api/v1/reports/?{query}")
        assert response.status_code == 200, query
        assert owner_api.get(f"/api/v1/tls-reports/?{query}").status_code == 200


def test_list_is_paginated(owner_api, org):
    for n in range(3):
        make_report(organisation=org, policy_domain=D, day=days_ago(n), records=[])
    page = owner_api.get("/api/v1/reports/?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


def test_detail_has_records_with_classes(owner_api, reports):
    response = owner_api.get(f"/api/v1/reports/{reports[0].pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["report_id"] == "g-1"
    assert body["message_count"] == 990 and body["domain"] == D
    assert body["raw_message_id"] is None
    assert body["records_count"] == 3
    assert body["records_next"] is None
    records = body["records"]
    assert [r["count"] for r in records] == [900, 50, 40]
    assert records[0]["source_class"] == "own"
    assert records[1]["source_class"] == "spoofing"
    assert records[2]["source_class"] == "forwarder"
    assert records[0]["dkim_results"] == [
        {"domain": D, "selector": "s1", "result": "pass", "human_result": ""}
    ]


def test_detail_records_are_paged_with_links(owner_api, org):
    report = make_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        records=[own(f"192.0.2.{n}", 100 - n) for n in range(1, 8)],
    )
    body = owner_api.get(f"/api/v1/reports/{report.pk}/?records_limit=3").json()
    assert [r["source_ip"] for r in body["records"]] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert body["records_count"] == 7
    assert "records_offset=3" in body["records_next"]
    assert body["records_previous"] is None
    page = owner_api.get(body["records_next"]).json()
    assert [r["source_ip"] for r in page["records"]] == ["192.0.2.4", "192.0.2.5", "192.0.2.6"]
    assert "records_offset=0" in page["records_previous"]
    assert owner_api.get(f"/api/v1/reports/{report.pk}/?records_limit=5000").status_code == 400


def test_another_organisations_report_is_404(owner_api, outsider_api, reports):
    _first, _second, theirs = reports
    assert owner_api.get(f"/api/v1/reports/{theirs.pk}/").status_code == 404
    assert outsider_api.get(f"/api/v1/reports/{reports[0].pk}/").status_code == 404
    assert outsider_api.get("/api/v1/reports/").json()["count"] == 1
    assert owner_api.get("/api/v1/reports/abc/").status_code == 404
    assert owner_api.get("/api/v1/reports/9999999999999999999999/").status_code == 404


def test_anonymous_is_refused(reports):
    assert APIClient().get("/api/v1/reports/").status_code in {401, 403}
    assert APIClient().get("/api/v1/reports/summary/?domain=example.com").status_code in {401, 403}


def test_read_scope_token_reads(viewer, reports):
    client = token_client(viewer, TokenScope.READ)
    assert client.get("/api/v1/reports/").status_code == 200
    assert client.get(f"/api/v1/reports/summary/?domain={D}").status_code == 200
    assert client.get(f"/api/v1/reports/{reports[0].pk}/").status_code == 200


def test_summary_of_a_domain(viewer_api, reports):
    make_source("192.0.2.1", "mail.example.com", asn=64500, as_org="Example Net", country="NL")
    response = viewer_api.get(f"/api/v1/reports/summary/?domain={D.upper()}&days=7")
    assert response.status_code == 200
    body = response.json()
    assert body["domain"] == D and body["days"] == 7
    assert body["totals"]["messages"] == 990
    assert body["totals"]["dmarc_pass"] == 940
    assert body["totals"]["dmarc_fail"] == 50
    assert body["totals"]["dispositions"] == {"none": 990}
    assert len(body["by_day"]) == 7
    top = body["top_sources"][0]
    assert top["ip"] == "192.0.2.1"
    assert top["name"] == "mail.example.com"
    assert top["asn"] == 64500 and top["country"] == "NL"
    assert top["source_class"] == "own"
    assert {s["source_class"] for s in body["top_sources"]} == {"own", "spoofing", "forwarder"}
    assert body["reporters"][0]["org_name"] == "google.com"
    assert body["dkim_selectors"][0]["selector"] == "s1"
    advice = body["advice"]
    assert advice["messages"] == 1090  # the advisor always reads 30 days
    assert advice["step"] == "quarantine"
    assert advice["next_record"].startswith("v=DMARC1; p=quarantine")
    assert body["tls"]["reports"] == 0


def test_summary_needs_a_visible_domain(owner_api, outsider_api, reports):
    assert owner_api.get("/api/v1/reports/summary/").status_code == 400
    assert owner_api.get("/api/v1/reports/summary/?domain=nowhere.example").status_code == 404
    assert owner_api.get("/api/v1/reports/summary/?domain=not a name").status_code == 404
    assert outsider_api.get(f"/api/v1/reports/summary/?domain={D}").status_code == 404
    assert owner_api.get(f"/api/v1/reports/summary/?domain={D}&days=0").status_code == 400
    assert owner_api.get(f"/api/v1/reports/summary/?domain={D}&days=x").status_code == 400


def test_tls_reports_list_and_detail(owner_api, outsider_api, org, other_org):
    mine = make_tls_report(
        organisation=org,
        policy_domain=D,
        day=days_ago(1),
        failures=[("certificate-expired", 3)],
    )
    theirs = make_tls_report(organisation=other_org, policy_domain=D, day=days_ago(1))
    body = owner_api.get("/api/v1/tls-reports/").json()
    assert body["count"] == 1
    assert body["results"][0]["domain"] == D
    assert body["results"][0]["failed_sessions"] == 3
    detail = owner_api.get(f"/api/v1/tls-reports/{mine.pk}/").json()
    assert detail["policies"][0]["mx_hosts"] == ["mx1.example.com"]
    assert detail["policies"][0]["failures"][0]["result_type"] == "certificate-expired"
    assert owner_api.get(f"/api/v1/tls-reports/{theirs.pk}/").status_code == 404
    assert outsider_api.get(f"/api/v1/tls-reports/{mine.pk}/").status_code == 404
    assert owner_api.get("/api/v1/tls-reports/?domain=other.example").json()["count"] == 0


def test_writes_are_not_offered_by_the_read_viewsets(owner_api, reports):
    assert owner_api.delete(f"/api/v1/reports/{reports[0].pk}/").status_code == 405
    assert owner_api.post("/api/v1/tls-reports/", {}).status_code == 405
    assert owner_api.get(f"/api/v1/reports/{reports[0].pk}/").status_code == 200


FUZZ_TEXT = st.one_of(
    st.sampled_from(["", "\x00", "a\x00b", "%", "%00", "-1", "1e9", "99999999999999999999",
                     "2026-02-30", "2026-13-01", "<script>", "💌.test", "../.."]),
    st.text(st.characters(codec="utf-8"), max_size=40),
)  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(
        ["domain", "since", "until", "days", "records_offset", "records_limit", "limit", "offset"]
    ),
    value=FUZZ_TEXT,
)
def test_hostile_query_parameters_never_give_a_500(owner_api, reports, name, value):
    from urllib.parse import urlencode

    query = urlencode({name: value, "domain": D} if name != "domain" else {name: value})
    for path in (
        "/api/v1/reports/",
        f"/api/v1/reports/{reports[0].pk}/",
        "/api/v1/reports/summary/",
        "/api/v1/tls-reports/",
    ):
        response = owner_api.get(f"{path}?{query}")
        assert response.status_code < 500, (path, query, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        if response.status_code >= 400:
            assert "error" in response.json()
