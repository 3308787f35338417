"""SPF check: the domain's one record, every record it includes, and who it lets send. Pure.

`gather` fetches the record tree through the resolver (capped at MAX_SPF_NODES records) and
evaluates the senders that matter with RFC 7208 `check_host`; `verdict` counts lookups and void
lookups across the tree, judges the final `all`, and suggests a record that fixes what it found:
several records merged into one; includes of records receivers cannot use, and terms whose
lookup is void, left out; includes that loop, or (over the lookup limit) every include that can
be, flattened into the addresses they authorise now.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from dns_records.checks.base import Check, CheckContext
from dns_records.checks.mx import mx_lookups
from dns_records.lookups import Lookup, LookupStatus, Net, Resolving, host_addresses
from dns_records.results import CheckOutcome, Finding, outcome_from_findings
from dns_records.spf import (
    LOOKUP_MECHANISMS,
    MAX_LOOKUPS,
    MAX_MX_OR_PTR_NAMES,
    MAX_VOID_LOOKUPS,
    SpfRecord,
    SpfSyntaxError,
    Term,
    cidr_lengths,
    effective_terms,
    is_spf,
    parse_spf,
    term_target,
)
from dns_records.status import CheckStatus

NAME = "spf"
# Records fetched for one SPF tree at most: ten lookups allowed, so this is well past any verdict.
MAX_SPF_NODES = 40
# a, mx and exists terms resolved for one SPF tree at most. Receivers stop after ten
# DNS-querying terms (RFC 7208 4.6.4); mailsec counts every term for the verdict but resolves
# only this many (twice the limit, so an over-limit record can still be flattened), each mx term
# for its first ten MX names (RFC 7208 4.6.4 again): forty a: terms cost twenty, not forty.
MAX_SPF_TERM_LOOKUPS = 20
MAX_EVALUATED_ADDRESSES = 10
FLATTEN_NOTE = (
    "Flattened: your providers' current ip4:/ip6: ranges replace their include: terms, so this "
    "record stays under 10 lookups. It does not follow their changes: refresh it whenever a "
    "provider changes its sending addresses (mailsec re-checks and tells you when it no longer "
    "authorises them)."
)


@dataclass
class SpfNode:
    """A domain's SPF lookup, with the records its include/redirect terms lead to."""

    domain: str
    txt: Lookup
    via: str = ""  # the term that led here, e.g. "include:_spf.example.net"
    children: list[SpfNode] = field(default_factory=list)
    # Lookups the terms of this record make (a, mx, exists, mx targets), by term text.
    term_lookups: dict[str, list[Lookup]] = field(default_factory=dict)
    # The addresses behind each a/mx term (A and AAAA, of each MX host for mx), by term text:
    # what a flattened record would list instead of the term.
    term_addresses: dict[str, list[Lookup]] = field(default_factory=dict)
    loop: bool = False
    unexpanded: bool = False  # a macro in the target: the real name is known only at receipt
    # a/mx/exists terms not resolved: the tree had used up MAX_SPF_TERM_LOOKUPS.
    unresolved: list[str] = field(default_factory=list)
    truncated: bool = False  # not fetched: the tree had grown past MAX_SPF_NODES records

    def spf_records(self) -> list[str]:
        return [r for r in self.txt.records if is_spf(r)] if self.txt.ok else []

    def record(self) -> SpfRecord | None:
        """The domain's one valid SPF record; None when it has none, several, or a broken one."""
        records = self.spf_records()
        if len(records) != 1:
            return None
        try:
            return parse_spf(records[0])
        except SpfSyntaxError:
            return None


@dataclass
class SpfTally:
    lookups: int = 0
    void: int = 0
    truncated: bool = False
    unresolved: int = 0
    findings: list[Finding] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def _is_void(lookup: Lookup) -> bool:
    return lookup.status in {LookupStatus.NXDOMAIN, LookupStatus.NODATA}


def _walk(node: SpfNode, tally: SpfTally, depth: int) -> SpfRecord | None:
    """Count lookups and collect problems of one node and those below it."""
    where = node.via or node.domain
    if node.loop:
        tally.findings.append(
            Finding(CheckStatus.FAIL, f"{where} loops back to a record already included")
        )
        return None
    if node.unexpanded:
        return None
    if node.truncated:
        tally.truncated = True
        return None
    if node.txt.failed:
        tally.findings.append(
            Finding(
                CheckStatus.ERROR,
                f"Could not look up the SPF record of {node.domain}: {node.txt.reason}",
            )
        )
        return None
    records = node.spf_records()
    if not records:
        if depth > 0:
            tally.void += 1 if _is_void(node.txt) else 0
            tally.findings.append(
                Finding(
                    CheckStatus.FAIL, f"{where} points to {node.domain}, which has no SPF record"
                )
            )
        return None
    if len(records) > 1:
        tally.findings.append(
            Finding(
                CheckStatus.FAIL,
                f"{node.domain} publishes {len(records)} SPF records; receivers return permerror",
            )
        )
        return None
    try:
        record = parse_spf(records[0])
    except SpfSyntaxError as exc:
        tally.findings.append(
            Finding(CheckStatus.FAIL, f"SPF syntax error at {node.domain}: {exc}")
        )
        return None
    tally.records.append({"domain": node.domain, "record": record.text, "via": node.via})
    tally.unresolved += len(node.unresolved)
    for term in effective_terms(record):
        counts = term.kind == "mechanism" and term.name in LOOKUP_MECHANISMS
        counts = counts or (term.kind == "modifier" and term.name == "redirect")
        if counts:
            tally.lookups += 1
        for lookup in node.term_lookups.get(str(term), []):
            if lookup.failed:
                tally.findings.append(
                    Finding(
                        CheckStatus.ERROR,
                        f"Could not resolve {term} at {node.domain}: {lookup.reason}",
                    )
                )
            elif (
                _is_void(lookup)
                and term.name in {"a", "mx", "exists"}
                and lookup.rdtype in {"MX", "A"}
            ):
                tally.void += 1
        if term.name == "mx":
            mx = next(
                (lk for lk in node.term_lookups.get(str(term), []) if lk.rdtype == "MX"), None
            )
            if mx is not None and mx.ok and len(mx.records) > MAX_MX_OR_PTR_NAMES:
                tally.findings.append(
                    Finding(CheckStatus.FAIL, f"{term} at {node.domain} has more than 10 MX names")
                )
        if term.name == "ptr" and term.kind == "mechanism":
            tally.findings.append(
                Finding(
                    CheckStatus.WARNING,
                    f"{term} at {node.domain}: the ptr mechanism is slow and deprecated (RFC 7208 5.5)",
                )
            )
    for child in node.children:
        _walk(child, tally, depth + 1)
    return record


def _effective_all(node: SpfNode) -> str | None:
    """The qualifier of the 'all' that ends evaluation, following redirect= when there is none."""
    record = node.record()
    if record is None:
        return None
    if record.all_qualifier is not None:
        return record.all_qualifier
    redirect = record.modifier("redirect")
    if redirect is None:
        return None
    child = next((c for c in node.children if c.via == str(redirect)), None)
    return _effective_all(child) if child is not None else None


def evaluate_spf_tree(
    root: SpfNode, evaluations: list[dict[str, str]] | None = None
) -> CheckOutcome:
    """The spf check's verdict from the looked-up tree and the per-address evaluations."""
    details: dict[str, Any] = {"domain": root.domain}
    if root.txt.failed:
        return CheckOutcome(
            NAME, CheckStatus.ERROR,
            f"Could not look up the SPF record: {root.txt.reason}", details,
        )  # fmt: skip
    records = root.spf_records()
    if not records:
        return CheckOutcome(
            NAME, CheckStatus.FAIL,
            f"{root.domain} has no SPF record: anyone can send mail in its name.", details,
        )  # fmt: skip
    tally = SpfTally()
    _walk(root, tally, 0)
    details.update(
        record=records[0] if len(records) == 1 else records,
        lookups=tally.lookups,
        void_lookups=tally.void,
        includes=tally.records,
    )
    findings = list(tally.findings)
    if tally.truncated:
        findings.append(
            Finding(
                CheckStatus.FAIL,
                f"SPF expands to more than {tally.lookups} DNS lookups (mailsec stopped counting); receivers stop at 10",
            )
        )
    elif tally.lookups > MAX_LOOKUPS:
        findings.append(
            Finding(
                CheckStatus.FAIL,
                f"SPF needs {tally.lookups} DNS lookups; receivers stop at 10 and return permerror",
            )
        )
    if tally.unresolved:
        findings.append(
            Finding(
                CheckStatus.WARNING,
                f"mailsec resolved the first {MAX_SPF_TERM_LOOKUPS} a/mx/exists terms and left "
                f"{tally.unresolved} more unresolved; receivers stop after 10 lookups",
            )
        )
    if tally.void > MAX_VOID_LOOKUPS:
        findings.append(
            Finding(
                CheckStatus.FAIL, f"SPF makes {tally.void} void lookups; receivers stop after 2"
            )
        )
    qualifier = _effective_all(root)
    details["all"] = qualifier
    if len(records) == 1 and not any(f.status is CheckStatus.FAIL for f in findings):
        if qualifier in {"+", "?"}:
            findings.append(
                Finding(CheckStatus.FAIL, f"SPF ends in {qualifier}all: it authorises every sender")
            )
        elif qualifier is None:
            findings.append(
                Finding(CheckStatus.FAIL, "SPF has no 'all' term: unlisted senders get neutral")
            )
        elif qualifier == "~":
            findings.append(
                Finding(
                    CheckStatus.WARNING,
                    "SPF ends in ~all (softfail); -all tells receivers to reject",
                )
            )
    for evaluation in evaluations or []:
        if evaluation["result"] == "temperror":
            findings.append(
                Finding(
                    CheckStatus.ERROR,
                    f"Could not evaluate SPF for {evaluation['ip']}: {evaluation.get('explanation', '')}",
                )
            )
        elif evaluation["result"] != "pass":
            findings.append(
                Finding(
                    CheckStatus(evaluation.get("severity", "warning")),
                    f"{evaluation['role']} {evaluation['ip']} does not pass SPF ({evaluation['result']})",
                )
            )
    details["evaluations"] = evaluations or []
    details["include_costs"] = include_costs(root)
    details["over_limit"] = tally.truncated or tally.lookups > MAX_LOOKUPS
    ok = f"SPF is valid, ends in -all, {tally.lookups} of 10 lookups"
    return outcome_from_findings(NAME, findings, ok, details)


def suggest_spf(
    domain: str, current: str | None, host_addresses: list[str], *, authorise_mx: bool = False
) -> str:
    """A record to publish: the current one made strict, or one built from MX and hosts.

    `authorise_mx` adds the `mx` mechanism when the domain's own mail servers would not pass.
    """
    extra = [f"ip6:{a}" if ":" in a else f"ip4:{a}" for a in host_addresses]
    record = None
    if current:
        try:
            record = parse_spf(current)
        except SpfSyntaxError:
            record = None
    if record is None:
        return " ".join(["v=spf1", "mx", *extra, "-all"])
    if record.all_qualifier is None and record.modifier("redirect") is not None:
        # The redirect target decides; strengthening it is that domain's business.
        return record.text
    terms = [str(t) for t in record.terms if t.kind == "mechanism" and t.name != "all"]
    if authorise_mx and "mx" not in terms:
        terms.insert(0, "mx")
    terms += [a for a in extra if a not in terms]
    modifiers = [str(t) for t in record.terms if t.kind == "modifier" and t.name != "redirect"]
    return " ".join(["v=spf1", *terms, "-all", *modifiers])


def merge_spf(records: list[str]) -> str | None:
    """One record holding the senders of several: receivers ignore a domain's SPF when it has
    more than one. None when one of them cannot be read or ends in a redirect (its target's
    verdict cannot be merged into a list of terms)."""
    terms: list[str] = []
    modifiers: dict[str, str] = {}
    for text in records:
        try:
            record = parse_spf(text)
        except SpfSyntaxError:
            return None
        if record.all_qualifier is None and record.modifier("redirect") is not None:
            return None
        reached = True  # mechanisms after 'all' are never evaluated
        for term in record.terms:
            if term.kind == "modifier":
                modifiers.setdefault(term.name, str(term))
            elif term.name == "all":
                reached = False
            elif reached:
                terms.append(str(term))
    modifiers.pop("redirect", None)
    return " ".join(["v=spf1", *dict.fromkeys(terms), "-all", *modifiers.values()])


def _cost(node: SpfNode) -> int:
    """DNS lookups a receiver spends on this record and everything it includes."""
    record = node.record()
    if record is None:
        return 0
    cost = 0
    for term in effective_terms(record):
        if (term.kind == "mechanism" and term.name in LOOKUP_MECHANISMS) or term.name == "redirect":
            cost += 1
    return cost + sum(_cost(child) for child in node.children)


def _child(node: SpfNode, term: Term) -> SpfNode | None:
    return next((c for c in node.children if c.via == str(term)), None)


def include_costs(root: SpfNode) -> list[dict[str, Any]]:
    """Each include of the domain's own record, with the lookups it costs (itself included)."""
    record = root.record()
    if record is None:
        return []
    costs = []
    for term in effective_terms(record):
        if term.name in {"include", "redirect"}:
            child = _child(root, term)
            costs.append({"term": str(term), "lookups": 1 + (_cost(child) if child else 0)})
    return costs


def _address_terms(node: SpfNode, term: Term, qualifier: str) -> list[str] | None:
    """ip4:/ip6: terms for what an a or mx term matches now; None when a lookup failed."""
    lookups = node.term_addresses.get(str(term))
    if lookups is None or any(lk.failed for lk in lookups):
        return None
    v4_len, v6_len = cidr_lengths(term)
    terms = []
    for address in host_addresses(lookups):
        ip = ipaddress.ip_address(address)
        length = (v4_len if ip.version == 4 else v6_len) or ip.max_prefixlen
        network = ipaddress.ip_network(f"{address}/{length}", strict=False)
        text = str(network.network_address) if length == ip.max_prefixlen else str(network)
        terms.append(f"{qualifier}ip{ip.version}:{text}")
    return terms


def _flatten_include(node: SpfNode | None, qualifier: str) -> list[str] | None:
    """The ip4:/ip6: terms on which an included record passes, with the include's qualifier.

    A term that loops back to a record being flattened adds nothing: that record's own terms
    are already in the result (receivers give up on the loop; what it meant is the union).
    None when the record cannot be written as addresses: a macro, exists or ptr (known only when
    a message arrives), a non-pass term before the end (it would change what passes), +all, or
    a lookup that failed.
    """
    if node is not None and node.loop:
        return []
    if node is None or node.unexpanded or node.truncated:
        return None
    record = node.record()
    if record is None:
        return None
    prefix = "" if qualifier == "+" else qualifier
    terms: list[str] = []
    for term in effective_terms(record):
        if term.kind == "modifier":
            if term.name == "redirect":
                redirected = _flatten_include(_child(node, term), qualifier)
                if redirected is None:
                    return None
                terms += redirected
            continue
        if term.name == "all":
            if term.qualifier == "+":
                return None
            break
        if term.qualifier != "+":
            return None
        if term.name in {"ip4", "ip6"}:
            terms.append(f"{prefix}{term.name}:{term.value}")
        elif term.name == "include":
            nested = _flatten_include(_child(node, term), qualifier)
            if nested is None:
                return None
            terms += nested
        elif term.name in {"a", "mx"}:
            addresses = _address_terms(node, term, prefix)
            if addresses is None:
                return None
            terms += addresses
        else:
            return None
    return terms


def _loops(node: SpfNode) -> bool:
    return node.loop or any(_loops(child) for child in node.children)


def _unusable(node: SpfNode | None) -> str | None:
    """Why receivers cannot use the record an include or redirect names; None when they can
    (or when mailsec cannot tell: a failed lookup, a macro, a tree cut short)."""
    if node is None or node.loop or node.unexpanded or node.truncated or node.txt.failed:
        return None
    records = node.spf_records()
    if not records:
        return f"{node.domain} publishes no SPF record"
    if len(records) > 1:
        return f"{node.domain} publishes {len(records)} SPF records"
    if node.record() is None:
        return f"{node.domain} publishes an invalid SPF record"
    return None


def _void_term(node: SpfNode, term: Term) -> bool:
    """An a, mx or exists term whose lookup found nothing: it matches no sender."""
    if term.name == "a":
        found = node.term_addresses.get(str(term), [])
        return bool(found) and all(_is_void(lookup) for lookup in found)
    return term.name in {"mx", "exists"} and any(
        _is_void(lookup) and lookup.rdtype in {"MX", "A"}
        for lookup in node.term_lookups.get(str(term), [])
    )


def _void_below(node: SpfNode) -> int:
    tally = SpfTally()
    _walk(node, tally, 1)
    return tally.void


@dataclass(frozen=True)
class SpfRewrite:
    """A record to publish in place of the domain's, and what changed on the way there.

    `flattened` lists the include/redirect terms replaced by the addresses they authorise now,
    `dropped` each term left out, with why: none of them authorises anything a receiver can use.
    """

    value: str
    flattened: tuple[str, ...] = ()
    looped: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()

    @property
    def note(self) -> str:
        sentences = [f"Drops {term}: {why}." for term, why in self.dropped]
        sentences += [
            f"{term} leads back to a record that includes it, a loop receivers cannot "
            "evaluate: the addresses it authorises now stand in its place (refresh them when "
            "they change)."
            for term in self.looped
        ]
        if self.flattened:
            sentences.append(FLATTEN_NOTE)
        return " ".join(sentences)


def rewrite_spf(
    root: SpfNode, host_addresses_: list[str], *, authorise_mx: bool, flatten: bool
) -> SpfRewrite | None:
    """The domain's record with what breaks it taken out, strict -all at the end.

    Includes and redirects to a record receivers cannot use are dropped, and so are a, mx and
    exists terms whose lookup is void (they match nothing; they only spend the two void lookups
    receivers allow). An include that loops is flattened. With `flatten`, every include that
    can be written as addresses is. None when the domain's record cannot be read, or when the
    result would still need more than ten lookups or two void ones.
    """
    record = root.record()
    if record is None:
        return None
    terms: list[str] = []
    flattened: list[str] = []
    looped: list[str] = []
    dropped: list[tuple[str, str]] = []
    lookups = void = 0
    redirect: Term | None = None
    for term in effective_terms(record):
        if term.kind == "modifier" and term.name != "redirect":
            continue
        if term.name == "all":
            break
        if term.name in {"include", "redirect"}:
            child = _child(root, term)
            why = _unusable(child)
            if why is not None:
                dropped.append((str(term), f"{why}, so receivers return permerror"))
                continue
            loops = child is not None and _loops(child)
            if flatten or loops:
                flat = _flatten_include(child, "+" if term.kind == "modifier" else term.qualifier)
                if flat is not None:
                    terms += flat
                    (looped if loops else flattened).append(str(term))
                    continue
                if loops:
                    dropped.append((str(term), "it loops back and cannot be listed as addresses"))
                    continue
            lookups += 1 + (_cost(child) if child else 0)
            void += _void_below(child) if child else 0
            if term.kind == "modifier":
                redirect = term
            else:
                terms.append(str(term))
            continue
        if _void_term(root, term):
            target = term_target(term, root.domain) or term.value
            dropped.append(
                (str(term), f"{target} has no {'MX' if term.name == 'mx' else 'address'} record")
            )
            continue
        if term.name in LOOKUP_MECHANISMS:
            lookups += 1
        terms.append(str(term))
    if authorise_mx and "mx" not in terms:
        terms.insert(0, "mx")
        lookups += 1
    for address in host_addresses_:
        terms.append(f"ip{ipaddress.ip_address(address).version}:{address}")
    if lookups > MAX_LOOKUPS or void > MAX_VOID_LOOKUPS:
        return None
    modifiers = [str(t) for t in record.terms if t.kind == "modifier" and t.name != "redirect"]
    # A kept redirect ends the record: an 'all' would make receivers ignore it.
    ending = [str(redirect)] if redirect is not None else ["-all"]
    value = " ".join(["v=spf1", *dict.fromkeys(terms), *ending, *modifiers])
    return SpfRewrite(value, tuple(flattened), tuple(looped), tuple(dropped))


def flatten_spf(root: SpfNode, host_addresses_: list[str], *, authorise_mx: bool) -> str | None:
    """A record equivalent to the domain's, with each include replaced by its current addresses.

    Includes that cannot be flattened stay as they are. None when the result would still need
    more than ten lookups, or the domain's record cannot be read.
    """
    rewrite = rewrite_spf(root, host_addresses_, authorise_mx=authorise_mx, flatten=True)
    return rewrite.value if rewrite is not None else None


def _needs_rewrite(root: SpfNode, details: dict[str, Any]) -> bool:
    """Whether the record is broken in a way that no choice of 'all' fixes."""
    record = root.record()
    if record is None:
        return False
    children = [
        _child(root, t) for t in effective_terms(record) if t.name in {"include", "redirect"}
    ]
    return (
        bool(details.get("over_limit"))
        or details.get("void_lookups", 0) > MAX_VOID_LOOKUPS
        or _loops(root)
        or any(_unusable(child) is not None for child in children)
    )


def build_spf_tree(domain: str, resolver: Resolving) -> SpfNode:
    """Look up a domain's SPF record and, recursively, what its include/redirect terms name.

    A hostile record set can fan out exponentially (each record including several others that
    include each other): the tree stops growing after MAX_SPF_NODES records, far past the ten
    lookups any receiver allows, and the verdict reports the truncation as a fail.
    """
    budget = [MAX_SPF_NODES, MAX_SPF_TERM_LOOKUPS]
    return _spf_node(domain, resolver, via="", seen=frozenset(), budget=budget)


def _spf_node(
    domain: str, resolver: Resolving, *, via: str, seen: frozenset[str], budget: list[int]
) -> SpfNode:
    """`budget` is what the whole tree may still spend: [records, a/mx/exists terms]."""
    if domain in seen:
        return SpfNode(domain, Lookup(domain, "TXT", LookupStatus.OK), via=via, loop=True)
    if budget[0] <= 0:
        return SpfNode(domain, Lookup(domain, "TXT", LookupStatus.OK), via=via, truncated=True)
    budget[0] -= 1
    node = SpfNode(domain, resolver.lookup(domain, "TXT"), via=via)
    record = node.record()
    if record is None:
        return node
    seen = seen | {domain}
    for term in effective_terms(record):
        target = term_target(term, domain)
        if term.name in {"include", "redirect"}:
            if target is None:
                lookup = Lookup(term.value, "TXT", LookupStatus.OK)
                node.children.append(SpfNode(term.value, lookup, via=str(term), unexpanded=True))
            else:
                child = _spf_node(target, resolver, via=str(term), seen=seen, budget=budget)
                node.children.append(child)
        elif term.kind == "mechanism" and target is not None and term.name in {"a", "mx", "exists"}:
            if budget[1] <= 0:
                node.unresolved.append(str(term))
                continue
            budget[1] -= 1
            if term.name in {"a", "exists"}:
                node.term_lookups[str(term)] = [resolver.lookup(target, "A")]
            if term.name == "a":
                node.term_addresses[str(term)] = list(resolver.addresses(target))
            elif term.name == "mx":
                mx = mx_lookups(target, resolver, max_hosts=MAX_MX_OR_PTR_NAMES)
                node.term_lookups[str(term)] = [mx.mx]
                node.term_addresses[str(term)] = [
                    lk for found in mx.addresses.values() for lk in found if lk.rdtype != "CNAME"
                ] + ([mx.mx] if mx.mx.failed else [])
    return node


@dataclass(frozen=True)
class SpfLookups:
    tree: SpfNode
    evaluations: list[dict[str, str]] = field(default_factory=list)


def gather(context: CheckContext, net: Net) -> SpfLookups:
    tree = build_spf_tree(context.domain, net.resolver)
    # Managed hosts must pass (a refusal is a fail); without them the MX hosts should (warning).
    senders = [(a, "Managed host", "fail") for a in context.host_addresses]
    if not senders:
        owners = mx_lookups(context.domain, net.resolver).address_owners()
        senders = [(a, f"MX {h}", "warning") for a, h in owners.items()]
    evaluations = []
    if len(tree.spf_records()) == 1:
        for address, role, severity in senders[:MAX_EVALUATED_ADDRESSES]:
            result = net.check_host(address, context.domain)
            evaluations.append(
                {"ip": address, "role": role, "severity": severity, "result": result.result,
                 "explanation": result.explanation}
            )  # fmt: skip
    return SpfLookups(tree, evaluations)


def verdict(context: CheckContext, found: SpfLookups) -> CheckOutcome:
    outcome = evaluate_spf_tree(found.tree, found.evaluations)
    if outcome.status not in {CheckStatus.FAIL, CheckStatus.WARNING}:
        return outcome
    tree = found.tree
    records = tree.spf_records()
    current = records[0] if len(records) == 1 else None
    mx_refused = any(
        e["result"] != "pass" and e["role"].startswith("MX") for e in found.evaluations
    )
    hosts = list(context.host_addresses)
    # A TXT lookup follows an alias: the record of a CNAME's owner is published at its target.
    name = tree.txt.canonical_name or context.domain
    suggestion: dict[str, Any] = {"name": name, "type": "TXT"}
    notes = []
    if name != context.domain:
        notes.append(f"{context.domain} is an alias (CNAME) of {name}: its SPF record is {name}'s.")
    if _needs_rewrite(tree, outcome.details):
        rewrite = rewrite_spf(tree, hosts, authorise_mx=mx_refused, flatten=False)
        if rewrite is None:
            rewrite = rewrite_spf(tree, hosts, authorise_mx=mx_refused, flatten=True)
        if rewrite is None:
            return outcome
        value = rewrite.value
        notes.append(rewrite.note)
    elif len(records) > 1 and (merged := merge_spf(records)) is not None:
        value = suggest_spf(context.domain, merged, hosts)
        notes.append(
            f"Merges the {len(records)} SPF records into one: receivers ignore them all while "
            "there are several."
        )
    else:
        value = suggest_spf(context.domain, current, hosts, authorise_mx=mx_refused)
    if value == current:
        return outcome
    suggestion["value"] = value
    if any(notes):
        suggestion["note"] = " ".join(n for n in notes if n)
    outcome.details["suggested_record"] = suggestion
    return outcome


CHECK = Check(name=NAME, label="SPF", order=20, gather=gather, verdict=verdict)
