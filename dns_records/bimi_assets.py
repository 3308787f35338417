"""BIMI logos and mark certificates: fetched through mailsec's resolver and network gate, then
validated by checkdmarc (SVG Tiny PS profile; VMC/CMC chain to a Mark Verifying Authority,
extensions, subject, domain; the logo the certificate embeds).

checkdmarc would fetch with its own resolver and HTTP client, reaching any address; mailsec
fetches with `fetch_https` (only allowed addresses, verified TLS, capped size) and hands
checkdmarc the bytes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from checkdmarc.bimi import check_svg_requirements, get_certificate_metadata, get_svg_metadata

from dns_records.lookups import BimiAsset, Fetch, HttpsFetcher, Resolving, host_addresses

# BIMI caps the logo at 32 KB; a certificate chain is a few KB. Anything larger is refused.
MAX_ASSET_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0


def _fetch(url: str, resolver: Resolving, fetch: HttpsFetcher) -> Fetch | BimiAsset:
    """The asset's response, or the asset as it failed before any usable response."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        return BimiAsset(url, fault="not an https:// URL")
    lookups = resolver.addresses(host)
    addresses = host_addresses(lookups)
    if not addresses:
        failed = [lk.reason for lk in lookups if lk.failed]
        if failed:
            return BimiAsset(url, error=f"could not resolve {host}: {failed[0]}")
        return BimiAsset(url, fault=f"{host} has no address")
    response = fetch(host, parts.path or "/", addresses, timeout=FETCH_TIMEOUT)
    if response.error:
        return BimiAsset(url, error=response.error)
    if response.fault:
        return BimiAsset(url, fault=response.fault)
    if response.status != 200:
        return BimiAsset(url, fault=f"answered HTTP {response.status}")
    return response


def inspect_logo(url: str, resolver: Resolving, fetch: HttpsFetcher) -> BimiAsset:
    response = _fetch(url, resolver, fetch)
    if isinstance(response, BimiAsset):
        return response
    try:
        metadata = get_svg_metadata(response.data)
    except ValueError as exc:
        return BimiAsset(url, fault=f"not an SVG image: {exc}")
    problems = tuple(check_svg_requirements(metadata))
    details = {
        k: metadata[k] for k in ("svg_version", "base_profile", "title", "sha256") if k in metadata
    }
    return BimiAsset(url, problems=problems, details=details)


def inspect_certificate(
    url: str, domain: str, resolver: Resolving, fetch: HttpsFetcher, *, logo_sha256: str = ""
) -> BimiAsset:
    response = _fetch(url, resolver, fetch)
    if isinstance(response, BimiAsset):
        return response
    try:
        metadata: dict[str, Any] = get_certificate_metadata(response.data, domain=domain)
    except ValueError as exc:
        return BimiAsset(url, fault=f"not a PEM certificate chain: {exc}")
    problems = list(metadata.get("validation_errors") or [])
    embedded = metadata.get("logotype_sha256")
    if embedded and logo_sha256 and embedded != logo_sha256:
        problems.append("the logo at l= is not the logo the certificate was issued for")
    kept = ("issuer", "subject", "not_valid_before", "not_valid_after", "domains")
    details: dict[str, Any] = {key: metadata[key] for key in kept if key in metadata}
    return BimiAsset(
        url,
        problems=tuple(str(p) for p in problems),
        warnings=tuple(str(w) for w in metadata.get("warnings") or []),
        details=details,
    )


def inspect_bimi(
    domain: str, logo: str, authority: str, *, resolver: Resolving, fetch: HttpsFetcher
) -> list[BimiAsset]:
    """The logo, then the certificate when there is one, each as found."""
    assets = []
    logo_asset = inspect_logo(logo, resolver, fetch) if logo else None
    if logo_asset is not None:
        assets.append(logo_asset)
    if authority:
        sha = logo_asset.details.get("sha256", "") if logo_asset else ""
        assets.append(inspect_certificate(authority, domain, resolver, fetch, logo_sha256=sha))
    return assets
