"""Read serializers of the reports API: reports, records, TLS reports and the domain summary."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mailsec.models import Organisation
from reports.classify import classify, record_counts
from reports.models import Record, Report, TlsFailure, TlsPolicy, TlsReport


class PublishedPolicySerializer(serializers.Serializer[Report]):
    p = serializers.CharField(source="policy_p")
    sp = serializers.CharField(source="policy_sp")
    np = serializers.CharField(source="policy_np")
    pct = serializers.IntegerField(source="policy_pct", allow_null=True)
    adkim = serializers.CharField(source="policy_adkim")
    aspf = serializers.CharField(source="policy_aspf")
    fo = serializers.CharField(source="policy_fo")
    testing = serializers.CharField(source="policy_testing")


class ReportSerializer(serializers.ModelSerializer[Report]):
    """A DMARC aggregate report in the contract's shape (list and detail)."""

    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    domain = serializers.CharField(source="policy_domain", help_text="The policy domain")
    dmarc_fail_count = serializers.SerializerMethodField()
    policy = PublishedPolicySerializer(source="*")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = [
            "id",
            "url",
            "organisation",
            "org_name",
            "email",
            "report_id",
            "domain",
            "date_begin",
            "date_end",
            "record_count",
            "message_count",
            "dmarc_pass_count",
            "dmarc_fail_count",
            "policy",
            "schema",
            "created_at",
        ]
        read_only_fields = fields

    def get_dmarc_fail_count(self, obj: Report) -> int:
        return max(obj.message_count - obj.dmarc_pass_count, 0)

    def get_url(self, obj: Report) -> str:
        return f"/api/v1/reports/{obj.pk}/"


class RecordSerializer(serializers.ModelSerializer[Record]):
    source_class = serializers.SerializerMethodField(
        help_text="own, forwarder, unauthorised or spoofing"
    )
    source_class_explanation = serializers.SerializerMethodField()

    class Meta:
        model = Record
        fields = [
            "source_ip",
            "count",
            "disposition",
            "dkim_aligned",
            "spf_aligned",
            "header_from",
            "envelope_from",
            "envelope_to",
            "reasons",
            "dkim_results",
            "spf_results",
            "source_class",
            "source_class_explanation",
        ]
        read_only_fields = fields

    def _classification(self, obj: Record) -> Any:
        cached = getattr(obj, "_classification", None)
        if cached is None:
            counts = record_counts(
                count=obj.count,
                dkim_aligned=obj.dkim_aligned,
                spf_aligned=obj.spf_aligned,
                dkim_results=[str(r.get("result", "")) for r in _dicts(obj.dkim_results)],
                spf_results=[str(r.get("result", "")) for r in _dicts(obj.spf_results)],
                override_types=[str(r.get("type", "")) for r in _dicts(obj.reasons)],
            )
            cached = classify(counts)
            obj._classification = cached  # type: ignore[attr-defined]
        return cached

    def get_source_class(self, obj: Record) -> str:
        return str(self._classification(obj).kind)

    def get_source_class_explanation(self, obj: Record) -> str:
        return str(self._classification(obj).explanation)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class ReportDetailSerializer(ReportSerializer):
    """A report with its extra metadata; the view adds a page of its records."""

    raw_message_id = serializers.IntegerField(allow_null=True)

    class Meta(ReportSerializer.Meta):
        fields = [
            *ReportSerializer.Meta.fields,
            "extra_contact_info",
            "generator",
            "errors",
            "raw_message_id",
        ]
        read_only_fields = fields


class ReportWithRecordsSerializer(ReportDetailSerializer):
    """The detail response: the report's fields, one page of its records (most messages first)
    and the links to the pages before and after. The view passes the page in the context."""

    records = serializers.SerializerMethodField()
    records_count = serializers.SerializerMethodField()
    records_next = serializers.SerializerMethodField()
    records_previous = serializers.SerializerMethodField()

    class Meta(ReportDetailSerializer.Meta):
        fields = [
            *ReportDetailSerializer.Meta.fields,
            "records_count",
            "records_next",
            "records_previous",
            "records",
        ]
        read_only_fields = fields

    @extend_schema_field(RecordSerializer(many=True))
    def get_records(self, obj: Report) -> Any:
        return RecordSerializer(self.context["records"], many=True).data

    def get_records_count(self, obj: Report) -> int:
        return int(self.context["records_count"])

    def get_records_next(self, obj: Report) -> str | None:
        return self.context["records_next"]  # type: ignore[no-any-return]

    def get_records_previous(self, obj: Report) -> str | None:
        return self.context["records_previous"]  # type: ignore[no-any-return]


class TlsFailureSerializer(serializers.ModelSerializer[TlsFailure]):
    class Meta:
        model = TlsFailure
        fields = [
            "result_type",
            "failed_session_count",
            "sending_mta_ip",
            "receiving_mx_hostname",
            "receiving_mx_helo",
            "receiving_ip",
            "additional_information",
            "failure_reason_code",
        ]
        read_only_fields = fields


class TlsPolicySerializer(serializers.ModelSerializer[TlsPolicy]):
    failures = TlsFailureSerializer(many=True, read_only=True)

    class Meta:
        model = TlsPolicy
        fields = [
            "policy_type",
            "policy_domain",
            "policy_strings",
            "mx_hosts",
            "successful_sessions",
            "failed_sessions",
            "failures",
        ]
        read_only_fields = fields


class TlsReportSerializer(serializers.ModelSerializer[TlsReport]):
    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    domain = serializers.CharField(source="policy_domain")
    url = serializers.SerializerMethodField()

    class Meta:
        model = TlsReport
        fields = [
            "id",
            "url",
            "organisation",
            "org_name",
            "report_id",
            "contact_info",
            "domain",
            "date_begin",
            "date_end",
            "successful_sessions",
            "failed_sessions",
            "created_at",
        ]
        read_only_fields = fields

    def get_url(self, obj: TlsReport) -> str:
        return f"/api/v1/tls-reports/{obj.pk}/"


class TlsReportDetailSerializer(TlsReportSerializer):
    policies = TlsPolicySerializer(many=True, read_only=True)

    class Meta(TlsReportSerializer.Meta):
        fields = [*TlsReportSerializer.Meta.fields, "policies"]
        read_only_fields = fields


# --- the summary: plain serializers over the selectors' dataclasses ---------------------------


class TotalsSerializer(serializers.Serializer[Any]):
    messages = serializers.IntegerField()
    dmarc_pass = serializers.IntegerField()
    dmarc_fail = serializers.IntegerField()
    spf_aligned_pass = serializers.IntegerField()
    dkim_aligned_pass = serializers.IntegerField()
    spf_pass = serializers.IntegerField()
    dkim_pass = serializers.IntegerField()
    dispositions = serializers.DictField(child=serializers.IntegerField())


class DayPointSerializer(serializers.Serializer[Any]):
    day = serializers.DateField()
    messages = serializers.IntegerField()
    dmarc_pass = serializers.IntegerField()
    dmarc_fail = serializers.IntegerField()


class SourceRowSerializer(serializers.Serializer[Any]):
    ip = serializers.CharField()
    name = serializers.CharField(source="ptr", help_text="Reverse DNS name, when resolved")
    ptr_status = serializers.CharField(help_text="ok, none, error, or empty: not looked up yet")
    asn = serializers.IntegerField(allow_null=True)
    as_org = serializers.CharField()
    country = serializers.CharField()
    messages = serializers.IntegerField()
    dmarc_pass = serializers.IntegerField(source="counts.dmarc_pass")
    spf_aligned_pass = serializers.IntegerField(source="counts.spf_aligned_pass")
    dkim_aligned_pass = serializers.IntegerField(source="counts.dkim_aligned_pass")
    pass_share = serializers.FloatField()
    source_class = serializers.CharField(source="classification.kind")
    source_class_explanation = serializers.CharField(source="classification.explanation")


class ReporterSerializer(serializers.Serializer[Any]):
    org_name = serializers.CharField()
    reports = serializers.IntegerField()
    messages = serializers.IntegerField()
    last_report = serializers.DateTimeField(allow_null=True)


class SelectorRowSerializer(serializers.Serializer[Any]):
    dkim_domain = serializers.CharField()
    selector = serializers.CharField()
    messages = serializers.IntegerField()
    results = serializers.DictField(child=serializers.IntegerField())


class TlsPolicyRowSerializer(serializers.Serializer[Any]):
    policy_type = serializers.CharField()
    policy_domain = serializers.CharField()
    mx_hosts = serializers.ListField(child=serializers.CharField())
    successful_sessions = serializers.IntegerField()
    failed_sessions = serializers.IntegerField()


class TlsMxRowSerializer(serializers.Serializer[Any]):
    mx = serializers.CharField()
    result_type = serializers.CharField()
    failed_sessions = serializers.IntegerField()


class TlsSummarySerializer(serializers.Serializer[Any]):
    reports = serializers.IntegerField()
    sessions = serializers.IntegerField()
    successful_sessions = serializers.IntegerField()
    failed_sessions = serializers.IntegerField()
    policies = TlsPolicyRowSerializer(many=True)
    failures = TlsMxRowSerializer(many=True)


class SourceToFixSerializer(serializers.Serializer[Any]):
    ip = serializers.CharField()
    name = serializers.CharField()
    source_class = serializers.CharField(source="kind")
    messages = serializers.IntegerField()
    failing = serializers.IntegerField()
    explanation = serializers.CharField()
    action = serializers.CharField()


class AdviceSerializer(serializers.Serializer[Any]):
    step = serializers.CharField(
        help_text="collect, publish, fix, quarantine, ramp, reject or done"
    )
    summary = serializers.CharField()
    current_record = serializers.CharField()
    current_policy = serializers.CharField()
    current_pct = serializers.IntegerField()
    next_record = serializers.CharField(help_text="The exact TXT value to publish; empty: none")
    messages = serializers.IntegerField()
    legitimate_messages = serializers.IntegerField()
    legitimate_failing = serializers.IntegerField()
    spoofing_messages = serializers.IntegerField()
    failing_share = serializers.FloatField()
    fail_share_quarantine = serializers.FloatField()
    fail_share_reject = serializers.FloatField()
    fix_first = SourceToFixSerializer(many=True)
    review = SourceToFixSerializer(many=True)
    notes = serializers.ListField(child=serializers.CharField())


class SummarySerializer(serializers.Serializer[Any]):
    organisation = serializers.CharField(source="organisation.slug")
    domain = serializers.CharField()
    days = serializers.IntegerField()
    start = serializers.DateField()
    totals = TotalsSerializer()
    by_day = DayPointSerializer(many=True)
    top_sources = SourceRowSerializer(many=True)
    source_count = serializers.IntegerField()
    reporters = ReporterSerializer(many=True)
    dkim_selectors = SelectorRowSerializer(many=True)
    tls = TlsSummarySerializer()
    advice = AdviceSerializer(help_text="The policy advisor, on the last 30 days")
