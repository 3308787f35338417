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
from dns_records.models import DkimKey, DkimKeyState, DkimSelector, Domain


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


# Keys whose record the domain must publish: pending ones too, so the check says what to add.
EXPECTED_KEY_STATES = (
    DkimKeyState.PENDING, DkimKeyState.PUBLISHED, DkimKeyState.ACTIVE, DkimKeyState.RETIRING,
)  # fmt: skip


def _dkim_expectations(domains: Sequence[Domain]) -> dict[int, list[DkimExpectation]]:
    """The DKIM records each domain depends on: mailsec's keys, then other senders' selectors."""
    ids = [domain.pk for domain in domains]
    found: dict[int, list[DkimExpectation]] = {}
    keys = DkimKey.objects.filter(domain_id__in=ids, state__in=EXPECTED_KEY_STATES).exclude(
        public_key=""
    )
    for key in keys.select_related("domain").order_by("selector"):
        found.setdefault(key.domain_id, []).append(
            DkimExpectation(key.selector, key.state, key.dns_value, key.algorithm)
        )
    for watched in DkimSelector.objects.filter(domain_id__in=ids).order_by("selector"):
        found.setdefault(watched.domain_id, []).append(
            DkimExpectation(watched.selector, "external")
        )
    return found


def check_contexts(domains: Sequence[Domain]) -> dict[int, CheckContext]:
    """The context of each Domain row, by primary key."""
    extras: dict[int, list[ContextExtras]] = {
        pk: [ContextExtras(dkim=tuple(expected))]
        for pk, expected in _dkim_expectations(domains).items()
    }
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
