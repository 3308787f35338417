"""Zone-file lines for suggested records, ready to paste into a zone. Pure."""

from __future__ import annotations

MAX_STRING = 255  # one character-string in a TXT record (RFC 1035 3.3)


def quote_txt(value: str) -> str:
    """The TXT value as zone-file character-strings: escaped, split every 255 bytes."""
    data = value.encode("utf-8")
    chunks = [data[i : i + MAX_STRING] for i in range(0, len(data), MAX_STRING)] or [b""]
    quoted = []
    for chunk in chunks:
        text = chunk.decode("utf-8", errors="replace").replace("\\", "\\\\").replace('"', '\\"')
        quoted.append(f'"{text}"')
    return " ".join(quoted)


def zone_line(name: str, rdtype: str, value: str, ttl: int = 3600) -> str:
    owner = name.rstrip(".") + "."
    rendered = quote_txt(value) if rdtype.upper() == "TXT" else value
    return f"{owner} {ttl} IN {rdtype.upper()} {rendered}"
