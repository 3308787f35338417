"""API permissions: authenticated users, and token scope for unsafe methods."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from mailsec.authentication import request_token
from mailsec.models import TokenScope


class TokenScopePermission(BasePermission):
    """Any authenticated user may read; a read-scoped token may not change anything.

    Whether the user's role in the object's organisation allows a change is decided by the
    service the view calls, so the same rule holds for the UI and the API.
    """

    message = "This token is read-only."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        token = request_token(request)
        return token is None or token.scope == TokenScope.WRITE
