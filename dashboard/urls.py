from django.urls import path, register_converter

from dashboard.views import (
    alerts,
    audit,
    blocklists,
    dkim,
    domains,
    hosts,
    members,
    metrics,
    overview,
    policies,
    report_mailboxes,
    reports,
    tokens,
)

app_name = "dashboard"


class RowId:
    """A primary key in a path: at most 18 digits, so it always fits the database's bigint
    (Django's `int` takes any length, and an overflowing id would be a 500, not a 404)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowId, "id")

urlpatterns = [
    path("", overview.overview, name="home"),
    path("metrics", metrics.metrics, name="metrics"),
    path("domains/", domains.domain_list, name="domain_list"),
    path("domains/add/", domains.domain_add, name="domain_add"),
    path("domains/<id:pk>/", domains.domain_detail, name="domain_detail"),
    path("domains/<id:pk>/row/", domains.domain_row, name="domain_row"),
    path("domains/<id:pk>/checks/", domains.domain_checks, name="domain_checks"),
    path("domains/<id:pk>/check/", domains.domain_check, name="domain_check"),
    path("domains/<id:pk>/dkim/", dkim.dkim_panel, name="dkim_panel"),
    path("domains/<id:pk>/dkim/keys/", dkim.dkim_key_add, name="dkim_key_add"),
    path("domains/<id:pk>/dkim/selectors/", dkim.dkim_selector_add, name="dkim_selector_add"),
    path("domains/<id:pk>/dkim/rotation/", dkim.dkim_rotation, name="dkim_rotation"),
    path("domains/<id:pk>/dkim/dns-update/", dkim.dns_update_set, name="dns_update_set"),
    path("dkim-keys/<id:pk>/rotate/", dkim.dkim_key_rotate, name="dkim_key_rotate"),
    path("dkim-keys/<id:pk>/retire/", dkim.dkim_key_retire, name="dkim_key_retire"),
    path("dkim-selectors/<id:pk>/remove/", dkim.dkim_selector_remove, name="dkim_selector_remove"),
    path("domains/<id:pk>/delete/", domains.domain_delete, name="domain_delete"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("blocklists/", blocklists.blocklist_page, name="blocklist_page"),
    path("blocklists/<slug:slug>/matrix/", blocklists.blocklist_matrix, name="blocklist_matrix"),
    path("blocklists/<slug:slug>/poll/", blocklists.blocklist_poll, name="blocklist_poll"),
    path(
        "blocklists/<slug:slug>/entries/",
        blocklists.blacklist_entry_add,
        name="blacklist_entry_add",
    ),
    path("blocklists/<slug:slug>/zones/", blocklists.blocklist_zone_add, name="blocklist_zone_add"),
    path("blocklists/<slug:slug>/dqs-key/", blocklists.blocklist_dqs_key, name="blocklist_dqs_key"),
    path(
        "blacklist-entries/<id:pk>/remove/",
        blocklists.blacklist_entry_remove,
        name="blacklist_entry_remove",
    ),
    path(
        "blocklist-zones/<id:pk>/toggle/",
        blocklists.blocklist_zone_toggle,
        name="blocklist_zone_toggle",
    ),
    path(
        "blocklist-zones/<id:pk>/remove/",
        blocklists.blocklist_zone_remove,
        name="blocklist_zone_remove",
    ),
    path("domains/<id:pk>/blocklists/", blocklists.domain_listings, name="domain_listings"),
    path("alerts/", alerts.alerts_page, name="alerts_page"),
    path("alerts/<slug:slug>/channels/", alerts.alert_channel_add, name="alert_channel_add"),
    path("alerts/<slug:slug>/rules/", alerts.alert_rule_add, name="alert_rule_add"),
    path("alerts/<slug:slug>/rules/panel/", alerts.alert_rules_panel, name="alert_rules_panel"),
    path("alerts/<slug:slug>/digest/", alerts.alert_digest_set, name="alert_digest_set"),
    path("alert-channels/<id:pk>/test/", alerts.alert_channel_test, name="alert_channel_test"),
    path(
        "alert-channels/<id:pk>/enable/", alerts.alert_channel_enable, name="alert_channel_enable"
    ),
    path(
        "alert-channels/<id:pk>/remove/", alerts.alert_channel_remove, name="alert_channel_remove"
    ),
    path("alert-rules/<id:pk>/remove/", alerts.alert_rule_remove, name="alert_rule_remove"),
    path(
        "alert-states/<id:pk>/acknowledge/",
        alerts.alert_state_acknowledge,
        name="alert_state_acknowledge",
    ),
    path("alert-states/<id:pk>/snooze/", alerts.alert_state_snooze, name="alert_state_snooze"),
    path("hosts/", hosts.host_list, name="host_list"),
    path("hosts/add/", hosts.host_add, name="host_add"),
    path("hosts/<id:pk>/", hosts.host_detail, name="host_detail"),
    path("hosts/<id:pk>/confirm-key/", hosts.host_confirm_key, name="host_confirm_key"),
    path("hosts/<id:pk>/settings/", hosts.host_settings, name="host_settings"),
    path("hosts/<id:pk>/connection/", hosts.host_connection, name="host_connection"),
    path("hosts/<id:pk>/deploy/", hosts.host_deploy, name="host_deploy"),
    path("hosts/<id:pk>/deployments/", hosts.host_deployments, name="host_deployments"),
    path("hosts/<id:pk>/delete/", hosts.host_delete, name="host_delete"),
    path("hosts/<id:pk>/probe/", hosts.host_probe, name="host_probe"),
    path("hosts/<id:pk>/probes/", hosts.host_probes, name="host_probes"),
    path("domains/<id:pk>/hosts/", hosts.domain_hosts, name="domain_hosts"),
    path("policies/", policies.policy_list, name="policy_list"),
    path("policies/add/", policies.policy_add, name="policy_add"),
    path("policies/<id:pk>/", policies.policy_edit, name="policy_edit"),
    path("policies/<id:pk>/delete/", policies.policy_delete, name="policy_delete"),
    path("reports/", reports.report_home, name="report_home"),
    path("reports/domains/<id:pk>/", reports.report_dashboard, name="report_dashboard"),
    path("reports/domains/<id:pk>/card/", reports.report_domain_card, name="report_domain_card"),
    path("reports/quarantine/", reports.quarantine_list, name="report_quarantine"),
    path("reports/mailboxes/", report_mailboxes.mailbox_list, name="report_mailboxes"),
    path(
        "reports/mailboxes/<id:pk>/edit/",
        report_mailboxes.mailbox_edit,
        name="report_mailbox_edit",
    ),
    path(
        "reports/mailboxes/<id:pk>/delete/",
        report_mailboxes.mailbox_delete,
        name="report_mailbox_delete",
    ),
    path(
        "reports/mailboxes/<id:pk>/poll/",
        report_mailboxes.mailbox_poll,
        name="report_mailbox_poll",
    ),
    path("reports/<id:pk>/", reports.report_detail, name="report_detail"),
    path(
        "raw-messages/<id:pk>/download/", reports.raw_message_download, name="raw_message_download"
    ),
    path(
        "raw-messages/<id:pk>/reprocess/",
        reports.raw_message_reprocess,
        name="raw_message_reprocess",
    ),
    path("organisations/", members.organisation_list, name="organisation_list"),
    path("organisations/<slug:slug>/members/", members.member_add, name="member_add"),
    path("memberships/<id:pk>/remove/", members.member_remove, name="member_remove"),
    path(
        "invitations/<id:pk>/accept/",
        members.invitation_answer,
        {"answer": "accept"},
        name="invitation_accept",
    ),
    path(
        "invitations/<id:pk>/decline/",
        members.invitation_answer,
        {"answer": "decline"},
        name="invitation_decline",
    ),
    path(
        "invitations/<id:pk>/withdraw/",
        members.invitation_withdraw_view,
        name="invitation_withdraw",
    ),
    path("invite/<str:code>/", members.invitation_link, name="invitation_link"),
    path("tokens/", tokens.token_list, name="token_list"),
    path("tokens/<id:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
]
