"""The silent listener notices a connection: its 'no connection' assertions can fail."""

from __future__ import annotations

import socket


def test_listener_records_a_connection(silent_listener) -> None:
    with socket.create_connection((silent_listener.address, silent_listener.port), timeout=2):
        pass
    assert len(silent_listener.seen()) == 1
