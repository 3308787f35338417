"""The fixture domains: a seeded mix of good and broken set-ups, each its own zone, on knotd."""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KNOT_ADDRESS = "127.0.0.20"  # the test suite's Knot instances use 127.0.0.10
TLD = "test"
SPF_PROVIDER = "spf-provider.test"
MAIL_PROVIDER = "mail-provider.test"
DMARC_PROVIDER = "dmarc-provider.test"
DNS_HOST = "dns-host.test"
HOSTING = "hosting.test"
SOA = f"@ SOA ns1.{DNS_HOST}. hostmaster.{DNS_HOST}. 1 7200 3600 1209600 300"
SPF_INCLUDE = f"include:_spf.{SPF_PROVIDER}"
CHAIN_LENGTH = 10  # include chain01 .. chain10: with the record's own `mx`, 11 lookups


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int  # relative share of the generated domains
    description: str


VARIANTS = [
    Variant("good_mx", 18, "two own MX with A records, v=spf1 mx -all, DMARC p=reject + rua"),
    Variant("good_include", 18, "provider MX (A+AAAA), SPF include with nested include, -all"),
    Variant("softfail", 8, "SPF ends in ~all"),
    Variant("plus_all", 3, "SPF ends in +all"),
    Variant("no_spf", 8, "no SPF record (other TXT records only)"),
    Variant("two_spf", 3, "two SPF records"),
    Variant("spf_too_many_lookups", 3, "SPF include chain needing 11 lookups"),
    Variant("dmarc_none", 10, "DMARC p=none"),
    Variant("no_dmarc", 10, "no DMARC record"),
    Variant("dmarc_syntax_error", 4, "DMARC record that does not parse"),
    Variant("single_mx", 10, "a single MX host"),
    Variant("mx_without_address", 5, "second MX host has no address record"),
]


@dataclass(frozen=True)
class FixtureDomain:
    name: str
    variant: str


def txt_string(text: str) -> str:
    """`text` as one zone-file character-string (at most 255 bytes), quoted and escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def zone_text(origin: str, lines: Iterable[str]) -> str:
    """A zone file for `origin`: $ORIGIN, $TTL, SOA and NS, then `lines`."""
    head = [f"$ORIGIN {origin}.", "$TTL 300", SOA, f"@ NS ns1.{DNS_HOST}.", f"@ NS ns2.{DNS_HOST}."]
    return "\n".join([*head, *lines]) + "\n"


def _host_name(address: str) -> str:
    return f"host-{address.replace('.', '-')}.{HOSTING}"


def _domain_zone(name: str, variant: str, index: int, rng: random.Random) -> str:
    """The zone of one fixture domain of the given variant."""
    provider_mx = variant == "good_include" or (
        variant not in {"good_mx", "single_mx", "mx_without_address"} and rng.random() < 0.4
    )
    lines: list[str] = []
    mx1, mx2 = f"192.0.2.{1 + index % 250}", f"198.51.100.{130 + index % 120}"
    if provider_mx:
        lines += [f"@ MX 10 mx1.{MAIL_PROVIDER}.", f"@ MX 20 mx2.{MAIL_PROVIDER}."]
    elif variant == "single_mx":
        lines += ["@ MX 10 mx1", f"mx1 A {mx1}"]
    elif variant == "mx_without_address":
        lines += ["@ MX 10 mx1", "@ MX 20 backup-mx", f"mx1 A {mx1}", 'backup-mx TXT "retired"']
    else:
        lines += ["@ MX 10 mx1", "@ MX 20 mx2", f"mx1 A {mx1}", f"mx2 A {mx2}"]
    lines += [f"@ A {mx1}", f"www CNAME {name}."]

    good_spf = f"v=spf1 {SPF_INCLUDE} -all" if provider_mx else "v=spf1 mx -all"
    spf: list[str] = {
        "softfail": [good_spf.replace("-all", "~all")],
        "plus_all": [good_spf.replace("-all", "+all")],
        "no_spf": [],
        "two_spf": ["v=spf1 mx -all", f"v=spf1 {SPF_INCLUDE} -all"],
        "spf_too_many_lookups": [f"v=spf1 mx include:chain01.{SPF_PROVIDER} -all"],
    }.get(variant, [good_spf])
    other_txt = [f"site-verification={rng.getrandbits(64):016x}"] if rng.random() < 0.6 else []
    lines += [f"@ TXT {txt_string(text)}" for text in [*spf, *other_txt]]

    external_rua = variant == "good_include" or rng.random() < 0.3
    rua = f"mailto:agg@reports.{DMARC_PROVIDER}" if external_rua else f"mailto:dmarc@{name}"
    dmarc: str | None = {
        "dmarc_none": f"v=DMARC1; p=none; rua={rua}",
        "no_dmarc": None,
        "dmarc_syntax_error": rng.choice(
            [f"v=DMARC1; p=rejected; rua={rua}", f"v=DMARC1; p=reject; rua=dmarc@{name}"]
        ),
    }.get(variant, f"v=DMARC1; p=reject; rua={rua}")
    if dmarc is not None:
        lines.append(f"_dmarc TXT {txt_string(dmarc)}")
    return zone_text(name, lines)


def _shared_zones(domains: Sequence[str]) -> dict[str, str]:
    """The zones every fixture domain leans on: the TLD, providers, reverse DNS."""
    v4 = [f"192.0.2.{n}" for n in range(1, 255)] + [f"198.51.100.{n}" for n in range(1, 255)]
    chain = [
        f"chain{n:02d} TXT {txt_string(f'v=spf1 include:chain{n + 1:02d}.{SPF_PROVIDER} -all')}"
        for n in range(1, CHAIN_LENGTH)
    ]
    chain.append(f"chain{CHAIN_LENGTH:02d} TXT {txt_string('v=spf1 ip4:198.51.100.0/24 -all')}")
    ip6_reverse = "5.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"  # 2001:db8:25::/48
    delegated = [*domains, SPF_PROVIDER, MAIL_PROVIDER, DMARC_PROVIDER, DNS_HOST, HOSTING]
    return {
        TLD: zone_text(
            TLD,
            [
                f"{d.removesuffix('.' + TLD)} NS ns{k}.{DNS_HOST}."
                for d in delegated
                for k in (1, 2)
            ],
        ),
        DNS_HOST: zone_text(DNS_HOST, ["ns1 A 192.0.2.253", "ns2 A 198.51.100.253"]),
        SPF_PROVIDER: zone_text(
            SPF_PROVIDER,
            [
                f"_spf TXT {txt_string(f'v=spf1 ip4:198.51.100.0/25 include:_netblocks.{SPF_PROVIDER} -all')}",
                f"_netblocks TXT {txt_string('v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:25::/48 -all')}",
                *chain,
            ],
        ),
        MAIL_PROVIDER: zone_text(
            MAIL_PROVIDER,
            [
                "mx1 A 198.51.100.25",
                "mx1 AAAA 2001:db8:25::1",
                "mx2 A 198.51.100.26",
                "mx2 AAAA 2001:db8:25::2",
            ],
        ),
        DMARC_PROVIDER: zone_text(
            DMARC_PROVIDER,
            [
                f"reports MX 10 mx1.{MAIL_PROVIDER}.",
                f"*._report._dmarc.reports TXT {txt_string('v=DMARC1')}",
            ],
        ),
        HOSTING: zone_text(HOSTING, [f"{_host_name(a).split('.')[0]} A {a}" for a in v4]),
        "2.0.192.in-addr.arpa": zone_text(
            "2.0.192.in-addr.arpa",
            [f"{n} PTR {_host_name(f'192.0.2.{n}')}." for n in range(1, 255)],
        ),
        "100.51.198.in-addr.arpa": zone_text(
            "100.51.198.in-addr.arpa",
            [f"{n} PTR {_host_name(f'198.51.100.{n}')}." for n in range(1, 255)],
        ),
        ip6_reverse: zone_text(
            ip6_reverse,
            [
                f"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mx1.{MAIL_PROVIDER}.",
                f"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mx2.{MAIL_PROVIDER}.",
            ],
        ),
    }


def write_fixtures(directory: Path, count: int, seed: int) -> list[FixtureDomain]:
    """Write one zone file per domain (and the shared zones); return the domains, in order."""
    rng = random.Random(seed)  # noqa: S311  (fixture data, not security)
    names = [f"d{n:04d}.{TLD}" for n in range(count)]
    # Every variant at least once (when there are enough domains), then by weight.
    chosen = [v.name for v in VARIANTS][:count]
    chosen += rng.choices(
        [v.name for v in VARIANTS], weights=[v.weight for v in VARIANTS], k=count - len(chosen)
    )
    rng.shuffle(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    domains = []
    for index, (name, variant) in enumerate(zip(names, chosen, strict=True)):
        (directory / f"{name}.zone").write_text(_domain_zone(name, variant, index, rng))
        domains.append(FixtureDomain(name, variant))
    for zone, text in _shared_zones(names).items():
        (directory / f"{zone}.zone").write_text(text)
    return domains


@dataclass(frozen=True)
class ServedKnot:
    """The knotd serving the fixtures: its port on KNOT_ADDRESS, its pid and start-up time."""

    port: int
    pid: int
    start_seconds: float


@contextmanager
def serve_zones(
    directory: Path, source: Path, zone_files: dict[str, str | None] | None = None
) -> Iterator[ServedKnot]:
    """Serve the zone files in `source` on KNOT_ADDRESS from a knotd run in `directory`.

    `zone_files` is KnotServer's: each zone's file, None for a zone that stays unloaded (SERVFAIL).
    """
    from tests.servers import KnotServer

    knot_dir = directory / "knot"
    knot_dir.mkdir()
    knot = KnotServer(knot_dir, address=KNOT_ADDRESS, source=source, zone_files=zone_files)
    started = time.perf_counter()
    try:
        knot.start()
        knot_start = time.perf_counter() - started
        print(f"knotd serving {len(knot.zones)} zones on {knot.nameserver} ({knot_start:.1f} s)")
        assert knot.process is not None
        yield ServedKnot(knot.port, knot.process.pid, knot_start)
    finally:
        knot.stop()


@contextmanager
def serve_fixtures(count: int, seed: int) -> Iterator[tuple[list[FixtureDomain], ServedKnot]]:
    """Write `count` fixture domains to a temporary directory and serve them until the end."""
    with tempfile.TemporaryDirectory(prefix="mailsec-bench-") as tmp:
        fixtures = write_fixtures(Path(tmp) / "fixtures", count, seed)
        with serve_zones(Path(tmp), Path(tmp) / "fixtures") as knot:
            yield fixtures, knot
