"""Template helpers of the dashboard."""

from __future__ import annotations

from typing import Any

from django import template

from dns_records.zonefile import zone_line

register = template.Library()


@register.filter
def change_fields(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """Field-by-field rows of an audit entry: (field, before, after), only the fields it names."""
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    keys = list(dict.fromkeys([*before, *after]))
    return [(key, before.get(key), after.get(key)) for key in keys]


@register.filter
def zone_lines(results: Any) -> str:
    """Every suggested record of a domain's current checks, as zone-file lines."""
    lines = []
    for result in results:
        record = (getattr(result, "details", None) or {}).get("suggested_record")
        if record:
            lines.append(zone_line(record["name"], record["type"], record["value"]))
    return "\n".join(lines)


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None
