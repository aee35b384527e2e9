"""Probe: every installed distribution, its version and where it came from.

importlib.metadata only (never a ``pip`` subprocess). Names are normalized (PEP 503: lower case,
runs of ``-_.`` become ``-``) so that a dotted path such as ``packages.ml-dtypes.version`` is
unambiguous. Where a distribution has a ``direct_url.json`` (PEP 610) its provenance is kept:
editable checkouts, VCS URLs and commits, local archives. When one name is installed twice, the
first on ``sys.path`` wins, as it does for ``import``.

Constraint: a fingerprint never holds a secret, so a provenance URL is recorded with its userinfo
and its tokens masked (``credentials``: ``https://host/[redacted]/simple``,
``?access_token=[redacted]``); installers write such URLs into ``direct_url.json`` as they got them.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from typing import Any

from envaudit.fingerprint.credentials import mask_url_credentials, mask_url_tokens
from envaudit.fingerprint.guard import field


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def probe() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = normalize(name)
        earlier = found.get(key)
        if earlier is not None:
            # A source checkout's egg-info shadows the editable install's dist-info: same
            # project, but only the dist-info knows where it came from.
            if "direct_url" not in earlier and earlier["version"] == dist.version:
                provenance = field(_direct_url, dist)
                if provenance is not None:
                    earlier["direct_url"] = provenance
            continue
        entry: dict[str, Any] = {"version": dist.version}
        provenance = field(_direct_url, dist)
        if provenance is not None:
            entry["direct_url"] = provenance
        found[key] = entry
    return dict(sorted(found.items()))


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    info = json.loads(text)
    url = info.get("url")
    if isinstance(url, str):
        url = mask_url_tokens(mask_url_credentials(url))
    result: dict[str, Any] = {"url": url}
    if "dir_info" in info:
        result["editable"] = bool(info["dir_info"].get("editable", False))
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        result.update(
            vcs=vcs.get("vcs"),
            commit_id=vcs.get("commit_id"),
            requested_revision=vcs.get("requested_revision"),
        )
    if "archive_info" in info:
        result["archive_hash"] = info["archive_info"].get("hash") or info["archive_info"].get(
            "hashes"
        )
    return result
