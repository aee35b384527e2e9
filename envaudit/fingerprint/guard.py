"""The probe guard: a probe that fails becomes a value, never an exception.

Every probe of the fingerprint runs through ``guarded`` (for a whole section) or ``field`` (for one
value inside a section). What cannot be read is recorded as ``{"available": false, "reason": ...}``
so that one broken source (a missing driver, an unreadable sysfs file, a package with corrupt
metadata) never fails the capture. Keep this module stdlib-only and free of side effects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def unavailable(reason: str) -> dict[str, Any]:
    """The value recorded for a section or field that could not be read, and why."""
    return {"available": False, "reason": reason}


def is_unavailable(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("available") is False and "reason" in value


def describe(exc: BaseException) -> str:
    """One line naming the failure: ``"FileNotFoundError: /proc/cpuinfo"``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}{where}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def guarded(probe: Callable[..., Any], *args: Any) -> Any:
    """``probe(*args)``, or ``unavailable(reason)`` when it raises anything."""
    try:
        return probe(*args)
    except Exception as exc:  # the whole point: a failure becomes a value
        return unavailable(describe(exc))


field = guarded  # reads better inside a section: ``"microcode": field(_microcode, info)``
