"""A minimal MaxMind DB writer for tests: real .mmdb files the `maxminddb` reader opens."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

# Format 2.0: a search tree of 24-bit records, 16 zero bytes, the data section, the metadata.


def _control(type_number: int, size: int) -> bytes:
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, struct.pack(">H", size - 285)
    else:
        size_bits, extra = 31, struct.pack(">I", size - 65821)[1:]
    if type_number <= 7:
        return bytes([(type_number << 5) | size_bits]) + extra
    return bytes([size_bits, type_number - 7]) + extra


def _uint(type_number: int, value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_number, len(raw)) + raw


def encode(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, int):
        return _uint(6 if value < 2**32 else 9, value)
    if isinstance(value, dict):
        body = b"".join(encode(str(k)) + encode(v) for k, v in value.items())
        return _control(7, len(value)) + body
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(type(value))


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]], database_type: str) -> Path:
    """An IPv6-tree database (IPv4 networks under ::/96) mapping each network to its record."""
    data = b""
    nodes: list[list[Any]] = [[None, None]]
    for network, record in networks.items():
        net = ipaddress.ip_network(network)
        # An IPv4 network sits under ::/96, where its address is the low 32 bits.
        bits = int(net.network_address)
        length = net.prefixlen + (96 if net.version == 4 else 0)
        offset = len(data)
        data += encode(record)
        node = 0
        for depth in range(length):
            bit = (bits >> (127 - depth)) & 1
            if depth == length - 1:
                nodes[node][bit] = ("data", offset)
            else:
                child = nodes[node][bit]
                if child is None:
                    nodes.append([None, None])
                    child = ("node", len(nodes) - 1)
                    nodes[node][bit] = child
                node = child[1]
    count = len(nodes)

    def value(record: Any) -> int:
        if record is None:
            return count
        kind, number = record
        return int(number) if kind == "node" else count + 16 + int(number)

    tree = b"".join(
        value(left).to_bytes(3, "big") + value(right).to_bytes(3, "big") for left, right in nodes
    )
    metadata = {
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "build_epoch": 1767225600,
        "database_type": database_type,
        "description": {"en": f"{database_type} test data"},
        "ip_version": 6,
        "languages": ["en"],
        "node_count": count,
        "record_size": 24,
    }
    metadata_bytes = encode(metadata)
    # record_size and ip_version are uint16 in the format; the reader accepts either width.
    path.write_bytes(tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + metadata_bytes)
    return path
