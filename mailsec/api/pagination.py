"""The API's pagination: limit and offset, bounded."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_LIMIT = 1000
MAX_OFFSET = 10**12


class BoundedPagination(LimitOffsetPagination):
    """DRF's limit and offset with bounds: DRF's own passes any number to the database, and one
    beyond bigint (`?limit=99999999999999999999`, `?offset=...`) was a 500."""

    max_limit = MAX_LIMIT

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
