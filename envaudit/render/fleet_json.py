"""``envaudit fleet check|fingerprint --format json``: ``FleetReport.to_dict()`` as strict JSON
(schema ``envaudit.fleet/1``, docs/json.md); values made valid JSON as for the check."""

from __future__ import annotations

import json

from envaudit.fleet.report import FleetReport
from envaudit.render.check_json import plain


def render(report: FleetReport) -> str:
    return json.dumps(plain(report.to_dict()), indent=2, allow_nan=False) + "\n"
