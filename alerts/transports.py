"""One transport per channel kind, the way healthchecks has one per integration.

Each `send` returns None when delivered, or raises `TransientError` (worth a retry: a timeout,
a 5xx, a 429) or `PermanentError` (a 4xx, a refused address, a bad URL: counted towards
disabling the channel). Every HTTP request goes through dns_records.web.post_https, with its
network guard.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
from typing import ClassVar

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from alerts import render
from alerts.email_url import parse_email_url
from alerts.models import Channel, ChannelKind
from dns_records import web
from mailsec import secrets

SIGNATURE_HEADER = "X-Mailsec-Signature"
TIMESTAMP_HEADER = "X-Mailsec-Timestamp"


class TransportError(Exception):
    pass


class TransientError(TransportError):
    pass


class PermanentError(TransportError):
    pass


def sign(secret: bytes, body: bytes) -> str:
    """sha256=<hex HMAC-SHA256 of the body under the channel's secret>; the timestamp header
    is sent alongside (receivers may reject old ones)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Transport:
    kind: ClassVar[str]

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def send(self, msg: render.Message) -> None:
        raise NotImplementedError


class HttpTransport(Transport):
    timeout = 10.0

    def post(self, body: bytes, headers: dict[str, str]) -> None:
        result = web.post_https(self.channel.target, body, headers, timeout=self.timeout)
        if result.error.startswith("not sent"):
            raise PermanentError(result.error)
        if result.fault:
            raise PermanentError(result.fault)
        if result.error or result.status is None:
            raise TransientError(result.error or "no response")
        if 200 <= result.status < 300:
            return
        snippet = result.body.strip()[:200]
        text = f"HTTP {result.status}" + (f": {snippet}" if snippet else "")
        if result.status == 429 or result.status >= 500:
            raise TransientError(text)
        raise PermanentError(text)


class Webhook(HttpTransport):
    kind = ChannelKind.WEBHOOK

    def send(self, msg: render.Message) -> None:
        body = render.webhook_body(msg)
        secret = secrets.decrypt(self.channel.secret, context=self.channel.secret_context)
        timestamp = str(int(time.time()))
        self.post(
            body,
            {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, body),
                TIMESTAMP_HEADER: timestamp,
            },
        )


class Slack(HttpTransport):
    kind = ChannelKind.SLACK

    def send(self, msg: render.Message) -> None:
        body = json.dumps(render.slack_payload(msg)).encode()
        self.post(body, {"Content-Type": "application/json"})


class Teams(HttpTransport):
    kind = ChannelKind.TEAMS

    def send(self, msg: render.Message) -> None:
        body = json.dumps(render.teams_payload(msg)).encode()
        self.post(body, {"Content-Type": "application/json"})


class Ntfy(HttpTransport):
    kind = ChannelKind.NTFY

    def send(self, msg: render.Message) -> None:
        headers, body = render.ntfy_request(msg)
        self.post(body, {**headers, "Content-Type": "text/plain; charset=utf-8"})


def mail_connection() -> object:
    """MAILSEC_EMAIL_URL when set, else Django's EMAIL_* settings."""
    if settings.MAILSEC_EMAIL_URL:
        return get_connection(timeout=15, **parse_email_url(settings.MAILSEC_EMAIL_URL))
    return get_connection(timeout=15)


def send_mail(recipients: list[str], subject: str, body: str) -> None:
    email = EmailMessage(
        subject, body, settings.DEFAULT_FROM_EMAIL, recipients,
        connection=mail_connection(),  # type: ignore[arg-type]
    )  # fmt: skip
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(
            f"{address} ({code} {reply.decode('utf-8', 'replace')})"
            for address, (code, reply) in exc.recipients.items()
        )
        raise PermanentError(f"recipient refused: {refused}"[:300]) from None
    except smtplib.SMTPResponseException as exc:
        text = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300]
        if 500 <= exc.smtp_code < 600:
            raise PermanentError(text) from None
        raise TransientError(text) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientError(f"mail server: {exc}"[:300]) from None


class Email(Transport):
    kind = ChannelKind.EMAIL

    def send(self, msg: render.Message) -> None:
        send_mail([self.channel.target], msg.subject, msg.body)


TRANSPORTS: dict[str, type[Transport]] = {
    cls.kind: cls for cls in (Email, Webhook, Slack, Teams, Ntfy)
}


def transport_for(channel: Channel) -> Transport:
    return TRANSPORTS[channel.kind](channel)
