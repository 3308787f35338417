"""Domain names are stored in one canonical ASCII form, and nonsense is refused."""

from __future__ import annotations

import pytest

from dns_records.names import InvalidDomainName, display_domain, normalise_domain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  mail.example.org ", "mail.example.org"),
        ("bücher.test", "xn--bcher-kva.test"),
        ("XN--BCHER-KVA.test", "xn--bcher-kva.test"),
        ("_dmarc.example.com", "_dmarc.example.com"),
    ],
)
def test_normalise_domain(text, expected):
    assert normalise_domain(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "localhost", "192.0.2.1", "::1", "a..b", "-bad.example", "bad-.example", "a b.example",
     "example.123", "x" * 64 + ".example", ("a" * 60 + ".") * 5 + "com", "xn--zz.example"],
)  # fmt: skip
def test_normalise_domain_refuses(text):
    with pytest.raises(InvalidDomainName):
        normalise_domain(text)


def test_display_domain_shows_unicode():
    assert display_domain("xn--bcher-kva.test") == "bücher.test"
    assert display_domain("example.com") == "example.com"
