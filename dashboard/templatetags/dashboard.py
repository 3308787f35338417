"""Template helpers of the dashboard."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def change_fields(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """Field-by-field rows of an audit entry: (field, before, after), only the fields it names."""
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    keys = list(dict.fromkeys([*before, *after]))
    return [(key, before.get(key), after.get(key)) for key in keys]
