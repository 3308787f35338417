"""RFC 7208 `check_host` evaluated by pyspf, with every DNS query made through our `Resolver`."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import spf

from dns_records.lookups import LookupStatus, Resolving, SpfEvaluation, SpfResult

# RFC 7208 4.6.4: a receiver should allow at least 20 seconds for the whole evaluation.
DEFAULT_TIME_LIMIT = 20.0

# The query types pyspf asks for in RFC 7208 mode (type SPF only in its "harsh" mode, never used).
_QUERY_TYPES = frozenset({"A", "AAAA", "MX", "PTR", "TXT"})


class _Binding:
    """The resolver one evaluation uses, and how many queries it sent through it."""

    def __init__(self, resolver: Resolving) -> None:
        self.resolver = resolver
        self.lookups = 0


# pyspf calls one module-global DNSLookup; evaluations run in several threads at once, so the
# global is a dispatcher that finds each caller's own resolver in its context.
_binding: ContextVar[_Binding | None] = ContextVar("spf_eval_binding", default=None)
_install_lock = threading.Lock()


def _dns_lookup(
    name: str, qtype: str, tcpfallback: object = True, timeout: object = None
) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup contract, answered by the bound `Resolver`.

    Returns ((name, qtype), data) pairs: TXT data is a list of byte strings, MX (pref, host),
    A/AAAA/PTR a string. No data is []; a failed lookup raises spf.TempError. The per-query
    `timeout` is ignored: the Resolver's own limit applies.
    """
    binding = _binding.get()
    if binding is None:
        # Never let pyspf reach its own resolver (the system's, possibly a public one).
        raise spf.TempError("DNS: no mailsec resolver bound to this SPF evaluation")
    if qtype not in _QUERY_TYPES:
        raise spf.TempError(f"DNS: query type {qtype} is not supported")
    binding.lookups += 1
    lookup = binding.resolver.lookup(name, qtype)
    if lookup.status is LookupStatus.ERROR:
        raise spf.TempError(f"DNS {qtype} {name}: {lookup.reason or 'lookup failed'}")
    if lookup.status is not LookupStatus.OK:
        return []
    key = (name, qtype)
    if qtype == "TXT":
        # The Resolver joins a record's strings; pyspf would join them the same way.
        return [(key, [text.encode("utf-8")]) for text in lookup.records]
    if qtype == "MX":
        answers: list[tuple[tuple[str, str], Any]] = []
        for text in lookup.records:
            preference, _, host = text.partition(" ")
            answers.append((key, (int(preference), host)))
        return answers
    return [(key, text) for text in lookup.records]


def install() -> None:
    """Make pyspf send its queries through `evaluate_spf`'s resolver; idempotent."""
    with _install_lock:
        if spf.DNSLookup is not _dns_lookup:
            spf.DNSLookup = _dns_lookup


def installed() -> bool:
    """Whether pyspf's DNS currently goes through this module."""
    return spf.DNSLookup is _dns_lookup


@contextmanager
def _bound(resolver: Resolving) -> Iterator[_Binding]:
    binding = _Binding(resolver)
    token = _binding.set(binding)
    try:
        yield binding
    finally:
        _binding.reset(token)


class _Query(spf.query):  # type: ignore[misc]
    """pyspf's query, with RFC 7208 5.5's error handling for validated PTR names."""

    def validated_ptrs(self) -> list[str]:
        # RFC 7208 5.5: a DNS error on the PTR lookup means the mechanism does not match, and
        # one on a name's address lookup skips that name; pyspf turns both into temperror.
        try:
            names = self.dns_ptr(self.i)
        except spf.TempError:
            return []
        limit = spf.MAX_PTR if self.strict else spf.MAX_PTR * 4
        validated = []
        for name in names[:limit]:
            try:
                addresses = self.dns_a(name, self.A)
            except spf.TempError:
                continue
            if self.cidrmatch(addresses, self.cidrmax):
                validated.append(name)
        return validated


def evaluate_spf(
    ip: str,
    domain: str,
    *,
    resolver: Resolving,
    sender: str | None = None,
    helo: str | None = None,
    default_explanation: str | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> SpfEvaluation:
    """RFC 7208 check_host(ip, domain, sender) with all DNS through `resolver`.

    `sender` is the MAIL FROM address (postmaster@domain when absent, as for a HELO check);
    `helo` feeds the %{h} macro. `default_explanation` replaces pyspf's text for fail, softfail
    and permerror when the domain gives none. Raises ValueError for an invalid `ip`.
    """
    ipaddress.ip_address(ip)
    install()
    with _bound(resolver) as binding:
        query = _Query(
            i=ip,
            s=sender or f"postmaster@{domain}",
            h=helo or domain,
            querytime=time_limit,
        )
        # check_host's <domain> need not be the sender's domain (a HELO check, a redirect).
        query.d = domain
        if default_explanation is not None:
            query.set_default_explanation(default_explanation)
        result, _code, explanation = query.check()
    return SpfEvaluation(
        result=SpfResult(result), explanation=str(explanation), lookups=binding.lookups
    )


# From import on, pyspf in this process can only resolve through an evaluation's Resolver.
install()
