"""Reads of alerts for a user: only the organisations they belong to."""

from __future__ import annotations

from django.db.models import QuerySet

from alerts.models import AlertRule, AlertState, Channel, Notification
from mailsec.selectors import User, organisations_visible


def channels_visible(user: User) -> QuerySet[Channel]:
    return Channel.objects.filter(organisation__in=organisations_visible(user)).select_related(
        "organisation"
    )


def rules_visible(user: User) -> QuerySet[AlertRule]:
    return (
        AlertRule.objects.filter(organisation__in=organisations_visible(user))
        .select_related("organisation")
        .prefetch_related("channels")
    )


def states_visible(user: User) -> QuerySet[AlertState]:
    return AlertState.objects.filter(organisation__in=organisations_visible(user)).select_related(
        "organisation"
    )


def notifications_of(channel: Channel, limit: int = 20) -> list[Notification]:
    return list(channel.notifications.all()[:limit])
