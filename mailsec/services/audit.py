"""The audit log: every change made through a service leaves one record, in its transaction."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from mailsec.models import AuditLog, Organisation

Actor = User | AnonymousUser | None


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Any,
    organisation: Organisation | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    user = actor if isinstance(actor, User) else None
    return AuditLog.objects.create(
        organisation=organisation,
        actor=user,
        actor_name=user.get_username() if user else "system",
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=str(getattr(obj, "pk", "") or ""),
        object_repr=str(obj)[:255],
        before=before,
        after=after,
    )
