"""Probe: every installed distribution, its version and where it came from.

Read from the installed metadata, never from a ``pip`` subprocess. Names are normalized (PEP 503:
lower case, runs of ``-_.`` become ``-``) so that a dotted path such as
``packages.ml-dtypes.version`` is unambiguous. Where a distribution has a ``direct_url.json``
(PEP 610) its provenance is kept: editable checkouts, VCS URLs and commits, local archives. When
one name is installed twice, the first on ``sys.path`` wins, as it does for ``import``.

Constraint: a fingerprint never holds a secret, so a provenance URL is recorded with its userinfo
and its tokens masked (``credentials``: ``https://host/[redacted]/simple``,
``?access_token=[redacted]``); installers write such URLs into ``direct_url.json`` as they got them.

Cost: the distributions are listed by ``dist_index`` (a directory listing and the header block of
each METADATA file), not by ``importlib.metadata``, which is imported only where ``dist_index``
cannot promise the same answer (``probe_complete`` is that way, kept as the reference).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from envaudit.fingerprint import dist_index
from envaudit.fingerprint.credentials import mask_url_credentials, mask_url_tokens
from envaudit.fingerprint.guard import field

# (Name, Version, read_text) of one installed distribution, in importlib.metadata's order.
_Dist = tuple[Any, Any, Callable[[str], "str | None"]]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def probe() -> dict[str, Any]:
    found = dist_index.scan()
    if found is None:
        return probe_complete()
    return _section((d.name, d.version, d.read_text) for d in found)


def probe_complete() -> dict[str, Any]:
    """The same section read through ``importlib.metadata`` (slower: it parses every METADATA
    file with the e-mail parser)."""
    from importlib import metadata

    # .get, not [ ]: the importlib_metadata backport (which Dask imports) adds a finder whose
    # distributions raise KeyError for a missing field where the standard library gives None.
    return _section(
        (d.metadata.get("Name"), d.metadata.get("Version"), d.read_text)
        for d in metadata.distributions()
    )


def _section(dists: Iterable[_Dist]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, version, read_text in dists:
        if not name:
            continue
        key = normalize(name)
        earlier = found.get(key)
        if earlier is not None:
            # A source checkout's egg-info shadows the editable install's dist-info: same
            # project, but only the dist-info knows where it came from.
            if "direct_url" not in earlier and earlier["version"] == version:
                provenance = field(_direct_url, read_text)
                if provenance is not None:
                    earlier["direct_url"] = provenance
            continue
        entry: dict[str, Any] = {"version": version}
        provenance = field(_direct_url, read_text)
        if provenance is not None:
            entry["direct_url"] = provenance
        found[key] = entry
    return dict(sorted(found.items()))


def _direct_url(read_text: Callable[[str], str | None]) -> dict[str, Any] | None:
    text = read_text("direct_url.json")
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
