"""Which output formats each report has, and the module that writes each one.

The one list: argparse offers ``choices(report)`` and the CLI dispatches through ``writer``, so a
format is one module in ``render/`` with a ``render(...)`` function plus one line here. A report's
text format may take more (``verbose``); every other format takes the report alone.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

FORMATS: dict[str, dict[str, str]] = {
    "fingerprint": {"text": "fingerprint_text", "json": "fingerprint_json",
                    "md": "fingerprint_md"},
    "diff": {"text": "diff_text", "json": "diff_json"},
    "check": {"text": "check_text", "json": "check_json", "md": "check_md",
              "junit": "check_junit", "html": "check_html"},
    "fleet check": {"text": "fleet_text", "json": "fleet_json", "md": "fleet_md",
                    "junit": "fleet_junit", "html": "fleet_html"},
    # JUnit is a list of pass/fail tests: a check has them, a set of fingerprints does not.
    "fleet fingerprint": {"text": "fleet_text", "json": "fleet_json", "md": "fleet_md",
                          "html": "fleet_html"},
    # A history format renders the runs on record (render) and one run (render_run).
    "history": {"text": "history_text", "json": "history_json"},
    "config": {"text": "config_text", "json": "config_json"},
}


def choices(report: str) -> tuple[str, ...]:
    """The formats ``report`` can be written in, text first (the default)."""
    return tuple(FORMATS[report])


def writer(report: str, fmt: str) -> ModuleType:
    """The module that writes ``report`` in ``fmt`` (imported only when asked for: html brings
    matplotlib)."""
    return import_module(f"envaudit.render.{FORMATS[report][fmt]}")
