"""What the outside world answered, as plain values: DNS lookups, HTTPS fetches, SPF results.

Pure: the adapters (`resolver`, `web`, `spf_eval`) produce these, the checks consume them, and
`Net` is how a check reaches the adapters without importing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class LookupStatus(StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    ERROR = "error"


@dataclass(frozen=True)
class Lookup:
    """The outcome of one query. `records` holds each answer's presentation text.

    "The record does not exist" (nxdomain, nodata) is kept apart from "the lookup failed"
    (error): a timeout, SERVFAIL or REFUSED must never read as a missing record.
    """

    name: str
    rdtype: str
    status: LookupStatus
    records: tuple[str, ...] = ()
    ttl: int | None = None
    canonical_name: str | None = None
    reason: str = ""
    authenticated: bool = False

    @property
    def ok(self) -> bool:
        return self.status is LookupStatus.OK

    @property
    def failed(self) -> bool:
        return self.status is LookupStatus.ERROR


def host_addresses(lookups: Sequence[Lookup]) -> list[str]:
    """The addresses found by a host's A and AAAA lookups, sorted."""
    return sorted({a for lk in lookups if lk.ok and lk.rdtype in {"A", "AAAA"} for a in lk.records})


@dataclass(frozen=True)
class Fetch:
    """What one HTTPS fetch got: the response, or why there is none."""

    url: str
    status: int | None = None
    body: str = ""
    data: bytes = b""  # the body as served, for what must be hashed or parsed as bytes
    content_type: str = ""
    address: str = ""
    error: str = ""  # mailsec could not tell: timeout, refused, not allowed to connect
    fault: str = ""  # the server is wrong: certificate not valid for the host, body too large

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error and not self.fault


class SpfResult(StrEnum):
    """The seven results of RFC 7208 section 2.6."""

    PASS = "pass"  # noqa: S105  (an SPF result, not a password)
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


@dataclass(frozen=True)
class SpfEvaluation:
    """The outcome of one `check_host`: result, explanation, and the DNS queries it took."""

    result: SpfResult
    explanation: str
    lookups: int


@dataclass(frozen=True)
class BimiAsset:
    """A BIMI logo or mark certificate, fetched and inspected.

    `error`: mailsec could not tell (a lookup failed, a timeout, an address it may not reach);
    `fault`: the asset is wrong (no such host, an HTTP error, a bad TLS certificate, not an
    SVG or a PEM certificate); `problems`: requirements it breaks, so receivers will not show
    the logo; `warnings`: what will break soon (a certificate about to expire).
    """

    url: str
    error: str = ""
    fault: str = ""
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


class Resolving(Protocol):
    """The resolver a check asks: `dns_records.resolver.Resolver` or a stand-in in unit tests."""

    @property
    def nameservers(self) -> list[str]: ...

    def lookup(self, name: str, rdtype: str) -> Lookup: ...

    def addresses(self, name: str) -> tuple[Lookup, Lookup]: ...

    def reverse(self, address: str) -> Lookup: ...


class HttpsFetcher(Protocol):
    def __call__(
        self, host: str, path: str, addresses: Sequence[str], *, timeout: float
    ) -> Fetch: ...


class SpfEvaluator(Protocol):
    def __call__(self, ip: str, domain: str) -> SpfEvaluation: ...


class BimiInspector(Protocol):
    """Fetches and validates a BIMI record's logo (`l=`) and mark certificate (`a=`)."""

    def __call__(self, domain: str, logo: str, authority: str) -> list[BimiAsset]: ...


@dataclass(frozen=True)
class Net:
    """The outside world as one run of checks reaches it: DNS, HTTPS, SPF's check_host, BIMI."""

    resolver: Resolving
    fetch_https: HttpsFetcher
    check_host: SpfEvaluator
    inspect_bimi: BimiInspector
