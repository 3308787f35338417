"""What every check is made of: the context it runs for, and its two halves.

A check is a module in this package exposing `CHECK = Check(...)`: `gather` makes the lookups
it needs through `Net` (the only way it reaches DNS or the network), and `verdict` is a pure
function from the context and those lookups to a `CheckOutcome`. Unit tests call `verdict` with
hand-made lookups; the runner calls both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dns_records.lookups import Net
from dns_records.results import CheckOutcome


@dataclass(frozen=True)
class DkimExpectation:
    """A DKIM record the domain depends on, at `<selector>._domainkey.<domain>`.

    For a key mailsec holds, `value` is the exact TXT value to publish and `state` the key's
    state (pending, published, active, retiring); for a selector another sender uses (Google
    Workspace's `google`, an ESP's), `value` is empty and `state` is "external".
    """

    selector: str
    state: str
    value: str = ""
    algorithm: str = ""


@dataclass(frozen=True)
class CheckContext:
    """The inputs of one domain's checks, built per Domain row (inputs differ per organisation).

    `host_addresses` are the addresses of the organisation's managed hosts that send for the
    domain; `dkim` the DKIM records it is expected to publish. Apps above `dns_records` add to
    them through `dns_records.context` without being imported by it.
    """

    domain: str
    report_address: str
    host_addresses: tuple[str, ...] = ()
    dkim: tuple[DkimExpectation, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def stamp(self) -> str:
        """A version tag for records that carry one (MTA-STS id=)."""
        return self.now.strftime("%Y%m%d%H%M")


@dataclass(frozen=True)
class Check[L]:
    """One DNS check: its name in results, its label for people, and its two halves."""

    name: str
    label: str
    order: int
    gather: Callable[[CheckContext, Net], L]
    verdict: Callable[[CheckContext, L], CheckOutcome]

    def run(self, context: CheckContext, net: Net) -> CheckOutcome:
        return self.verdict(context, self.gather(context, net))
