"""Domain-name normalisation: text in, canonical ASCII (IDNA) name out. No network."""

from __future__ import annotations

import ipaddress
import re

import idna
from publicsuffixlist import PublicSuffixList

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_psl = PublicSuffixList()


class InvalidDomainName(ValueError):
    """The text is not a usable fully qualified domain name."""


def normalise_domain(text: str) -> str:
    """Lower-case ASCII form of a domain name, with internationalised labels as A-labels.

    Accepts `Example.COM.`, `bücher.example` or `xn--bcher-kva.example`; refuses IP addresses,
    single labels, empty labels and names longer than DNS allows.
    """
    name = text.strip().rstrip(".")
    if not name:
        raise InvalidDomainName("Enter a domain name.")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise InvalidDomainName("Enter a domain name, not an IP address.")
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidDomainName("Enter a fully qualified name such as example.org.")
    ascii_labels = []
    for label in labels:
        if not label:
            raise InvalidDomainName("The name has an empty label (two dots in a row).")
        if label.isascii():
            ascii_label = label.lower()
            if ascii_label.startswith("xn--"):
                try:
                    idna.decode(ascii_label)
                except idna.IDNAError as exc:
                    raise InvalidDomainName(f"{label!r} is not a valid IDNA label: {exc}") from None
        else:
            try:
                ascii_label = idna.encode(label, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise InvalidDomainName(f"{label!r} is not a valid label: {exc}") from None
        if not _LABEL.match(ascii_label):
            raise InvalidDomainName(
                f"{label!r} is not a valid label: letters, digits and inner hyphens, at most 63."
            )
        ascii_labels.append(ascii_label)
    if labels[-1].isdigit():
        raise InvalidDomainName("The top-level label cannot be all digits.")
    result = ".".join(ascii_labels)
    if len(result) > 253:
        raise InvalidDomainName("The name is longer than 253 characters.")
    return result


def display_domain(ascii_name: str) -> str:
    """Unicode form for people; falls back to the ASCII form when it cannot be decoded."""
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def organisational_domain(domain: str) -> str:
    """The registrable domain (RFC 7489 3.2), from the bundled public suffix list."""
    return _psl.privatesuffix(domain.lower().rstrip(".")) or domain.lower().rstrip(".")
