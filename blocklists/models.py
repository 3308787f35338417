"""Blocklist zones, polled targets and their listings, and the local IP blacklist."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from blocklists.verdict import ListingStatus
from blocklists.zones import ZoneKind
from dns_records.models import Domain
from mailsec.models import Organisation

KIND_CHOICES = [(ZoneKind.IP.value, "IP addresses"), (ZoneKind.DOMAIN.value, "Domain names")]
LISTING_CHOICES = [(s.value, s.value) for s in ListingStatus]


class BlocklistSettings(models.Model):
    """An organisation's blocklist settings: its Spamhaus DQS key (encrypted) and whether its zone
    list has been seeded from the defaults."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.OneToOneField(
        Organisation, on_delete=models.CASCADE, related_name="blocklist_settings"
    )
    dqs_key = models.TextField(blank=True, help_text="Encrypted (mailsec.secrets)")
    zones_seeded = models.BooleanField(default=False)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Beat's "which organisations are due a poll?" scan.
            models.Index(fields=["next_poll_at"], name="blsettings_next_poll"),
        ]

    def __str__(self) -> str:
        return f"blocklist settings of {self.organisation}"

    @property
    def secret_context(self) -> str:
        return f"blocklists.BlocklistSettings:{self.uid}:dqs_key"


class BlocklistZone(models.Model):
    """A blocklist an organisation polls its addresses (ip) or domains (domain) against."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="blocklist_zones"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=6, choices=KIND_CHOICES)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            # A zone once per organisation; also serves "the zones of this organisation".
            models.UniqueConstraint(
                fields=["organisation", "name", "kind"], name="blzone_unique_org_name_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class BlocklistTarget(models.Model):
    """An address or domain of an organisation that is polled, and where it came from."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="blocklist_targets"
    )
    kind = models.CharField(max_length=6, choices=KIND_CHOICES)
    value = models.CharField(max_length=253, help_text="An IP address, or a domain name")
    sources: models.JSONField[list[str]] = models.JSONField(
        default=list, help_text="Where it came from, e.g. 'MX mx1.example.org of example.org'"
    )
    domains = models.ManyToManyField(Domain, blank=True, related_name="blocklist_targets")
    active = models.BooleanField(
        default=True, help_text="False once no source names it any more (history is kept)"
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "value"]
        constraints = [
            # One row per address or domain of an organisation; serves the poll's upsert.
            models.UniqueConstraint(
                fields=["organisation", "kind", "value"], name="bltarget_unique_org_kind_value"
            ),
        ]

    def __str__(self) -> str:
        return self.value


class Listing(models.Model):
    """The current state of one target on one zone: what pages and the API read.

    An error never replaces a known state: `status` stays listed or clean, `stale` is set and
    `error` says why. `status` is error only while nothing was ever known.
    """

    target = models.ForeignKey(BlocklistTarget, on_delete=models.CASCADE, related_name="listings")
    zone = models.CharField(max_length=200)
    status = models.CharField(max_length=6, choices=LISTING_CHOICES)
    code = models.CharField(max_length=200, blank=True, help_text="The answers, when listed")
    meaning = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=500, blank=True, help_text="The list's TXT text")
    stale = models.BooleanField(default=False, help_text="The latest poll failed")
    error = models.CharField(max_length=500, blank=True, help_text="Why the latest poll failed")
    checked_at = models.DateTimeField(help_text="The latest poll, answered or not")
    known_at = models.DateTimeField(null=True, blank=True, help_text="The latest definite answer")
    changed_at = models.DateTimeField(help_text="When the status last changed")

    class Meta:
        ordering = ["target", "zone"]
        constraints = [
            # One current row per target and zone; also serves "the listings of this target".
            models.UniqueConstraint(fields=["target", "zone"], name="listing_unique_target_zone"),
        ]
        indexes = [
            # "Which targets are listed?" for the domain list and the overview.
            models.Index(fields=["status", "target"], name="listing_status_target"),
        ]

    def __str__(self) -> str:
        return f"{self.target} on {self.zone}: {self.status}"


class ListingEvent(models.Model):
    """A target became listed on a zone, or stopped being listed: the history, and what the
    alerts notify on."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="listing_events"
    )
    target = models.ForeignKey(BlocklistTarget, on_delete=models.CASCADE, related_name="events")
    zone = models.CharField(max_length=200)
    previous_status = models.CharField(max_length=6, choices=LISTING_CHOICES, blank=True)
    status = models.CharField(max_length=6, choices=LISTING_CHOICES)
    code = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # An organisation's history newest first (the page, and the alerts' scan).
            models.Index(fields=["organisation", "-created_at"], name="listingevent_org_created"),
            # One target's history.
            models.Index(fields=["target", "-created_at"], name="listingevent_target_created"),
        ]

    def __str__(self) -> str:
        return f"{self.target} on {self.zone}: {self.previous_status or 'new'} -> {self.status}"


class BlacklistEntry(models.Model):
    """A network the organisation's mail servers refuse (control 2): rendered as a Postfix
    `cidr:` map; an entry past `expires_at` drops out on its own."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="blacklist_entries"
    )
    network = models.CharField(max_length=49, help_text="An address or network, v4 or v6")
    reason = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["network"]
        constraints = [
            # A network once per organisation; also serves "the entries of this organisation".
            models.UniqueConstraint(
                fields=["organisation", "network"], name="blentry_unique_org_network"
            ),
        ]
        indexes = [
            # Expired entries, for the map and their removal.
            models.Index(fields=["expires_at"], name="blentry_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.network} ({self.reason or 'no reason'})"
