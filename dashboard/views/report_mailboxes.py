"""Report mailboxes: the IMAP mailboxes receivers send an organisation's reports to.

One page lists the user's organisations' mailboxes with their last poll and error; owners and
admins add, edit (the password only when retyped), remove and poll one now. Every change goes
through reports.mailboxes, which checks the role and writes the audit log; another
organisation's mailbox is a 404, a viewer's change a 403.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.forms import IdPrefixForm
from dashboard.http import HtmxRequest
from mailsec.models import Organisation
from mailsec.selectors import organisations_writable
from reports import mailboxes
from reports.models import ImapMailbox

PANEL = "dashboard/partials/mailboxes/panel.html"


class MailboxForm(IdPrefixForm):
    """A mailbox's connection and folders; on an edit, an empty password keeps the stored one."""

    id_prefix = "mailbox-"

    organisation = forms.TypedChoiceField(
        coerce=int,
        required=False,
        empty_value=None,
        widget=forms.Select(attrs={"aria-label": "Organisation"}),
    )
    host = forms.CharField(
        max_length=253, widget=forms.TextInput(attrs={"placeholder": "imap.example.org"})
    )
    port = forms.IntegerField(min_value=1, max_value=65535, initial=993)
    security = forms.ChoiceField(
        choices=[("tls", "TLS (993)"), ("starttls", "STARTTLS (143)")], initial="tls"
    )
    username = forms.CharField(
        max_length=320, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    password = forms.CharField(
        max_length=1000,
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    folder = forms.CharField(max_length=200, initial="INBOX")
    processed_folder = forms.CharField(max_length=200, initial="mailsec-processed")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(
        self, *args: Any, organisations: list[Organisation], editing: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.organisations = {org.pk: org for org in organisations}
        self.editing = editing
        field = self.fields["organisation"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [(org.pk, org.name) for org in organisations]
        if editing:
            del self.fields["organisation"]
            self.fields["password"].help_text = "Leave empty to keep the stored password."
        else:
            self.fields["password"].required = True

    def clean_organisation(self) -> Organisation | None:
        pk: int | None = self.cleaned_data.get("organisation")
        if pk is None and self.organisations:
            pk = next(iter(self.organisations))
        if pk not in self.organisations:
            raise forms.ValidationError("You cannot add mailboxes to that organisation.")
        return self.organisations[pk]

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in mailboxes.AUDITED}


def _writable(request: HtmxRequest) -> list[Organisation]:
    return list(organisations_writable(request.user).order_by("name"))


def _context(
    request: HtmxRequest,
    *,
    form: MailboxForm | None = None,
    editing: ImapMailbox | None = None,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    writable = _writable(request)
    rows = []
    for mailbox in mailboxes.mailboxes_visible(request.user):
        rows.append(
            {
                "mailbox": mailbox,
                "pending": mailboxes.poll_pending(mailbox),
                "last_run": mailboxes.poll_last(mailbox),
                "can_write": mailbox.organisation_id in {org.pk for org in writable},
            }
        )
    if form is None:
        form = MailboxForm(organisations=writable)
    return {
        "rows": rows,
        "form": form,
        "editing": editing,
        "writable_organisations": writable,
        "errors": errors or [],
        # While a poll is queued or running the table reloads itself; then it stops.
        "any_pending": any(row["pending"] for row in rows),
    }


def _panel(request: HtmxRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, PANEL, context, status=status)


def _add_service_errors(form: MailboxForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, messages in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, exc.messages)


@require_http_methods(["GET", "POST"])
def mailbox_list(request: HtmxRequest) -> HttpResponse:
    """The page; a POST adds a mailbox and answers the panel."""
    if request.method == "GET":
        template = PANEL if request.htmx else "dashboard/report_mailboxes.html"
        return render(request, template, _context(request))
    writable = _writable(request)
    form = MailboxForm(request.POST, organisations=writable)
    if form.is_valid():
        try:
            mailboxes.mailbox_create(
                organisation=form.cleaned_data["organisation"],
                password=form.cleaned_data["password"],
                actor=request.user,
                **form.service_fields(),
            )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            return _panel(request, _context(request))
    return _panel(request, _context(request, form=form))


def _mailbox(request: HtmxRequest, pk: int) -> ImapMailbox:
    mailbox = mailboxes.mailbox_visible(request.user, pk)
    if mailbox is None:
        raise Http404
    return mailbox


@require_http_methods(["GET", "POST"])
def mailbox_edit(request: HtmxRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox(request, pk)
    writable = _writable(request)
    if request.method == "GET":
        initial = {name: getattr(mailbox, name) for name in mailboxes.AUDITED}
        form = MailboxForm(initial=initial, organisations=writable, editing=True)
        return _panel(request, _context(request, form=form, editing=mailbox))
    form = MailboxForm(request.POST, organisations=writable, editing=True)
    if form.is_valid():
        try:
            mailboxes.mailbox_update(
                mailbox=mailbox,
                actor=request.user,
                password=form.cleaned_data["password"],
                **form.service_fields(),
            )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            return _panel(request, _context(request))
    return _panel(request, _context(request, form=form, editing=mailbox))


@require_POST
def mailbox_delete(request: HtmxRequest, pk: int) -> HttpResponse:
    mailboxes.mailbox_delete(mailbox=_mailbox(request, pk), actor=request.user)
    return _panel(request, _context(request))


@require_POST
def mailbox_poll(request: HtmxRequest, pk: int) -> HttpResponse:
    mailboxes.mailbox_poll_request(mailbox=_mailbox(request, pk), actor=request.user)
    return _panel(request, _context(request))
