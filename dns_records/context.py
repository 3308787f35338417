"""Each Domain row's `CheckContext`: the inputs its checks need, which differ per organisation.

The domain's own app knows the name and the report address. Apps above `dns_records` (managed
hosts, DKIM signing on them) add what they know by registering a provider in their
`AppConfig.ready()`; `dns_records` never imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings

from dns_records.checks import CheckContext, DkimExpectation
from dns_records.models import Domain


@dataclass(frozen=True)
class ContextExtras:
    """What one provider adds to a domain's context."""

    host_addresses: tuple[str, ...] = ()
    dkim: tuple[DkimExpectation, ...] = ()


# Given Domain rows, the extras for some of them, by primary key; one query per provider.
ContextProvider = Callable[[Sequence[Domain]], Mapping[int, ContextExtras]]
_providers: list[ContextProvider] = []


def register_context_provider(provider: ContextProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def report_address_for(domain: str) -> str:
    """Where DMARC and TLS reports should go: mailsec's ingest address when one is set."""
    addresses = settings.MAILSEC_INGEST_ADDRESSES
    return addresses[0] if addresses else f"dmarc-reports@{domain}"


def context_for_name(name: str) -> CheckContext:
    """The context of a name no organisation manages (`check_domain` of any domain)."""
    return CheckContext(domain=name, report_address=report_address_for(name))


def check_contexts(domains: Sequence[Domain]) -> dict[int, CheckContext]:
    """The context of each Domain row, by primary key."""
    extras: dict[int, list[ContextExtras]] = {}
    for provider in _providers:
        for pk, extra in provider(domains).items():
            extras.setdefault(pk, []).append(extra)
    contexts = {}
    for domain in domains:
        found = extras.get(domain.pk, [])
        contexts[domain.pk] = CheckContext(
            domain=domain.name,
            report_address=report_address_for(domain.name),
            host_addresses=tuple(dict.fromkeys(a for e in found for a in e.host_addresses)),
            dkim=tuple(dict.fromkeys(k for e in found for k in e.dkim)),
        )
    return contexts
