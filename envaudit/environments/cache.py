"""The folder of cached environments: where it is, which of its folders are ours, and removing them.

Standard library only. An environment is ``env_root()/<PackageSet.key()>/`` holding the marker file
``envaudit-env.json``, written last before the folder got its name. Builds happen under temporary
names ``.build-<host>-<pid>-<random>`` beside it; removal renames a folder to
``.trash-<host>-<pid>-<random>`` first, so that nobody sees it half deleted.

Constraint: envaudit never deletes what it did not write. Only a folder with the marker, or with one
of the temporary names above, is ever removed; a temporary folder only when the process that made
it is gone (known for this host only: the cache may be shared between machines).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

MARKER = "envaudit-env.json"
MARKER_SCHEMA = "envaudit.env/1"
_TEMP = re.compile(r"\.(?:build|trash)-([0-9a-f]{8})-(\d+)-[A-Za-z0-9_]+")


def env_root() -> Path:
    """``$XDG_CACHE_HOME/envaudit/envs`` (``~/.cache/envaudit/envs`` when unset or relative)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return cache / "envaudit" / "envs"


def python_of(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, if it is one this module's builds write."""
    path = folder / MARKER
    try:
        if path.is_symlink() or not path.is_file():
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != MARKER_SCHEMA \
            or not isinstance(data.get("site_packages"), str):
        return None
    return data


def write_marker(folder: Path, key: str, pins: list[list[str]], site_packages: str,
                 python: str, built_at: float) -> None:
    data = {"schema": MARKER_SCHEMA, "key": key, "pins": pins, "site_packages": site_packages,
            "python": python, "built_at": built_at}
    (folder / MARKER).write_text(json.dumps(data, indent=2) + "\n")


def new_build_folder(root: Path) -> Path:
    """An empty folder beside the environments, with a temporary name of this module."""
    return Path(tempfile.mkdtemp(prefix=f".build-{_host_tag()}-{os.getpid()}-", dir=root))


def discard(folder: Path) -> None:
    """Remove a folder this module made, renamed out of the way first."""
    trash = folder.parent / f".trash-{_host_tag()}-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def sweep(root: Path) -> None:
    """Remove this host's temporary folders whose builder is gone (a killed build's)."""
    for entry in root.iterdir():
        temp = _TEMP.fullmatch(entry.name)
        if temp is None or entry.is_symlink() or not entry.is_dir():
            continue
        if temp.group(1) == _host_tag() and not _running_here(temp):
            discard(entry)


def clear_cache() -> tuple[int, int]:
    """Remove every environment envaudit built, and the leftovers of killed builds:
    (environments removed, bytes freed). Bytes freed counts files with no other hard link: uv links
    installed files to its own cache, which keeps them. Folders without the marker or a temporary
    name of this module are left alone, as are builds still running on this host."""
    root = env_root()
    if not root.is_dir():
        return 0, 0
    removed = freed = 0
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            continue
        temp = _TEMP.fullmatch(entry.name)
        if temp is None and marker(entry) is None:
            continue
        if temp is not None and _running_here(temp):
            continue
        freed += _unshared_bytes(entry)
        discard(entry)
        removed += temp is None
    return removed, freed


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _running_here(temp: re.Match[str]) -> bool:
    """Whether a temporary folder's builder may still run (only this host's can be known)."""
    if temp.group(1) != _host_tag():
        return False
    try:
        os.kill(int(temp.group(2)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _unshared_bytes(folder: Path) -> int:
    total = 0
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            if info.st_nlink == 1:
                total += info.st_size
    return total
