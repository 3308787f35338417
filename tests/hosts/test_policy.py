"""The policy's validation: defaults, bounds, open relays and values that would inject config."""

from __future__ import annotations

import dataclasses

import pytest

from hosts.policy import (
    BOOL_FIELDS,
    CHOICE_FIELDS,
    DOMAIN_LIST_FIELDS,
    FIELD_HELP,
    INT_BOUNDS,
    MESSAGE_SIZE_MAX,
    BlacklistEntry,
    DnsblMode,
    DnsblSite,
    PolicyValues,
    blacklist_errors,
    validate,
)


def errors_for(**changes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for error in validate(PolicyValues(**changes)):
        out.setdefault(error.field, []).append(error.message)
    return out


def test_the_defaults_are_valid():
    assert validate(PolicyValues()) == []


def test_the_defaults_are_the_secure_choices():
    policy = PolicyValues()
    assert policy.imap_pop3_tls_required and policy.submission_enabled and policy.dkim_signing
    assert policy.enforce_local_blacklist and policy.helo_required
    assert policy.tls_min_version == "TLSv1.2"
    assert policy.reverse_dns == "reverse"
    assert set(policy.mynetworks) == {"127.0.0.0/8", "::1/128"}


def test_every_field_has_a_help_text_saying_what_it_stops():
    names = {f.name for f in dataclasses.fields(PolicyValues)}
    assert set(FIELD_HELP) == names
    assert all("Stop" in text or "Slow" in text or "Sets" in text for text in FIELD_HELP.values())


def test_every_field_is_validated_by_exactly_one_rule():
    groups = [
        set(INT_BOUNDS),
        set(BOOL_FIELDS),
        set(CHOICE_FIELDS),
        set(DOMAIN_LIST_FIELDS),
        {"mynetworks", "dnsbl_sites"},
    ]
    names = [name for group in groups for name in group]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(PolicyValues))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message_size_limit", 1024),
        ("message_size_limit", MESSAGE_SIZE_MAX + 1),
        ("smtpd_client_connection_count_limit", 0),
        ("smtpd_client_connection_rate_limit", 100_001),
        ("smtpd_error_sleep_time", -1),
        ("anvil_rate_time_unit", 5),
        ("dovecot_mail_max_userip_connections", 0),
        ("dovecot_login_process_limit", 10_001),
        ("dnsbl_threshold", 0),
    ],
)
def test_numbers_outside_their_bounds_are_refused(field, value):
    assert "outside" in errors_for(**{field: value})[field][0]


@pytest.mark.parametrize("value", ["10240000", 10.5, True, None])
def test_numbers_must_be_whole_numbers_not_text_or_booleans(value):
    assert "not a whole number" in errors_for(message_size_limit=value)["message_size_limit"][0]


def test_booleans_must_be_booleans():
    assert errors_for(dkim_signing="yes")["dkim_signing"] == ["Expected true or false."]


@pytest.mark.parametrize("value", ["TLSv1.1", "tlsv1.2", "TLSv1.2\nssl = no"])
def test_the_minimum_tls_version_is_one_of_the_two_allowed(value):
    assert "not one of TLSv1.2, TLSv1.3" in errors_for(tls_min_version=value)["tls_min_version"][0]


def test_a_hard_error_limit_below_the_soft_limit_is_refused():
    errors = errors_for(smtpd_soft_error_limit=30, smtpd_hard_error_limit=20)
    assert "below the soft limit" in errors["smtpd_hard_error_limit"][0]


@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0"])
def test_trusting_every_address_to_relay_is_refused_as_an_open_relay(network):
    assert "open relay" in errors_for(mynetworks=(network,))["mynetworks"][0]


@pytest.mark.parametrize("network", ["10.0.0.0/8", "172.16.0.0/12", "2001:db8::/32"])
def test_networks_wider_than_the_limit_are_refused(network):
    assert "wider than" in errors_for(mynetworks=(network,))["mynetworks"][0]


@pytest.mark.parametrize("network", ["::ffff:0:0/96", "::ffff:0:0/104", "64:ff9b::/96"])
def test_ipv6_prefixes_carrying_all_of_ipv4_are_judged_by_their_ipv4_width(network):
    assert "wider than /112" in errors_for(mynetworks=(network,))["mynetworks"][0]


@pytest.mark.parametrize(
    "networks",
    [
        ("::ffff:c000:200/120",),
        ("127.0.0.0/8",),
        ("192.168.10.0/24", "10.1.0.0/16"),
        ("2001:db8:1::/48",),
        (),
    ],
)
def test_loopback_and_narrow_networks_are_accepted(networks):
    assert errors_for(mynetworks=networks) == {}


def test_a_network_with_host_bits_set_is_refused_with_the_network_meant():
    assert (
        "did you mean 192.168.1.0/24" in errors_for(mynetworks=("192.168.1.7/24",))["mynetworks"][0]
    )


@pytest.mark.parametrize(
    "network",
    [
        "127.0.0.1/32\nsmtpd_relay_restrictions = permit",
        "10.0.0.0/24, 0.0.0.0/0",
        "10.0.0.0/24 0.0.0.0/0",
        "hash:/etc/postfix/network_table",
        "",
        10,
    ],
)
def test_networks_that_would_inject_config_are_refused(network):
    assert "not an IP address or network" in errors_for(mynetworks=(network,))["mynetworks"][0]


def test_mynetworks_is_a_list_not_a_string():
    assert errors_for(mynetworks="127.0.0.0/8") == {"mynetworks": ["Expected a list."]}


def test_a_network_listed_twice_is_refused():
    assert "twice" in errors_for(mynetworks=("127.0.0.0/8", "127.0.0.0/8"))["mynetworks"][0]


@pytest.mark.parametrize(
    "zone",
    [
        "dbl.example.net\nmynetworks = 0.0.0.0/0",
        "dbl.example.net, permit",
        "dbl.example.net permit",
        "a=b.example.net",
        "DBL.EXAMPLE.NET",
        "localhost",
        "-bad.example.net",
        "dbl.example.net.",
        "x" * 64 + ".example.net",
    ],
)
def test_blocklist_zones_that_are_not_plain_domain_names_are_refused(zone):
    assert "not a domain name" in errors_for(rhsbl_sender_sites=(zone,))["rhsbl_sender_sites"][0]


def test_rhsbl_and_dnsbl_zones_are_accepted_as_domain_names():
    assert (
        errors_for(
            rhsbl_client_sites=("dbl.example.net",),
            rhsbl_sender_sites=("dbl.example.net", "multi.surbl.example"),
            rhsbl_helo_sites=("dbl.example.net",),
            dnsbl_sites=(DnsblSite("zen.example.net", 3), DnsblSite("list.dnswl.example", -2)),
            dnsbl_mode=DnsblMode.POSTSCREEN,
        )
        == {}
    )


def test_dnsbl_weights_are_bounded_and_never_zero():
    errors = errors_for(
        dnsbl_mode=DnsblMode.POSTSCREEN,
        dnsbl_sites=(DnsblSite("a.example.net", 0), DnsblSite("b.example.net", 21)),
    )
    assert "does nothing" in errors["dnsbl_sites"][0]
    assert "-20 to 20" in errors["dnsbl_sites"][1]


def test_allowlist_weights_need_postscreen():
    errors = errors_for(dnsbl_mode=DnsblMode.SMTPD, dnsbl_sites=(DnsblSite("a.example.net", -1),))
    assert "need postscreen mode" in errors["dnsbl_sites"][0]


def test_a_dnsbl_zone_listed_twice_is_refused():
    sites = (DnsblSite("a.example.net", 1), DnsblSite("a.example.net", 2))
    assert "twice" in errors_for(dnsbl_sites=sites)["dnsbl_sites"][0]


def test_a_dnsbl_site_must_be_a_site_not_text():
    assert "not a blocklist site" in errors_for(dnsbl_sites=("zen.example.net",))["dnsbl_sites"][0]


def test_lists_are_bounded():
    zones = tuple(f"z{i}.example.net" for i in range(51))
    assert errors_for(rhsbl_helo_sites=zones) == {"rhsbl_helo_sites": ["At most 50 entries."]}


def test_every_problem_is_reported_at_once():
    errors = errors_for(message_size_limit=0, mynetworks=("0.0.0.0/0",), dkim_signing=None)
    assert set(errors) == {"message_size_limit", "mynetworks", "dkim_signing"}


# --- the local blacklist's entries ---------------------------------------------------------------


def test_blacklist_entries_with_networks_and_reasons_are_accepted():
    entries = [BlacklistEntry("192.0.2.0/24", "Spam run 2026-11"), BlacklistEntry("2001:db8::1")]
    assert blacklist_errors(entries) == []


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (BlacklistEntry("192.0.2.7/24", "x"), "host bits"),
        (BlacklistEntry("0.0.0.0/0", "x"), "every client"),
        (BlacklistEntry("192.0.2.0/24\n0.0.0.0/0 OK", "x"), "not an IP address"),
        (BlacklistEntry("192.0.2.0/24", "spam\n0.0.0.0/0 OK"), "printable ASCII"),
        (BlacklistEntry("192.0.2.0/24", "caf\u00e9"), "printable ASCII"),
        (BlacklistEntry("192.0.2.0/24", "x" * 201), "printable ASCII"),
    ],
)
def test_blacklist_entries_that_would_inject_or_refuse_everyone_are_refused(entry, words):
    (error,) = blacklist_errors([entry])
    assert error.field == "blacklist[0]"
    assert words in error.message
