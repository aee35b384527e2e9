"""The cache of converted models (TFLite flatbuffers, ONNX models), one folder per kind.

``$XDG_CACHE_HOME/envaudit/<kind>`` (``~/.cache/envaudit/<kind>`` when unset or relative) holds
``<key>.<suffix>`` (the converted model) and ``<key>.json`` (what is known about it, its SHA-256
first). The caller's key must name everything the conversion depends on (the model's bytes, the
part converted, its input shapes, the options and the converter's version): an entry is only ever
read back for the same conversion, never matched loosely.

Trust: the folder is the user's own. An entry is used only when the folder and everything above
it belongs to this user and nobody else can write it (``environments.cache.distrust``), neither
file is a link, the model is no larger than the caller's limit and its SHA-256 is the one
recorded beside it; otherwise the model is converted again. Entries are written atomically (a
temporary file renamed into place), and a cache that cannot be written only costs the next run
its conversion.

Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def root(kind: str) -> Path:
    """``$XDG_CACHE_HOME/envaudit/<kind>`` (``~/.cache/envaudit/<kind>``)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return cache / "envaudit" / kind


def load(kind: str, key: str, suffix: str, limit: int) -> tuple[bytes, dict[str, Any]] | None:
    """The model cached under ``key`` and what is recorded about it, when it can be trusted."""
    from envaudit.environments.cache import distrust

    folder = root(kind)
    model, about_file = folder / f"{key}.{suffix}", folder / f"{key}.json"
    try:
        if distrust(folder) is not None or model.is_symlink() or about_file.is_symlink():
            return None
        about = json.loads(about_file.read_text())
        if model.stat().st_size > limit:
            return None
        data = model.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(about, dict) or about.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return data, about


def store(kind: str, key: str, suffix: str, data: bytes, about: Mapping[str, Any]) -> None:
    """Keep ``data`` under ``key`` with ``about`` (its SHA-256 is added), atomically."""
    from envaudit.environments.cache import distrust

    folder = root(kind)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if distrust(folder) is not None:
            return
        _atomic(folder / f"{key}.{suffix}", data)
        record = {"sha256": hashlib.sha256(data).hexdigest(), **about}
        _atomic(folder / f"{key}.json", json.dumps(record).encode())


def _atomic(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(prefix=".part-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
