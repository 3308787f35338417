"""The blocklists mailsec knows: what each one's answers mean, which are its own error replies,
where to ask for removal, and how Spamhaus' Data Query Service names its zones. Pure.

A zone not described here is still polled, with the conventions of RFC 5782: any answer in
127.0.0.0/8 is a listing, except 127.0.0.1 (RFC 5782 forbids it as a listing; URIBL and SURBL
use it for "query refused") and 127.255.255.0/24 (the error range Spamhaus made common).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ZoneKind(StrEnum):
    """What a zone lists: IP addresses (DNSBL) or domain names (RHSBL / URI blocklist)."""

    IP = "ip"
    DOMAIN = "domain"


# The answers every list of unknown conventions gets read with.
GENERIC_ERRORS: Mapping[str, str] = {
    "127.0.0.1": "the list refused the query (127.0.0.1 is never a listing, RFC 5782)",
}
GENERIC_ERROR_PREFIX = "127.255.255."

_SPAMHAUS_ERRORS: Mapping[str, str] = {
    "127.255.255.252": "Spamhaus: typing error in the blocklist name",
    "127.255.255.254": (
        "Spamhaus refuses queries through public or open resolvers: point "
        "MAILSEC_DNS_NAMESERVERS at your own recursive resolver, or set a DQS key"
    ),
    "127.255.255.255": "Spamhaus: excessive number of queries (a free-use limit was exceeded)",
}


@dataclass(frozen=True)
class ZoneInfo:
    """One blocklist: its return codes and their meaning, its own error answers, its removal page.

    `codes` maps an exact answer to its meaning; `bits` maps bits of the last octet (SURBL and
    URIBL combine several lists in one answer) to theirs. `errors` are answers that mean "this
    query was not answered" (never a listing). `delist_url` may hold `{target}`. `dqs_zone` is
    the zone queried instead when the organisation has a Spamhaus DQS key: the query name is
    `<reversed or domain>.<key>.<dqs_zone>`.
    """

    name: str
    kind: ZoneKind
    label: str = ""
    codes: Mapping[str, str] = field(default_factory=dict)
    bits: Mapping[int, str] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=lambda: dict(GENERIC_ERRORS))
    delist_url: str = ""
    dqs_zone: str = ""
    ipv6: bool = True
    note: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name

    def error_meaning(self, answer: str) -> str | None:
        """Why `answer` is this list's own error reply, or None when it is not one."""
        if answer in self.errors:
            return self.errors[answer]
        if answer.startswith(GENERIC_ERROR_PREFIX):
            return f"the list answered {answer}, an error code, not a listing"
        return None

    def meaning(self, answer: str) -> str:
        """What a listing answer means on this list ("" when the list does not say)."""
        if answer in self.codes:
            return self.codes[answer]
        if self.bits:
            last = int(answer.rsplit(".", 1)[-1])
            found = [text for bit, text in sorted(self.bits.items()) if last & bit]
            return ", ".join(found)
        return ""

    def delisting(self, target: str) -> str:
        return self.delist_url.replace("{target}", target) if self.delist_url else ""


_SPAMHAUS_DELIST = "https://check.spamhaus.org/results/?query={target}"

KNOWN_ZONES: tuple[ZoneInfo, ...] = (
    ZoneInfo(
        "zen.spamhaus.org",
        ZoneKind.IP,
        "Spamhaus ZEN",
        codes={
            "127.0.0.2": "SBL: Spamhaus Blocklist (spam source or operation)",
            "127.0.0.3": "CSS: snowshoe spam or low-reputation sender (SBL CSS)",
            "127.0.0.4": "XBL: exploited or infected host (CBL)",
            "127.0.0.5": "XBL: exploited or infected host",
            "127.0.0.6": "XBL: exploited or infected host",
            "127.0.0.7": "XBL: exploited or infected host",
            "127.0.0.9": "DROP: hijacked or criminal network",
            "127.0.0.10": "PBL: end-user address range (ISP-maintained); should not send mail directly",
            "127.0.0.11": "PBL: end-user address range (Spamhaus-maintained); should not send mail directly",
        },
        errors=_SPAMHAUS_ERRORS,
        delist_url=_SPAMHAUS_DELIST,
        dqs_zone="zen.dq.spamhaus.net",
        note="Free for low-volume, non-commercial use through your own resolver; otherwise a DQS key.",
    ),
    ZoneInfo(
        "b.barracudacentral.org",
        ZoneKind.IP,
        "Barracuda Reputation Block List",
        codes={"127.0.0.2": "listed: poor sending reputation"},
        delist_url="https://www.barracudacentral.org/rbl/removal-request",
        ipv6=False,
        note="Answers only resolvers whose address is registered (free) at barracudacentral.org.",
    ),
    ZoneInfo(
        "bl.spamcop.net",
        ZoneKind.IP,
        "SpamCop",
        codes={"127.0.0.2": "listed: reported as a spam source by SpamCop users"},
        delist_url="https://www.spamcop.net/bl.shtml?{target}",
        ipv6=False,
        note="Listings expire by themselves 24 hours after the reports stop.",
    ),
    ZoneInfo(
        "psbl.surriel.com",
        ZoneKind.IP,
        "Passive Spam Block List",
        codes={"127.0.0.2": "listed: sent mail to PSBL spam traps"},
        delist_url="https://psbl.org/listing?ip={target}",
        ipv6=False,
    ),
    ZoneInfo(
        "bl.mailspike.net",
        ZoneKind.IP,
        "Mailspike",
        codes={
            "127.0.0.2": "listed: Mailspike blacklist (spam source)",
            "127.0.0.10": "worst possible reputation",
            "127.0.0.11": "very bad reputation",
            "127.0.0.12": "bad reputation",
        },
        delist_url="https://mailspike.org/iplookup.html",
        ipv6=False,
    ),
    ZoneInfo(
        "ix.dnsbl.manitu.net",
        ZoneKind.IP,
        "NiX Spam",
        codes={"127.0.0.2": "listed: sent mail to NiX Spam traps"},
        delist_url="https://www.nixspam.net/",
        ipv6=False,
    ),
    ZoneInfo(
        "dbl.spamhaus.org",
        ZoneKind.DOMAIN,
        "Spamhaus DBL",
        codes={
            "127.0.1.2": "spam domain",
            "127.0.1.4": "phishing domain",
            "127.0.1.5": "malware domain",
            "127.0.1.6": "botnet command and control domain",
            "127.0.1.102": "abused legitimate domain: spam",
            "127.0.1.103": "abused legitimate domain: spammed redirector or URL shortener",
            "127.0.1.104": "abused legitimate domain: phishing",
            "127.0.1.105": "abused legitimate domain: malware",
            "127.0.1.106": "abused legitimate domain: botnet command and control",
        },
        errors={
            **_SPAMHAUS_ERRORS,
            "127.0.1.255": "Spamhaus DBL: IP addresses are not queried on the DBL",
        },
        delist_url=_SPAMHAUS_DELIST,
        dqs_zone="dbl.dq.spamhaus.net",
    ),
    ZoneInfo(
        "multi.surbl.org",
        ZoneKind.DOMAIN,
        "SURBL multi",
        bits={
            8: "PH: phishing",
            16: "MW: malware",
            64: "ABUSE: spam and abuse",
            128: "CR: cracked site",
        },
        errors={
            "127.0.0.1": "SURBL refused the query (access blocked: too many queries or a public resolver)"
        },
        delist_url="https://surbl.org/surbl-analysis",
    ),
    ZoneInfo(
        "multi.uribl.com",
        ZoneKind.DOMAIN,
        "URIBL multi",
        bits={2: "black", 4: "grey", 8: "red"},
        errors={"127.0.0.1": "URIBL refused the query (too many queries, or a public resolver)"},
        delist_url="https://admin.uribl.com/?section=lookup",
    ),
)
_KNOWN = {zone.name: zone for zone in KNOWN_ZONES}

DEFAULT_IP_ZONES: tuple[str, ...] = tuple(z.name for z in KNOWN_ZONES if z.kind is ZoneKind.IP)
DEFAULT_DOMAIN_ZONES: tuple[str, ...] = tuple(
    z.name for z in KNOWN_ZONES if z.kind is ZoneKind.DOMAIN
)

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class InvalidZone(ValueError):
    """Not a zone name mailsec can query under."""


def normalise_zone(text: str) -> str:
    """A zone name in lower case without the final dot; raises InvalidZone."""
    name = text.strip().lower().rstrip(".")
    if not name or len(name) > 200:
        raise InvalidZone(f"{text!r} is not a blocklist zone name (1 to 200 characters).")
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidZone(
            f"{text!r} is not a blocklist zone name: letters, digits and hyphens in at least "
            "two dot-separated labels, e.g. zen.spamhaus.org."
        )
    return name


def zone_info(name: str, kind: ZoneKind) -> ZoneInfo:
    """What mailsec knows of the zone, or the RFC 5782 conventions for one it does not know."""
    known = _KNOWN.get(name)
    if known is not None and known.kind is kind:
        return known
    return ZoneInfo(name, kind)


def is_known(name: str) -> bool:
    return name in _KNOWN


def default_zones(
    ip_zones: Iterable[str] = DEFAULT_IP_ZONES, domain_zones: Iterable[str] = DEFAULT_DOMAIN_ZONES
) -> list[ZoneInfo]:
    """The zones a new organisation polls: the given names (settings replace the defaults)."""
    zones = [zone_info(normalise_zone(n), ZoneKind.IP) for n in ip_zones]
    zones += [zone_info(normalise_zone(n), ZoneKind.DOMAIN) for n in domain_zones]
    return list({(z.name, z.kind): z for z in zones}.values())
