"""Reverse DNS check: every mail server address has a PTR that points back to it (FCrDNS). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dns_records.checks.base import Check, CheckContext
from dns_records.checks.mx import evaluate_mx, mx_lookups
from dns_records.lookups import Lookup, LookupStatus, Net
from dns_records.results import CheckOutcome, Finding, outcome_from_findings
from dns_records.status import CheckStatus

NAME = "rdns"
# Addresses examined, and PTR names followed for each: receivers confirm one name, and RFC 7208
# stops a ptr term at ten; past that a hostile reverse zone only multiplies lookups.
MAX_ADDRESSES = 20
MAX_PTR_NAMES = 10


@dataclass
class ReverseLookups:
    """For each address: its PTR lookup, and the forward lookups of each PTR name."""

    addresses: dict[str, str] = field(default_factory=dict)  # address -> the MX host it serves
    ptr: dict[str, Lookup] = field(default_factory=dict)
    forward: dict[str, list[Lookup]] = field(default_factory=dict)  # PTR name -> [A, AAAA]
    mx_usable: bool = True
    null_mx: bool = False


def evaluate_rdns(lookups: ReverseLookups) -> CheckOutcome:
    if lookups.null_mx:
        return CheckOutcome(NAME, CheckStatus.OK, "Null MX: no mail server to check.", {})
    if not lookups.addresses:
        status = CheckStatus.WARNING if lookups.mx_usable else CheckStatus.ERROR
        return CheckOutcome(
            NAME, status, "No mail server addresses to check: see the MX check.", {}
        )
    findings: list[Finding] = []
    rows = []
    examined = sorted(lookups.addresses.items())[:MAX_ADDRESSES]
    if len(lookups.addresses) > MAX_ADDRESSES:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                f"The MX hosts have {len(lookups.addresses)} addresses: mailsec examined "
                f"{MAX_ADDRESSES}",
            )
        )
    for address, host in examined:
        ptr = lookups.ptr.get(address)
        row: dict[str, Any] = {"address": address, "mx": host, "ptr": [], "confirmed": False}
        rows.append(row)
        if ptr is None or ptr.failed:
            reason = ptr.reason if ptr else "not looked up"
            findings.append(
                Finding(CheckStatus.ERROR, f"Could not look up the PTR of {address}: {reason}")
            )
            continue
        if ptr.status in {LookupStatus.NXDOMAIN, LookupStatus.NODATA}:
            findings.append(
                Finding(
                    CheckStatus.FAIL,
                    f"{address} ({host}) has no PTR record; many receivers reject its mail",
                )
            )
            continue
        names = ptr.records[:MAX_PTR_NAMES]
        row["ptr"] = list(names)
        if len(ptr.records) > MAX_PTR_NAMES:
            row["ptr_not_followed"] = len(ptr.records) - MAX_PTR_NAMES
            findings.append(
                Finding(
                    CheckStatus.WARNING,
                    f"{address} has {len(ptr.records)} PTR names: mailsec followed the first "
                    f"{MAX_PTR_NAMES} (receivers expect one)",
                )
            )
        forward_errors = []
        for name in names:
            forward = lookups.forward.get(name, [])
            if any(address in lk.records for lk in forward if lk.ok):
                row["confirmed"] = True
                row["confirmed_by"] = name
                break
            forward_errors += [lk.reason for lk in forward if lk.failed]
        if not row["confirmed"]:
            if forward_errors:
                findings.append(
                    Finding(
                        CheckStatus.ERROR,
                        f"Could not confirm the PTR of {address}: {forward_errors[0]}",
                    )
                )
            else:
                listed = ", ".join(names)
                findings.append(
                    Finding(
                        CheckStatus.FAIL,
                        f"PTR of {address} is {listed}, which does not resolve back to {address}",
                    )
                )
    ok = f"All {len(rows)} mail server addresses have forward-confirmed reverse DNS"
    return outcome_from_findings(NAME, findings, ok, {"addresses": rows})


def gather(context: CheckContext, net: Net) -> ReverseLookups:
    mx = mx_lookups(context.domain, net.resolver)
    lookups = ReverseLookups(
        addresses=mx.address_owners(),
        mx_usable=evaluate_mx(mx).status is not CheckStatus.ERROR,
        null_mx=mx.is_null(),
    )
    for address in sorted(lookups.addresses)[:MAX_ADDRESSES]:
        ptr = net.resolver.reverse(address)
        lookups.ptr[address] = ptr
        if ptr.ok:
            for name in ptr.records[:MAX_PTR_NAMES]:
                lookups.forward[name] = list(net.resolver.addresses(name))
    return lookups


def verdict(context: CheckContext, lookups: ReverseLookups) -> CheckOutcome:
    return evaluate_rdns(lookups)


CHECK = Check(name=NAME, label="Reverse DNS", order=50, gather=gather, verdict=verdict)
