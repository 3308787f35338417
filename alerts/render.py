"""Messages: the subject and text of one run's grouped changes, and each transport's payload.

Pure: the caller gives what it read (an organisation name, the changes, a link), and gets text
and JSON-ready structures back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.policy import FLAPPING, PROBLEM, RECOVERY, Change

MAX_LINES = 50
WORD = {PROBLEM: "now", RECOVERY: "recovered:", FLAPPING: "flapping, now"}
PRIORITY = {"fail": "high", "error": "default", "warning": "default", "ok": "low"}


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    changes: tuple[Change, ...]
    organisation: str
    link: str = ""

    @property
    def worst(self) -> str:
        statuses = [c.status for c in self.changes if c.kind != RECOVERY]
        for status in ("fail", "error", "warning"):
            if status in statuses:
                return status
        return "ok"


def one_line(text: str) -> str:
    """Text for a header (a subject, an ntfy title): controls and line breaks become spaces, so
    a name or summary someone typed cannot add a header or break one."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def line(change: Change) -> str:
    text = f"{change.key}: {WORD[change.kind]} {change.status.upper()}"
    if change.kind != RECOVERY and change.previous:
        text += f" (was {change.previous})"
    if change.summary:
        text += f" - {change.summary}"
    return text


def message(organisation: str, changes: Sequence[Change], link: str = "") -> Message:
    problems = [c for c in changes if c.kind != RECOVERY]
    recoveries = [c for c in changes if c.kind == RECOVERY]
    parts = []
    if problems:
        parts.append(f"{len(problems)} problem" + ("s" if len(problems) != 1 else ""))
    if recoveries:
        parts.append(f"{len(recoveries)} recovered")
    if len(changes) == 1:
        only = changes[0]
        subject = f"[mailsec] {organisation}: {only.key} {WORD[only.kind]} {only.status.upper()}"
    else:
        subject = f"[mailsec] {organisation}: {', '.join(parts)}"
    lines = [line(c) for c in changes[:MAX_LINES]]
    if len(changes) > MAX_LINES:
        lines.append(f"... and {len(changes) - MAX_LINES} more")
    body = f"Changes in {organisation}:\n\n" + "\n".join(f"- {text}" for text in lines) + "\n"
    if link:
        body += f"\nDetails: {link}\n"
    return Message(one_line(subject)[:300], body, tuple(changes), organisation, link)


def test_message(organisation: str, channel: str) -> Message:
    return Message(
        one_line(f"[mailsec] {organisation}: test message"),
        f"This is a test of the alert channel {channel!r} of {organisation}.\n",
        (),
        organisation,
    )


def webhook_payload(msg: Message) -> dict[str, object]:
    return {
        "organisation": msg.organisation,
        "subject": msg.subject,
        "text": msg.body,
        "worst": msg.worst,
        "link": msg.link,
        "changes": [
            {"key": c.key, "kind": c.kind, "status": c.status, "previous": c.previous,
             "summary": c.summary}
            for c in msg.changes
        ],
    }  # fmt: skip


def webhook_body(msg: Message) -> bytes:
    return json.dumps(webhook_payload(msg), sort_keys=True, separators=(",", ":")).encode()


def slack_payload(msg: Message) -> dict[str, object]:
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": msg.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape_slack(msg.body)[:3000]}},
    ]
    return {"text": msg.subject, "blocks": blocks}


def _escape_slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_payload(msg: Message) -> dict[str, object]:
    """A Teams workflow ("When a Teams webhook request is received") takes Adaptive Cards."""
    body: list[dict[str, object]] = [
        {"type": "TextBlock", "text": msg.subject, "weight": "Bolder", "wrap": True},
        *({"type": "TextBlock", "text": line(c), "wrap": True} for c in msg.changes[:MAX_LINES]),
    ]
    if not msg.changes:
        body.append({"type": "TextBlock", "text": msg.body, "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def ntfy_request(msg: Message) -> tuple[dict[str, str], bytes]:
    """ntfy takes the body as the message and the title and priority as headers."""
    title = one_line(msg.subject).encode("ascii", "replace").decode("ascii")
    headers = {"Title": title, "Priority": PRIORITY[msg.worst], "Tags": f"mailsec,{msg.worst}"}
    if msg.link:
        headers["Click"] = msg.link
    return headers, msg.body.encode("utf-8")
