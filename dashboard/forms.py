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
