"""checkdmarc's side: check_domains, or its SPF, DMARC and MX functions, one domain at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .fixtures import KNOT_ADDRESS
from .network import DNS_TIMEOUT

type CheckdmarcResults = dict[str, dict[str, Any]]  # domain -> "spf" | "dmarc" | "mx" -> result


def clear_checkdmarc_caches() -> None:
    """Forget every answer checkdmarc keeps between calls (30 minutes by default)."""
    import checkdmarc.dnssec
    import checkdmarc.smtp
    import checkdmarc.utils

    for cache in (
        checkdmarc.utils.DNS_CACHE,
        checkdmarc.utils._NAMESERVER_FAILURES,
        checkdmarc.dnssec.DNSSEC_CACHE,
        checkdmarc.dnssec.DNSKEY_CACHE,
        checkdmarc.dnssec.TLSA_CACHE,
        checkdmarc.smtp.TLS_CACHE,
        checkdmarc.smtp.STARTTLS_CACHE,
    ):
        cache.clear()


def checkdmarc_options(port: int, *, prebuilt_resolver: bool) -> dict[str, Any]:
    """DNS options for every checkdmarc call: only our Knot, 2 s, no retries.

    `nameservers` alone is how the docs say to point checkdmarc at a server; it then builds a
    `dns.resolver.Resolver()` per query (reading /etc/resolv.conf each time). A prebuilt
    `resolver` skips that; the DNSSEC checks take `nameservers` only, so both are passed.
    """
    import dns.nameserver
    import dns.resolver

    nameserver = dns.nameserver.Do53Nameserver(KNOT_ADDRESS, port)
    options: dict[str, Any] = {"nameservers": [nameserver], "timeout": DNS_TIMEOUT, "retries": 0}
    if prebuilt_resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [nameserver]
        resolver.timeout = min(1.0, DNS_TIMEOUT)  # as checkdmarc sets its own
        resolver.lifetime = DNS_TIMEOUT
        resolver.cache = None
        options["resolver"] = resolver
    return options


def _sequential_run(
    domains: Sequence[str], check: Callable[[str], dict[str, Any]]
) -> tuple[float, CheckdmarcResults]:
    """`check` on one domain after the other, checkdmarc's caches cleared before each."""
    results: CheckdmarcResults = {}
    start = time.perf_counter()
    for domain in domains:
        clear_checkdmarc_caches()
        results[domain] = check(domain)
    return time.perf_counter() - start, results


def checkdmarc_domains_run(
    domains: Sequence[str], options: dict[str, Any]
) -> tuple[float, CheckdmarcResults]:
    """`checkdmarc.check_domains`, one domain at a time, its caches cleared before each."""
    import checkdmarc

    def check(domain: str) -> dict[str, Any]:
        # check_mx_tls=False: no SMTP connections (skip_tls is a deprecated no-op in 6.x).
        result = checkdmarc.check_domains([domain], check_mx_tls=False, **options)
        assert isinstance(result, dict)
        return {"spf": result["spf"], "dmarc": result["dmarc"], "mx": result["mx"]}

    return _sequential_run(domains, check)


def checkdmarc_functions_run(
    domains: Sequence[str], options: dict[str, Any]
) -> tuple[float, CheckdmarcResults]:
    """checkdmarc's own SPF, DMARC and MX checks only, one domain at a time."""
    from checkdmarc.dmarc import check_dmarc
    from checkdmarc.smtp import check_mx
    from checkdmarc.spf import check_spf

    def check(domain: str) -> dict[str, Any]:
        return {
            "mx": check_mx(domain, check_mx_tls=False, **options),
            "spf": check_spf(domain, **options),
            "dmarc": check_dmarc(domain, **options),
        }

    return _sequential_run(domains, check)
