"""``envaudit config --format json``: the effective configuration as one clean JSON object.

``{"schema", "start", "root", "sources": [{path, kind, used, note}], "settings": {key: {"value",
"source"}}}``; a value is the key's value as the file would write it (null: none, the option's
default behaviour), a source is ``"default"`` or the file's label (``"envaudit.toml
(/abs/path)"``). Keys in the order ``docs/configuration.md`` lists them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from envaudit.plain import plain

if TYPE_CHECKING:
    from envaudit.config import Effective


SCHEMA = "envaudit.config/1"


def render(effective: Effective) -> str:
    document = {
        "schema": SCHEMA,
        "start": effective.start,
        "root": effective.root,
        "sources": plain(effective.sources),
        "settings": {s.key: {"value": plain(s.value), "source": s.source}
                     for s in effective.settings},
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"
