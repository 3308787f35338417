"""DMARC policy records (RFC 7489): parsing and the verdict. Pure: lookups are made elsewhere."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from dns_records.checks.base import Check, CheckContext
from dns_records.lookups import Lookup, Net
from dns_records.names import organisational_domain
from dns_records.results import CheckOutcome, Finding, outcome_from_findings
from dns_records.spf import first_control_character
from dns_records.status import CheckStatus

NAME = "dmarc"

POLICIES = {"none", "quarantine", "reject"}
KNOWN_TAGS = {
    "v",
    "p",
    "sp",
    "np",
    "pct",
    "rua",
    "ruf",
    "adkim",
    "aspf",
    "fo",
    "rf",
    "ri",
    "psd",
    "t",
}
_TAG = re.compile(r"^[a-z][a-z0-9_]*$", re.IGNORECASE)
_MAILTO = re.compile(
    r"^mailto:(?P<addr>[^!@\s]+@(?P<domain>[^!\s]+))(?:!\d+[kmgt]?)?$", re.IGNORECASE
)


def is_dmarc(text: str) -> bool:
    return re.match(r"^v\s*=\s*DMARC1\s*(;|$)", text) is not None


class DmarcSyntaxError(ValueError):
    """The record cannot be used: receivers ignore it as if there were none."""


@dataclass(frozen=True)
class DmarcRecord:
    text: str
    tags: dict[str, str]
    problems: tuple[str, ...] = ()  # tolerated oddities (unknown tags, bad optional values)

    @property
    def policy(self) -> str:
        return self.tags["p"]

    def effective_policy(self, *, inherited: bool) -> tuple[str, str]:
        """(tag, policy) receivers apply: sp= governs subdomains inheriting the record."""
        if inherited and "sp" in self.tags:
            return "sp", self.tags["sp"].lower()
        return "p", self.policy

    @property
    def pct(self) -> int:
        return int(self.tags.get("pct", "100"))

    def report_addresses(self, tag: str) -> list[tuple[str, str]]:
        """(address, domain) of each mailto: URI of rua or ruf."""
        result = []
        for uri in filter(None, (u.strip() for u in self.tags.get(tag, "").split(","))):
            match = _MAILTO.match(uri)
            if match:
                result.append((match.group("addr"), match.group("domain").lower().rstrip(".")))
        return result


def parse_dmarc(text: str) -> DmarcRecord:
    if not is_dmarc(text):
        raise DmarcSyntaxError("record does not start with v=DMARC1")
    # RFC 7489's grammar allows spaces and tabs between tags, no other control character.
    control = first_control_character(text, allowed="\t")
    if control is not None:
        position, char = control
        raise DmarcSyntaxError(
            f"control character {ascii(char)[1:-1]} at position {position}: RFC 7489 allows "
            "only printable characters, spaces and tabs"
        )
    tags: dict[str, str] = {}
    problems: list[str] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or not _TAG.match(name):
            raise DmarcSyntaxError(f"{part!r} is not a tag=value pair")
        if name in tags:
            raise DmarcSyntaxError(f"tag {name} appears twice")
        if name not in KNOWN_TAGS:
            problems.append(f"unknown tag {name!r} is ignored")
        tags[name] = value
    if "p" not in tags:
        raise DmarcSyntaxError("the required p= tag is missing")
    if tags["p"].lower() not in POLICIES:
        raise DmarcSyntaxError(f"p={tags['p']} is not none, quarantine or reject")
    tags["p"] = tags["p"].lower()
    for key in ("sp", "np"):
        if key in tags and tags[key].lower() not in POLICIES:
            raise DmarcSyntaxError(f"{key}={tags[key]} is not none, quarantine or reject")
    if "pct" in tags and (not tags["pct"].isdigit() or int(tags["pct"]) > 100):
        raise DmarcSyntaxError(f"pct={tags['pct']} is not a whole number from 0 to 100")
    for key in ("adkim", "aspf"):
        if key in tags and tags[key].lower() not in {"r", "s"}:
            raise DmarcSyntaxError(f"{key}={tags[key]} is not r or s")
    if "ri" in tags and not tags["ri"].isdigit():
        problems.append(f"ri={tags['ri']} is not a number of seconds")
    if "fo" in tags and not all(o in {"0", "1", "d", "s"} for o in tags["fo"].split(":")):
        problems.append(f"fo={tags['fo']} has options other than 0, 1, d, s")
    for key in ("rua", "ruf"):
        for uri in filter(None, (u.strip() for u in tags.get(key, "").split(","))):
            if not _MAILTO.match(uri):
                raise DmarcSyntaxError(f"{key} URI {uri!r} is not a mailto: address")
    return DmarcRecord(text=text, tags=tags, problems=tuple(problems))


@dataclass
class DmarcLookups:
    """What the dmarc check looked up: the policy record and each external report authorisation.

    `fallback` is the organisational domain's record, looked up when the domain has none.
    """

    domain: str
    record_name: str
    txt: Lookup
    fallback_name: str | None = None
    fallback: Lookup | None = None
    authorisations: dict[str, Lookup] = field(default_factory=dict)  # by report domain


# External report domains whose authorisation is looked up: RFC 7489 (6.2) lets receivers limit
# the URIs they report to (they must take two); a record listing hundreds costs one lookup each.
MAX_REPORT_DOMAINS = 10


def external_report_domains(domain: str, record: DmarcRecord) -> list[str]:
    """Report domains outside the policy's organisational domain: each must authorise it."""
    own = organisational_domain(domain)
    found = []
    for tag in ("rua", "ruf"):
        for _addr, report_domain in record.report_addresses(tag):
            if organisational_domain(report_domain) != own and report_domain not in found:
                found.append(report_domain)
    return found


def authorisation_name(domain: str, report_domain: str) -> str:
    return f"{domain}._report._dmarc.{report_domain}"


def evaluate_dmarc(lookups: DmarcLookups) -> CheckOutcome:
    txt, name = lookups.txt, lookups.record_name
    if lookups.fallback is not None and not [r for r in txt.records if is_dmarc(r)]:
        txt, name = lookups.fallback, lookups.fallback_name or name
    details: dict[str, Any] = {"record_name": name}
    if lookups.txt.failed or (lookups.fallback is not None and lookups.fallback.failed):
        failed = lookups.txt if lookups.txt.failed else lookups.fallback
        assert failed is not None
        return CheckOutcome(
            NAME,
            CheckStatus.ERROR,
            f"Could not look up the DMARC record: {failed.reason}",
            details,
        )
    records = [r for r in txt.records if is_dmarc(r)] if txt.ok else []
    if not records:
        return CheckOutcome(
            NAME,
            CheckStatus.FAIL,
            f"No DMARC record at _dmarc.{lookups.domain}: receivers apply no policy.",
            details,
        )
    if len(records) > 1:
        details["record"] = records
        return CheckOutcome(
            NAME,
            CheckStatus.FAIL,
            f"{len(records)} DMARC records at {name}: receivers ignore them all.",
            details,
        )
    details["record"] = records[0]
    try:
        record = parse_dmarc(records[0])
    except DmarcSyntaxError as exc:
        return CheckOutcome(NAME, CheckStatus.FAIL, f"DMARC record is invalid: {exc}", details)
    details["tags"] = record.tags
    inherited = name != lookups.record_name
    details["inherited_from"] = name if inherited else None
    # RFC 7489 7.1: the authorisation is asked for by the domain whose record it is.
    policy_domain = name.removeprefix("_dmarc.")
    tag, policy = record.effective_policy(inherited=inherited)
    details["policy"] = policy
    findings = [Finding(CheckStatus.WARNING, p) for p in record.problems]
    if policy == "none":
        findings.append(
            Finding(
                CheckStatus.WARNING, f"{tag}=none only monitors: spoofed mail is still delivered"
            )
        )
    if record.pct < 100:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                f"pct={record.pct}: the policy applies to only {record.pct}% of failing mail",
            )
        )
    if not record.tags.get("rua"):
        findings.append(
            Finding(CheckStatus.WARNING, "No rua= address: you receive no aggregate reports")
        )
    authorisations = []
    external = external_report_domains(policy_domain, record)
    if len(external) > MAX_REPORT_DOMAINS:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                f"Reports go to {len(external)} other domains: mailsec checked the first "
                f"{MAX_REPORT_DOMAINS}, and receivers may send to only two",
            )
        )
    for report_domain in external[:MAX_REPORT_DOMAINS]:
        lookup = lookups.authorisations.get(report_domain)
        auth_name = authorisation_name(policy_domain, report_domain)
        if lookup is None or lookup.failed:
            reason = lookup.reason if lookup else "not looked up"
            findings.append(
                Finding(
                    CheckStatus.ERROR,
                    f"Could not check that {report_domain} accepts reports: {reason}",
                )
            )
            state = "error"
        elif any(is_dmarc(r) for r in lookup.records):
            state = "authorised"
        else:
            findings.append(
                Finding(
                    CheckStatus.WARNING,
                    f"{report_domain} has not authorised reports for {policy_domain} ({auth_name})",
                )
            )
            state = "missing"
        authorisations.append({"domain": report_domain, "record_name": auth_name, "state": state})
    details["external_reports"] = authorisations
    pct = f", pct={record.pct}" if record.pct != 100 else ""
    source = f" (from {name})" if inherited else ""
    return outcome_from_findings(
        NAME,
        findings,
        f"DMARC {tag}={policy}{pct}{source} with aggregate reports",
        details,
    )


def suggest_dmarc(
    domain: str,
    current: DmarcRecord | None,
    report_address: str,
    *,
    inherited: bool = False,
    unauthorised: Collection[str] = (),
) -> str:
    """A record to publish: enforcing policy, full coverage, reports to mailsec's ingest address.

    For a subdomain that inherits its organisation's record, the suggestion is a record of its
    own, where p= governs: the parent's sp= and np= do not carry over. Report addresses at the
    `unauthorised` domains are left out: receivers send those domains no reports anyway.
    """
    tags = dict(current.tags) if current else {}
    if inherited:
        tags.pop("sp", None)
        tags.pop("np", None)
    tags["v"] = "DMARC1"
    if tags.get("p") in {None, "none"}:
        tags["p"] = "quarantine"
    tags.pop("pct", None)
    for key in ("rua", "ruf"):
        kept = [u for u in _uris(tags.get(key, "")) if _uri_domain(u) not in unauthorised]
        if key == "rua" and f"mailto:{report_address}" not in kept:
            kept.append(f"mailto:{report_address}")
        if kept:
            tags[key] = ",".join(kept)
        else:
            tags.pop(key, None)
    order = ["v", "p", *[k for k in tags if k not in {"v", "p"}]]
    return "; ".join(f"{key}={tags[key]}" for key in order)


def _uris(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


def _uri_domain(uri: str) -> str | None:
    match = _MAILTO.match(uri)
    return match.group("domain").lower().rstrip(".") if match else None


def unauthorised_report_domains(lookups: DmarcLookups, record: DmarcRecord | None) -> list[str]:
    """External report domains that would get no reports from the record a suggestion publishes.

    A domain's own record needs each external report domain's authorisation of that domain
    (RFC 7489 7.1): an inheriting subdomain's parent was authorised, the subdomain was not.
    """
    if record is None:
        return []
    if lookups.fallback is not None:
        return external_report_domains(lookups.domain, record)
    return [
        report_domain
        for report_domain, lookup in lookups.authorisations.items()
        if not lookup.failed and not any(is_dmarc(r) for r in lookup.records)
    ]


def _chosen(lookups: DmarcLookups) -> Lookup:
    return lookups.fallback if lookups.fallback is not None else lookups.txt


def _one_record(lookups: DmarcLookups) -> DmarcRecord | None:
    chosen = _chosen(lookups)
    records = [r for r in chosen.records if is_dmarc(r)] if chosen.ok else []
    if len(records) != 1:
        return None
    try:
        return parse_dmarc(records[0])
    except DmarcSyntaxError:
        return None


def gather(context: CheckContext, net: Net) -> DmarcLookups:
    domain = context.domain
    name = f"_dmarc.{domain}"
    lookups = DmarcLookups(domain, name, net.resolver.lookup(name, "TXT"))
    has_record = lookups.txt.ok and any(is_dmarc(r) for r in lookups.txt.records)
    organisational = organisational_domain(domain)
    if not has_record and not lookups.txt.failed and organisational != domain:
        lookups.fallback_name = f"_dmarc.{organisational}"
        lookups.fallback = net.resolver.lookup(lookups.fallback_name, "TXT")
    parsed = _one_record(lookups)
    if parsed is not None:
        policy_domain = organisational if lookups.fallback is not None else domain
        for report_domain in external_report_domains(policy_domain, parsed)[:MAX_REPORT_DOMAINS]:
            lookups.authorisations[report_domain] = net.resolver.lookup(
                authorisation_name(policy_domain, report_domain), "TXT"
            )
    return lookups


def verdict(context: CheckContext, lookups: DmarcLookups) -> CheckOutcome:
    outcome = evaluate_dmarc(lookups)
    if outcome.status not in {CheckStatus.FAIL, CheckStatus.WARNING}:
        return outcome
    record = _one_record(lookups)
    unauthorised = unauthorised_report_domains(lookups, record)
    suggestion = {
        "name": lookups.record_name, "type": "TXT",
        "value": suggest_dmarc(
            context.domain, record, context.report_address,
            inherited=lookups.fallback is not None, unauthorised=unauthorised,
        ),
    }  # fmt: skip
    if unauthorised:
        suggestion["note"] = " ".join(
            f"Leaves out the report addresses at {report_domain}: receivers send it reports "
            f"about {context.domain} only once it publishes "
            f'{authorisation_name(context.domain, report_domain)} TXT "v=DMARC1"; add them back '
            "then."
            for report_domain in unauthorised
        )
    outcome.details["suggested_record"] = suggestion
    return outcome


CHECK = Check(name=NAME, label="DMARC", order=30, gather=gather, verdict=verdict)
