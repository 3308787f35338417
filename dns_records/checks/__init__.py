"""The registry of DNS checks: every module of this package that defines `CHECK` is one.

The runner, `check_domain`, the API and the UI iterate `all_checks()`; adding a check means
adding its module here, its template partial (`templates/dashboard/partials/checks/<name>.html`)
and its tests, nothing else. Pure: no Django, no network (see `base`).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from dns_records.checks.base import Check, CheckContext, DkimExpectation

__all__ = ["Check", "CheckContext", "DkimExpectation", "all_checks", "check_label", "check_names"]


@cache
def all_checks() -> tuple[Check[Any], ...]:
    """Every check, in the order pages list them."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_") or module.name == "base":
            continue
        check = getattr(importlib.import_module(f"{__name__}.{module.name}"), "CHECK", None)
        if isinstance(check, Check):
            found.append(check)
    names = [check.name for check in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two checks share a name: {sorted(names)}")
    return tuple(sorted(found, key=lambda check: (check.order, check.name)))


def check_names() -> list[str]:
    return [check.name for check in all_checks()]


def check_label(name: str) -> str:
    """The check's name for people; an unknown (retired) check keeps its stored name."""
    return next((check.label for check in all_checks() if check.name == name), name)
