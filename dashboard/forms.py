"""Input of the htmx UI. Forms check the shape of what was typed; the services still decide
who may do it and write the audit log."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator

from dns_records.names import InvalidDomainName, normalise_domain
from mailsec.models import Organisation, Role, TokenScope

NOT_WRITABLE = "You cannot add domains to that organisation."


class IdPrefixForm(forms.Form):
    """A form whose field ids start with `id_prefix`: several forms share a page, never an id."""

    id_prefix = "form-"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"{self.id_prefix}%s")
        super().__init__(*args, **kwargs)


class DomainAddForm(forms.Form):
    """A domain name and one of the organisations the user may change (the first by default:
    the page shows no organisation menu when there is only one)."""

    name = forms.CharField(
        error_messages={"required": "Enter a domain name."},
        widget=forms.TextInput(attrs={"placeholder": "example.org", "autocomplete": "off"}),
    )
    organisation = forms.TypedChoiceField(
        coerce=int,
        required=False,
        empty_value=None,
        error_messages={"invalid_choice": NOT_WRITABLE},
        widget=forms.Select(attrs={"aria-label": "Organisation"}),
    )

    def __init__(self, *args: Any, organisations: Sequence[Organisation], **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "domain-%s")
        super().__init__(*args, **kwargs)
        self.organisations = {org.pk: org for org in organisations}
        field = self.fields["organisation"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [(org.pk, org.name) for org in organisations]

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        try:
            return normalise_domain(name)
        except InvalidDomainName as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_organisation(self) -> Organisation:
        pk: int | None = self.cleaned_data["organisation"]
        if pk is None and self.organisations:
            pk = next(iter(self.organisations))
        if pk not in self.organisations:
            raise forms.ValidationError(NOT_WRITABLE)
        return self.organisations[pk]


# Expiry choices in days; None never expires.
EXPIRY_DAYS: dict[str, int | None] = {"30": 30, "90": 90, "365": 365, "never": None}


class TokenCreateForm(IdPrefixForm):
    """A new API token: what it is for, read or write, and when it expires."""

    id_prefix = "token-"

    name = forms.CharField(
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "what it is for"}),
    )
    scope = forms.ChoiceField(
        choices=[(TokenScope.READ, "read"), (TokenScope.WRITE, "read and write")],
        initial=TokenScope.READ,
        error_messages={"required": "Choose a scope.", "invalid_choice": "Choose a scope."},
        widget=forms.Select(attrs={"aria-label": "Scope"}),
    )
    expires = forms.ChoiceField(
        choices=[
            ("30", "expires in 30 days"),
            ("90", "expires in 90 days"),
            ("365", "expires in a year"),
            ("never", "never expires"),
        ],
        initial="90",
        error_messages={"required": "Choose an expiry.", "invalid_choice": "Choose an expiry."},
        widget=forms.Select(attrs={"aria-label": "Expires"}),
    )

    def expires_at(self, now: datetime) -> datetime | None:
        days = EXPIRY_DAYS[self.cleaned_data["expires"]]
        return now + timedelta(days=days) if days is not None else None


class MemberAddForm(forms.Form):
    """A username and a role: a current member's new role, or an invitation for anyone else."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        error_messages={
            "required": "Enter a username of at most 150 characters.",
            "max_length": "Enter a username of at most 150 characters.",
        },
        widget=forms.TextInput(attrs={"placeholder": "username", "autocomplete": "off"}),
    )
    role = forms.ChoiceField(
        choices=Role.choices,
        initial=Role.VIEWER,
        error_messages={"required": "Choose a role.", "invalid_choice": "Choose a role."},
        widget=forms.Select(attrs={"aria-label": "Role"}),
    )

    def __init__(self, *args: Any, slug: str, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"member-{slug}-%s")
        super().__init__(*args, **kwargs)


class InvitationSignUpForm(forms.Form):
    """A new account made through an invitation's link: its name and password, twice."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        error_messages={
            "required": "Enter a username of at most 150 characters.",
            "max_length": "Enter a username of at most 150 characters.",
        },
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "sign-up-%s")
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second:
            if first != second:
                self.add_error("password2", "The two passwords differ.")
            else:
                try:
                    validate_password(first, User(username=cleaned.get("username", "")))
                except forms.ValidationError as exc:
                    self.add_error("password1", exc)
        return cleaned


class DkimKeyForm(IdPrefixForm):
    """A new DKIM key: its algorithm, and a selector when the admin wants to choose one."""

    id_prefix = "dkim-"

    algorithm = forms.ChoiceField(
        choices=[("rsa", "RSA 2048"), ("ed25519", "Ed25519")],
        error_messages={
            "required": "Choose an algorithm.",
            "invalid_choice": "Choose rsa or ed25519.",
        },
    )
    selector = forms.CharField(
        required=False,
        max_length=63,
        widget=forms.TextInput(attrs={"placeholder": "generated", "autocomplete": "off"}),
    )


class DkimSelectorForm(IdPrefixForm):
    """A selector another sender uses for the domain, and who that is."""

    id_prefix = "dkim-selector-"

    selector = forms.CharField(
        max_length=63,
        error_messages={"required": "Enter the selector (the part before ._domainkey)."},
        widget=forms.TextInput(attrs={"placeholder": "google", "autocomplete": "off"}),
    )
    note = forms.CharField(
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "Google Workspace"}),
    )


class DkimRotationForm(IdPrefixForm):
    """How often mailsec rotates the domain's active keys by itself; empty means by hand."""

    id_prefix = "dkim-rotation-"

    rotation_days = forms.IntegerField(
        required=False,
        min_value=7,
        max_value=3650,
        widget=forms.NumberInput(attrs={"placeholder": "by hand"}),
    )


class DnsUpdateForm(IdPrefixForm):
    """The RFC 2136 server mailsec publishes DKIM records through, with its TSIG key."""

    id_prefix = "dns-update-"

    server = forms.CharField(
        max_length=60, widget=forms.TextInput(attrs={"placeholder": "192.0.2.53 or 192.0.2.53:53"})
    )
    zone = forms.CharField(
        max_length=253, widget=forms.TextInput(attrs={"placeholder": "example.org"})
    )
    tsig_name = forms.CharField(max_length=253, label="TSIG key name")
    tsig_algorithm = forms.ChoiceField(
        choices=[("hmac-sha256", "HMAC-SHA256"), ("hmac-sha512", "HMAC-SHA512")], label="Algorithm"
    )
    tsig_secret = forms.CharField(
        label="TSIG secret (base64)", widget=forms.PasswordInput(attrs={"autocomplete": "off"})
    )

    def clean_tsig_secret(self) -> bytes:
        text: str = self.cleaned_data["tsig_secret"]
        try:
            return base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise forms.ValidationError("The secret is not base64.") from None


# --- managed hosts and their policies ---------------------------------------------------------


def _choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices


class HostForm(IdPrefixForm):
    """A host to register: where SSH reaches it, its config directories, domains and policy."""

    id_prefix = "host-"

    organisation = forms.ChoiceField(required=False, label="Organisation")
    name = forms.CharField(
        max_length=253,
        label="Mail name",
        help_text="The host's mail name (Postfix myhostname), e.g. mx1.example.org",
        widget=forms.TextInput(attrs={"placeholder": "mx1.example.org", "autocomplete": "off"}),
    )
    address = forms.CharField(
        max_length=253,
        label="Address",
        help_text="IP address or name mailsec connects to over SSH",
        widget=forms.TextInput(attrs={"placeholder": "192.0.2.25", "autocomplete": "off"}),
    )
    ssh_port = forms.IntegerField(min_value=1, max_value=65535, initial=22, label="SSH port")
    ssh_user = forms.CharField(max_length=32, initial="mailsec", label="SSH user")
    postfix_config_dir = forms.CharField(
        max_length=255, initial="/etc/postfix", label="Postfix config directory"
    )
    dovecot_config_dir = forms.CharField(
        max_length=255, initial="/etc/dovecot", label="Dovecot config directory"
    )
    opendkim_config_dir = forms.CharField(
        max_length=255, initial="/etc/opendkim", label="OpenDKIM config directory"
    )
    domains = forms.MultipleChoiceField(
        required=False, label="Domains it serves", widget=forms.CheckboxSelectMultiple
    )
    policy = forms.ChoiceField(required=False, label="Policy")

    def __init__(
        self,
        *args: Any,
        organisations: Sequence[Organisation] = (),
        domain_names: Sequence[str] = (),
        policies: Sequence[tuple[int, str]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.organisations = list(organisations)
        _choices(self, "organisation", [(o.slug, o.name) for o in self.organisations])
        _choices(self, "domains", [(n, n) for n in domain_names])
        _choices(self, "policy", [("", "none yet"), *((str(i), n) for i, n in policies)])

    def clean_policy(self) -> int | None:
        value = self.cleaned_data.get("policy")
        return int(value) if value else None


class HostSettingsForm(IdPrefixForm):
    """What a host serves and with which policy (a changed address is registered anew)."""

    id_prefix = "host-settings-"

    domains = forms.MultipleChoiceField(
        required=False, label="Domains it serves", widget=forms.CheckboxSelectMultiple
    )
    policy = forms.ChoiceField(required=False, label="Policy")

    def __init__(
        self,
        *args: Any,
        domain_names: Sequence[str] = (),
        policies: Sequence[tuple[int, str]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "domains", [(n, n) for n in domain_names])
        _choices(self, "policy", [("", "none"), *((str(i), n) for i, n in policies)])

    def clean_policy(self) -> int | None:
        value = self.cleaned_data.get("policy")
        return int(value) if value else None


class HostKeyConfirmForm(IdPrefixForm):
    id_prefix = "host-key-"

    fingerprint = forms.CharField(
        max_length=500,
        label="Fingerprint shown on the host",
        error_messages={"required": "Paste the fingerprint ssh-keygen printed on the host."},
        widget=forms.TextInput(attrs={"placeholder": "SHA256:...", "autocomplete": "off"}),
    )


# The thirteen controls, each with the policy fields that enforce it (none: DNS checks only).
POLICY_CONTROLS: list[tuple[int, str, tuple[str, ...]]] = [
    (1, "Maximum message size", ("message_size_limit",)),
    (2, "Local IP blacklist", ("enforce_local_blacklist",)),
    (3, "Reverse DNS and HELO", (
        "reverse_dns", "helo_required", "reject_invalid_helo_hostname",
        "reject_non_fqdn_helo_hostname", "reject_unknown_helo_hostname",
    )),
    (4, "TLS for IMAP and POP3", ("imap_pop3_tls_required", "tls_min_version")),
    (5, "SPF", ()),
    (6, "SMTP authentication", ("submission_enabled",)),
    (7, "No open relay", ("mynetworks",)),
    (8, "Connection, rate and error limits", (
        "smtpd_client_connection_count_limit", "smtpd_client_connection_rate_limit",
        "smtpd_client_message_rate_limit", "smtpd_client_recipient_rate_limit",
        "smtpd_error_sleep_time", "smtpd_soft_error_limit", "smtpd_hard_error_limit",
        "anvil_rate_time_unit", "dovecot_mail_max_userip_connections",
        "dovecot_login_process_limit", "dovecot_auth_failure_delay",
    )),
    (9, "Domain blocklists (RHSBL)", (
        "rhsbl_client_sites", "rhsbl_sender_sites", "rhsbl_helo_sites",
    )),
    (10, "MX records", ()),
    (11, "DKIM signing", ("dkim_signing",)),
    (12, "DMARC", ()),
    (13, "IP blocklists (DNSBL)", ("dnsbl_mode", "dnsbl_sites", "dnsbl_threshold")),
]  # fmt: skip
MONITORED_ONLY = {
    5: "Checked in DNS by mailsec (the domain's SPF record, and that every host here passes it).",
    10: "Checked in DNS by mailsec (the domain's MX hosts): nothing to set on the hosts.",
    12: "Checked in DNS by mailsec (the domain's DMARC record) and read from aggregate reports.",
}
LIST_FIELDS = ("mynetworks", "rhsbl_client_sites", "rhsbl_sender_sites", "rhsbl_helo_sites")
POLICY_LABELS = {
    "message_size_limit": "Message size limit (bytes)",
    "reverse_dns": "Reverse DNS check",
    "helo_required": "Require HELO/EHLO",
    "reject_invalid_helo_hostname": "Refuse invalid HELO names",
    "reject_non_fqdn_helo_hostname": "Refuse HELO names that are not fully qualified",
    "reject_unknown_helo_hostname": "Refuse HELO names with no DNS record",
    "imap_pop3_tls_required": "IMAP and POP3 only over TLS",
    "tls_min_version": "Minimum TLS version",
    "submission_enabled": "Submission service (port 587) with SASL over TLS",
    "mynetworks": "Trusted networks (mynetworks), one per line",
    "smtpd_client_connection_count_limit": "Connections per client at once",
    "smtpd_client_connection_rate_limit": "Connections per client per time unit",
    "smtpd_client_message_rate_limit": "Messages per client per time unit",
    "smtpd_client_recipient_rate_limit": "Recipients per client per time unit",
    "smtpd_error_sleep_time": "Delay after errors (seconds)",
    "smtpd_soft_error_limit": "Soft error limit",
    "smtpd_hard_error_limit": "Hard error limit",
    "anvil_rate_time_unit": "Rate limit time unit (seconds)",
    "dovecot_mail_max_userip_connections": "IMAP/POP3 connections per user and address",
    "dovecot_login_process_limit": "IMAP/POP3 login processes",
    "dovecot_auth_failure_delay": "Delay after a failed login (seconds)",
    "rhsbl_client_sites": "Client host name blocklists, one zone per line",
    "rhsbl_sender_sites": "Sender domain blocklists, one zone per line",
    "rhsbl_helo_sites": "HELO name blocklists, one zone per line",
    "dkim_signing": "Sign outgoing mail with DKIM",
    "dnsbl_mode": "Where IP blocklists are checked",
    "dnsbl_sites": "IP blocklists: zone and weight, one per line",
    "dnsbl_threshold": "Postscreen score that blocks",
}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class PolicyForm(IdPrefixForm):
    """Every control's value. Lists are one entry per line; blocklist sites are `zone weight`.
    The shape is checked here; hosts.policy.validate (through the service) has the last word."""

    id_prefix = "policy-"

    name = forms.CharField(max_length=100, label="Name")

    def __init__(self, *args: Any, initial_values: dict[str, Any] | None = None, **kwargs: Any):
        from hosts.policy import BOOL_FIELDS, CHOICE_FIELDS, FIELD_HELP, INT_BOUNDS

        super().__init__(*args, **kwargs)
        values = initial_values or {}
        for name, help_text in FIELD_HELP.items():
            field: forms.Field
            label = POLICY_LABELS.get(name) or name.replace("_", " ").capitalize()
            if name in INT_BOUNDS:
                low, high = INT_BOUNDS[name]
                field = forms.IntegerField(min_value=low, max_value=high)
            elif name in BOOL_FIELDS:
                field = forms.BooleanField(required=False)
            elif name in CHOICE_FIELDS:
                field = forms.ChoiceField(choices=[(str(m), str(m)) for m in CHOICE_FIELDS[name]])
            elif name == "dnsbl_sites":
                field = forms.CharField(
                    required=False,
                    widget=forms.Textarea(attrs={"rows": 3, "placeholder": "zen.spamhaus.org 2"}),
                )
            else:
                field = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
            field.label, field.help_text = label, help_text
            self.fields[name] = field
            if name in values:
                self.initial[name] = self._shown(name, values[name])

    @staticmethod
    def _shown(name: str, value: Any) -> Any:
        if name == "dnsbl_sites":
            return "\n".join(f"{s['zone']} {s['weight']}" for s in value)
        if name in LIST_FIELDS:
            return "\n".join(value)
        return value

    def groups(self) -> list[dict[str, Any]]:
        return [
            {
                "number": number,
                "title": title,
                "fields": [self[name] for name in names],
                "monitored": MONITORED_ONLY.get(number, ""),
            }
            for number, title, names in POLICY_CONTROLS
        ]

    def clean_dnsbl_sites(self) -> list[dict[str, Any]]:
        sites = []
        for line in _lines(self.cleaned_data.get("dnsbl_sites") or ""):
            parts = line.split()
            if len(parts) == 1:
                sites.append({"zone": parts[0], "weight": 1})
            elif len(parts) == 2 and parts[1].lstrip("-").isdigit():
                sites.append({"zone": parts[0], "weight": int(parts[1])})
            else:
                raise forms.ValidationError(
                    f"{line[:80]!r}: one site per line, its zone and optionally a weight."
                )
        return sites

    def values(self) -> dict[str, Any]:
        """The cleaned values as the policy services take them."""
        out = {}
        for name, value in self.cleaned_data.items():
            if name == "name":
                continue
            out[name] = _lines(value) if name in LIST_FIELDS else value
        return out


class HostConnectionForm(IdPrefixForm):
    """Where mailsec reaches a host. A new address or port fetches the host key again, and the
    admin confirms it again before anything more is written."""

    id_prefix = "host-connection-"

    name = forms.CharField(max_length=253, label="Mail name")
    address = forms.CharField(max_length=253, label="Address")
    ssh_port = forms.IntegerField(min_value=1, max_value=65535, label="SSH port")
    ssh_user = forms.CharField(max_length=32, label="SSH user")
    postfix_config_dir = forms.CharField(max_length=255, label="Postfix config directory")
    dovecot_config_dir = forms.CharField(max_length=255, label="Dovecot config directory")
    opendkim_config_dir = forms.CharField(max_length=255, label="OpenDKIM config directory")
