"""The domains API: per-organisation access, roles, validation, checks and the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dns_records.models import CheckStatus, Domain
from dns_records.results import CheckOutcome
from dns_records.services import check_outcomes_store
from mailsec.models import AuditLog, Role, TaskRun, TaskState
from mailsec.services.members import membership_set

pytestmark = pytest.mark.django_db

URL = "/api/v1/domains/"


@pytest.fixture
def domain(org):
    return Domain.objects.create(organisation=org, name="good.test")


def test_create_normalises_and_queues_a_check(owner_api, org):
    response = owner_api.post(URL, {"name": "Bücher.TEST."}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "xn--bcher-kva.test"
    assert body["display_name"] == "bücher.test"
    assert body["organisation"] == org.slug
    domain = Domain.objects.get(name="xn--bcher-kva.test")
    run = TaskRun.objects.get(object_id=str(domain.pk))
    assert run.state == TaskState.PENDING and run.kind == "domain.check"


def test_create_writes_the_audit_log(owner_api, owner, org):
    owner_api.post(URL, {"name": "audit.test"}, format="json")
    entry = AuditLog.objects.get(action="domain.create")
    assert (entry.actor, entry.organisation, entry.after) == (owner, org, {"name": "audit.test"})


def test_duplicate_name_in_one_organisation_is_refused(owner_api, domain):
    response = owner_api.post(URL, {"name": "GOOD.test"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "already" in response.json()["error"]["details"]["name"][0]


def test_same_name_in_two_organisations_is_allowed(owner_api, outsider_api, domain):
    assert outsider_api.post(URL, {"name": "good.test"}, format="json").status_code == 201
    assert Domain.objects.filter(name="good.test").count() == 2


def test_invalid_name_gets_a_clear_error(owner_api):
    response = owner_api.post(URL, {"name": "192.0.2.1"}, format="json")
    assert response.status_code == 400
    assert "IP address" in response.json()["error"]["details"]["name"][0]


def test_viewer_gets_403_on_create(viewer_api):
    response = viewer_api.post(URL, {"name": "new.test"}, format="json")
    assert response.status_code == 403
    assert not Domain.objects.exists()


def test_viewer_can_list_and_read(viewer_api, domain):
    assert [d["name"] for d in viewer_api.get(URL).json()["results"]] == ["good.test"]
    assert viewer_api.get(f"{URL}good.test/").status_code == 200


def test_viewer_cannot_delete_or_request_a_check(viewer_api, domain):
    assert viewer_api.delete(f"{URL}good.test/").status_code == 403
    assert viewer_api.post(f"{URL}good.test/check/").status_code == 403
    assert Domain.objects.filter(pk=domain.pk).exists()


def test_outsider_gets_404_on_another_organisations_domain(outsider_api, domain):
    assert outsider_api.get(f"{URL}good.test/").status_code == 404
    assert outsider_api.delete(f"{URL}good.test/").status_code == 404
    assert outsider_api.post(f"{URL}good.test/check/").status_code == 404
    assert outsider_api.get(f"{URL}good.test/checks/").status_code == 404
    assert outsider_api.get(URL).json()["results"] == []


def test_owner_deletes_with_audit(owner_api, domain):
    assert owner_api.delete(f"{URL}good.test/").status_code == 204
    assert not Domain.objects.exists()
    assert AuditLog.objects.filter(action="domain.delete", before={"name": "good.test"}).exists()


def test_check_answers_202_with_a_task_to_poll(owner_api, domain):
    response = owner_api.post(f"{URL}good.test/check/")
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert response.json()["url"] == f"/api/v1/tasks/{task_id}/"
    task = owner_api.get(f"/api/v1/tasks/{task_id}/").json()
    assert task["state"] == "pending" and task["kind"] == "domain.check"


def test_outsider_cannot_read_anothers_task(owner_api, outsider_api, domain):
    task_id = owner_api.post(f"{URL}good.test/check/").json()["task_id"]
    assert outsider_api.get(f"/api/v1/tasks/{task_id}/").status_code == 404


def test_checks_lists_the_current_result_per_check(owner_api, domain):
    now = timezone.now()
    store = check_outcomes_store
    store(domain=domain, outcomes=[CheckOutcome("mx", CheckStatus.FAIL, "old")], checked_at=now)
    later = now + timedelta(minutes=5)
    store(
        domain=domain,
        outcomes=[CheckOutcome("mx", CheckStatus.OK, "new", {"x": 1})],
        checked_at=later,
    )
    results = owner_api.get(f"{URL}good.test/checks/").json()
    assert [(r["name"], r["status"], r["summary"], r["details"]) for r in results] == [
        ("mx", "ok", "new", {"x": 1})
    ]
    assert owner_api.get(f"{URL}good.test/").json()["status"] == "ok"


def test_status_filter_lists_domains_by_worst_status(owner_api, domain, org):
    other = Domain.objects.create(organisation=org, name="other.test")
    now = timezone.now()
    check_outcomes_store(domain=domain, outcomes=[CheckOutcome("mx", CheckStatus.OK, "fine"),
                         CheckOutcome("spf", CheckStatus.FAIL, "bad")], checked_at=now)  # fmt: skip
    check_outcomes_store(
        domain=other, outcomes=[CheckOutcome("mx", CheckStatus.OK, "fine")], checked_at=now
    )
    names = [d["name"] for d in owner_api.get(f"{URL}?status=fail").json()["results"]]
    assert names == ["good.test"]
    names = [d["name"] for d in owner_api.get(f"{URL}?status=ok").json()["results"]]
    assert names == ["other.test"]


def test_member_of_two_organisations_must_name_one(owner_api, owner, other_org):
    membership_set(organisation=other_org, user=owner, role=Role.ADMIN, actor=None)
    response = owner_api.post(URL, {"name": "two.test"}, format="json")
    assert response.status_code == 400
    response = owner_api.post(
        URL, {"name": "two.test", "organisation": other_org.slug}, format="json"
    )
    assert response.status_code == 201
    assert Domain.objects.get(name="two.test").organisation == other_org


def test_cannot_create_in_an_organisation_one_does_not_belong_to(owner_api, other_org):
    response = owner_api.post(
        URL, {"name": "x.test", "organisation": other_org.slug}, format="json"
    )
    assert response.status_code == 400
    assert not Domain.objects.exists()


def test_create_with_list_filters_in_the_query_string_still_answers_201(owner_api):
    response = owner_api.post(f"{URL}?status=fail&search=zzz", {"name": "new.test"}, format="json")
    assert response.status_code == 201
    assert response.json()["name"] == "new.test"


def test_check_now_while_one_is_queued_joins_it(owner_api, domain):
    first = owner_api.post(f"{URL}good.test/check/").json()["task_id"]
    second = owner_api.post(f"{URL}good.test/check/").json()["task_id"]
    assert first == second
    assert TaskRun.objects.filter(object_id=str(domain.pk)).count() == 1


def test_events_list_status_changes_newest_first(owner_api, outsider_api, domain):
    now = timezone.now()
    check_outcomes_store(
        domain=domain, outcomes=[CheckOutcome("mx", CheckStatus.OK, "a")], checked_at=now
    )
    later = now + timedelta(minutes=1)
    check_outcomes_store(
        domain=domain, outcomes=[CheckOutcome("mx", CheckStatus.FAIL, "b")], checked_at=later
    )
    events = owner_api.get(f"{URL}good.test/events/").json()
    assert [(e["previous_status"], e["status"], e["summary"]) for e in events] == [
        ("ok", "fail", "b"),
        ("", "ok", "a"),
    ]
    assert outsider_api.get(f"{URL}good.test/events/").status_code == 404


def test_a_domain_over_the_quota_is_refused_with_400(owner_api, org, settings):
    settings.MAILSEC_DOMAINS_PER_ORGANISATION = 1
    assert owner_api.post(URL, {"name": "one.test"}, format="json").status_code == 201
    response = owner_api.post(URL, {"name": "two.test"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "already has 1 domains" in error["details"]["name"][0]


def test_check_now_beyond_the_rate_limit_is_429_in_the_error_shape(owner_api, org, settings):
    settings.MAILSEC_CHECK_NOW_PER_MINUTE = 2
    for name in ("a.test", "b.test", "c.test"):
        Domain.objects.create(organisation=org, name=name)
    assert owner_api.post(f"{URL}a.test/check/").status_code == 202
    assert owner_api.post(f"{URL}b.test/check/").status_code == 202
    # Joining the check already queued is free.
    assert owner_api.post(f"{URL}a.test/check/").status_code == 202
    response = owner_api.post(f"{URL}c.test/check/")
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    error = response.json()["error"]
    assert error["code"] == "throttled"
    assert "2 checks in the last minute" in error["message"]
    assert error["details"] == {}
