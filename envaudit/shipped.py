"""Where the data shipped with envaudit lives: the workload assets and the reference bundle.

In a checkout (and an editable install) that is ``golden/`` beside the package. A wheel installs
the same folders as data files under ``<prefix>/share/envaudit/golden``. Standard library only.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1] / "golden"
INSTALLED = Path(sysconfig.get_path("data")) / "share" / "envaudit" / "golden"


def shipped(name: str) -> Path:
    """``golden/<name>`` of the checkout if there is one, else of the installed data; when
    neither exists, the checkout path (so an error names where it was expected)."""
    for base in (CHECKOUT, INSTALLED):
        if (base / name).is_dir():
            return base / name
    return CHECKOUT / name
