"""MTA-STS check (RFC 8461): the record, the policy host, and the policy fetched over HTTPS. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dns_records.checks.base import Check, CheckContext
from dns_records.checks.mx import mx_lookups
from dns_records.lookups import Fetch, Lookup, Net, host_addresses
from dns_records.results import CheckOutcome
from dns_records.status import CheckStatus
from dns_records.txt_policy import one_policy_record

NAME = "mta_sts"
_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
POLICY_FETCH_TIMEOUT = 10.0


MODES = {"enforce", "testing", "none"}
MAX_AGE_LIMIT = 31557600  # RFC 8461 3.2: at most a year
SHORT_MAX_AGE = 86400


class MtaStsPolicyError(ValueError):
    """The policy file breaks RFC 8461 3.2: senders treat the domain as having no policy."""


@dataclass(frozen=True)
class MtaStsPolicy:
    mode: str
    mx: tuple[str, ...]
    max_age: int


def parse_policy(text: str) -> MtaStsPolicy:
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise MtaStsPolicyError(f"line {line.strip()!r} is not key: value")
        fields.setdefault(key.strip(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise MtaStsPolicyError("the policy must start with version: STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in MODES:
        raise MtaStsPolicyError(f"mode {mode!r} is not enforce, testing or none")
    max_age_text = (fields.get("max_age") or [""])[0]
    if not max_age_text.isdigit() or int(max_age_text) > MAX_AGE_LIMIT:
        raise MtaStsPolicyError(f"max_age {max_age_text!r} is not 0 to {MAX_AGE_LIMIT} seconds")
    mx = tuple(p.lower().rstrip(".") for p in fields.get("mx", []))
    if mode != "none" and not mx:
        raise MtaStsPolicyError("an enforce or testing policy must list mx: patterns")
    return MtaStsPolicy(mode, mx, int(max_age_text))


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: `*.example.net` matches exactly one extra leftmost label."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return host == pattern


def evaluate_mta_sts(
    domain: str,
    txt: Lookup,
    policy_host: list[Lookup],
    record: str,
    *,
    policy: Fetch | None = None,
    mx_hosts: list[str] | None = None,
) -> CheckOutcome:
    """The verdict on the domain's MTA-STS record and policy; `record` is the one to publish.

    Without a record, `record` is offered to paste only when the policy it would announce is
    served and usable: published before that, it turns a missing record into a broken one.
    """
    url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    problem = _policy_problem(policy, mx_hosts or [])
    if problem is None:
        hint = f"The policy at {url} is served: publish this record to announce it."
    else:
        hint = (
            f"First serve the policy at {url} (start with mode: testing and one mx: line per "
            f'MX host), then publish the TXT record _mta-sts.{domain} "{record}". '
            "mailsec offers the record to paste once the policy is served."
        )
        if policy is not None:
            hint = f"{problem} {hint}"
    found = one_policy_record(
        NAME, txt, record_name=f"_mta-sts.{domain}", version="v=STSv1",
        label="MTA-STS", suggestion=record if problem is None else None, hint=hint,
        absent=(CheckStatus.WARNING, "No MTA-STS record: senders may deliver without TLS when an attacker strips STARTTLS."),
    )  # fmt: skip
    if isinstance(found, CheckOutcome):
        return found
    details = found.details

    def outcome(status: CheckStatus, summary: str) -> CheckOutcome:
        return CheckOutcome(NAME, status, summary, details)

    if found.tags.get("v") != "STSv1" or not _STS_ID.match(found.tags.get("id", "")):
        return outcome(
            CheckStatus.FAIL, "MTA-STS record needs v=STSv1 and an id of 1 to 32 letters or digits."
        )
    host = f"mta-sts.{domain}"
    details["policy_url"] = f"https://{host}/.well-known/mta-sts.txt"
    if any(lk.failed for lk in policy_host) and not any(lk.ok for lk in policy_host):
        return outcome(CheckStatus.ERROR, f"Could not resolve {host}: {policy_host[0].reason}")
    if not any(lk.ok for lk in policy_host):
        return outcome(CheckStatus.FAIL, f"{host}, which must serve the policy, has no address.")
    if policy is None:
        return outcome(
            CheckStatus.OK, f"MTA-STS record id={found.tags['id']}; policy host {host} resolves."
        )
    return _judge_policy(policy, mx_hosts or [], found.tags["id"], details)


def _policy_problem(policy: Fetch | None, mx_hosts: list[str]) -> str | None:
    """Why senders could not use the policy a new record would announce; None when they can."""
    if policy is None:
        return "The policy host has no address."
    judged = _judge_policy(policy, mx_hosts, "new", {})
    return None if judged.status in {CheckStatus.OK, CheckStatus.WARNING} else judged.summary


def _judge_policy(
    policy: Fetch, mx_hosts: list[str], policy_id: str, details: dict[str, Any]
) -> CheckOutcome:
    def outcome(status: CheckStatus, summary: str) -> CheckOutcome:
        return CheckOutcome(NAME, status, summary, details)

    if policy.error:
        return outcome(CheckStatus.ERROR, f"Could not fetch the MTA-STS policy: {policy.error}")
    if policy.fault:
        return outcome(CheckStatus.FAIL, f"The MTA-STS policy cannot be used: {policy.fault}")
    if policy.status != 200:
        return outcome(
            CheckStatus.FAIL, f"{policy.url} answered HTTP {policy.status}, not the policy."
        )
    details["policy"] = policy.body[:2000]
    if not policy.content_type.lower().startswith("text/plain"):
        return outcome(
            CheckStatus.FAIL,
            f"The policy is served as {policy.content_type or 'no type'}; senders need text/plain.",
        )
    try:
        parsed = parse_policy(policy.body)
    except MtaStsPolicyError as exc:
        return outcome(CheckStatus.FAIL, f"The MTA-STS policy is invalid: {exc}")
    details.update(mode=parsed.mode, mx_patterns=list(parsed.mx), max_age=parsed.max_age)
    unmatched = [h for h in mx_hosts if not any(mx_matches(p, h) for p in parsed.mx)]
    if parsed.mode != "none" and unmatched:
        effect = "refuse to deliver to" if parsed.mode == "enforce" else "report failures for"
        return outcome(
            CheckStatus.FAIL,
            f"MX {', '.join(unmatched)} not in the policy's mx: senders {effect} it.",
        )
    if parsed.mode == "testing":
        return outcome(
            CheckStatus.WARNING,
            "MTA-STS in testing mode: failures are reported, TLS is not enforced.",
        )
    if parsed.mode == "none":
        return outcome(
            CheckStatus.WARNING,
            "MTA-STS mode none: the policy is being withdrawn, nothing is enforced.",
        )
    if parsed.max_age < SHORT_MAX_AGE:
        return outcome(
            CheckStatus.WARNING,
            f"max_age {parsed.max_age}s is under a day: senders re-fetch constantly and forget quickly.",
        )
    return outcome(
        CheckStatus.OK, f"MTA-STS enforced (id={policy_id}); every MX is covered by the policy."
    )


@dataclass(frozen=True)
class MtaStsLookups:
    txt: Lookup
    host_lookups: list[Lookup]
    policy: Fetch | None
    mx_hosts: list[str]


def gather(context: CheckContext, net: Net) -> MtaStsLookups:
    domain = context.domain
    txt = net.resolver.lookup(f"_mta-sts.{domain}", "TXT")
    host = f"mta-sts.{domain}"
    host_lookups = list(net.resolver.addresses(host))
    policy = None
    addresses = host_addresses(host_lookups)
    # Fetched without a record too: the verdict offers the record only once the policy is served.
    if addresses and not txt.failed:
        policy = net.fetch_https(
            host, "/.well-known/mta-sts.txt", addresses, timeout=POLICY_FETCH_TIMEOUT
        )
    mx_hosts = mx_lookups(domain, net.resolver).hosts()
    return MtaStsLookups(txt, host_lookups, policy, mx_hosts)


def verdict(context: CheckContext, found: MtaStsLookups) -> CheckOutcome:
    return evaluate_mta_sts(
        context.domain, found.txt, found.host_lookups, f"v=STSv1; id={context.stamp}",
        policy=found.policy, mx_hosts=found.mx_hosts,
    )  # fmt: skip


CHECK = Check(name=NAME, label="MTA-STS", order=60, gather=gather, verdict=verdict)
