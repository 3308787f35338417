"""Template helpers of the dashboard."""

from __future__ import annotations

from typing import Any

from django import forms, template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

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
        details = getattr(result, "details", None) or {}
        # A check may suggest several records (every pending DKIM key); one is `suggested_record`.
        records = details.get("suggested_records") or [details.get("suggested_record")]
        for record in filter(None, records):
            lines.append(zone_line(record["name"], record["type"], record["value"]))
    return "\n".join(dict.fromkeys(lines))


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.simple_tag
def form_errors(form: forms.BaseForm) -> SafeString:
    """A form's messages as `<p class="error" role="alert">`: the form's own first, then one
    paragraph per field, whose id is the one its input's aria-describedby names."""
    own = [format_html('<p class="error" role="alert">{}</p>', e) for e in form.non_field_errors()]
    fields = [
        format_html(
            '<p class="error" role="alert" id="{}_error">{}</p>',
            field.auto_id,
            " ".join(str(error) for error in field.errors),
        )
        for field in form
        if field.errors
    ]
    return format_html_join("", "{}", ((part,) for part in [*own, *fields]))
