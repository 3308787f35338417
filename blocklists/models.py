"""Blocklist zones, polled targets and their listings, and the local IP blacklist."""

from __future__ import annotations
