"""The folder of cached environments: where it is, which of its folders are ours and safe to run,
and removing them.

Standard library only. An environment is ``env_root()/<PackageSet.key()>/`` holding the marker file
``envaudit-env.json``, written last before the folder got its name. Builds happen under temporary
names ``.build-<host>-<pid>-<random>`` beside it; removal renames a folder to
``.trash-<host>-<pid>-<random>`` first, so that nobody sees it half deleted.

Constraint: envaudit never deletes what it did not write. Only a folder with the marker, or with one
of the temporary names above, is ever removed; a temporary folder only when the process that made
it is gone (known for this host only: the cache may be shared between machines), and only when
it belongs to this user.

Constraint: envaudit runs only what this user could have put there. ``env_folder`` hands out a
cached environment only when it, everything in it and every folder above it belong to this user
(or root) and nobody else can write them (``distrust``); a folder planted in a shared or restored
cache is left alone and the environment is built again in a private folder for this run. Builds
drop group and other write permission before their marker is written, so what envaudit builds
passes that test under any umask.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = "envaudit-env.json"
MARKER_SCHEMA = "envaudit.env/1"
_TEMP = re.compile(r"\.(?:build|trash)-([0-9a-f]{8})-(\d+)-[A-Za-z0-9_]+")
_WRITE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
# This process's private environment folder (made on first need, removed at exit), and the keys
# whose shared environment was already reported as not used.
_private: list[Path] = []
_noted: set[str] = set()


def env_root() -> Path:
    """``$XDG_CACHE_HOME/envaudit/envs`` (``~/.cache/envaudit/envs`` when unset or relative)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return cache / "envaudit" / "envs"


def env_folder(key: str, note: Callable[[str], None] = lambda _m: None) -> Path:
    """Where the environment of ``key`` is kept: ``env_root()/key`` when ``distrust`` finds
    nothing wrong with it, else a folder private to this process (``note`` is told why, once)."""
    shared = env_root() / key
    problem = distrust(shared)
    if problem is None:
        return shared
    if key not in _noted:
        _noted.add(key)
        note(f"not using the cached environment {key[:8]} ({problem}); building a private one"
             " for this run")
    if not _private:
        private = Path(tempfile.mkdtemp(prefix="envaudit-envs-"))
        atexit.register(shutil.rmtree, private, True)
        _private.append(private)
    return _private[0] / key


def distrust(folder: Path) -> str | None:
    """Why the environment at ``folder`` (built or not yet) must not be used, or None: it, an
    entry in it, or an existing folder above it belongs to another user or can be written by
    others (a folder above may be shared when it has the sticky bit, as /tmp has)."""
    absolute = Path(os.path.abspath(folder))
    for parent in absolute.parents:
        try:
            info = os.stat(parent)
        except FileNotFoundError:
            continue  # made by the build, as this user
        except OSError:
            return f"{parent} cannot be examined"
        problem = _foreign(parent, info, sticky_shared=True)
        if problem:
            return problem
    try:
        info = os.lstat(absolute)
    except FileNotFoundError:
        return None
    except OSError:
        return f"{absolute} cannot be examined"
    if stat.S_ISLNK(info.st_mode):
        return f"{absolute} is a symbolic link"
    problem = _foreign(absolute, info, sticky_shared=False)
    if problem:
        return problem
    for inside, dirs, files in os.walk(absolute):  # links are looked at, never followed
        for name in (*dirs, *files):
            path = Path(inside, name)
            try:
                problem = _foreign(path, os.lstat(path), sticky_shared=False)
            except OSError:
                problem = f"{path} cannot be examined"
            if problem:
                return problem
    return None


def _foreign(path: Path, info: os.stat_result, sticky_shared: bool) -> str | None:
    if info.st_uid not in (0, os.geteuid()):
        return f"{path} belongs to uid {info.st_uid}"
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & _WRITE_BY_OTHERS:
        return None
    if sticky_shared and stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
        return None
    if not info.st_mode & stat.S_IWOTH and _own_group(info.st_gid):
        return None  # group write for this user's private group (umask 002 distributions)
    return f"{path} is writable by other users"


def _own_group(gid: int) -> bool:
    """Whether ``gid`` is this user's own group with no other member listed."""
    import grp
    import pwd

    if gid != os.getegid():
        return False
    try:
        members = grp.getgrgid(gid).gr_mem
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return False
    return all(member == me for member in members)


def python_of(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, if it is one this module's builds write, in a folder that belongs to
    this user and that nobody else can write (the whole tree is ``distrust``'s to examine)."""
    path = folder / MARKER
    try:
        if path.is_symlink() or not path.is_file() or any(
                _foreign(item, item.lstat(), sticky_shared=False) for item in (folder, path)):
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
    _drop_shared_write(folder)
    (folder / MARKER).write_text(json.dumps(data, indent=2) + "\n")


def _drop_shared_write(folder: Path) -> None:
    """Take group and other write permission from a finished build (a umask of 002 grants it), so
    that ``distrust`` accepts what envaudit built."""
    for inside, dirs, files in os.walk(folder):
        for path in (Path(inside), *(Path(inside, name) for name in (*dirs, *files))):
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode) and info.st_mode & _WRITE_BY_OTHERS:
                os.chmod(path, stat.S_IMODE(info.st_mode) & ~_WRITE_BY_OTHERS)


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
        if temp is None or entry.is_symlink() or not entry.is_dir() or not _mine(entry):
            continue
        if temp.group(1) == _host_tag() and not _running_here(temp):
            discard(entry)


def clear_cache() -> tuple[int, int]:
    """Remove every environment envaudit built, and the leftovers of killed builds, that belong
    to this user:
    (environments removed, bytes freed). Bytes freed counts files with no other hard link: uv links
    installed files to its own cache, which keeps them. Folders without the marker or a temporary
    name of this module are left alone, as are builds still running on this host."""
    root = env_root()
    if not root.is_dir():
        return 0, 0
    removed = freed = 0
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not entry.is_dir() or not _mine(entry):
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


def _mine(folder: Path) -> bool:
    try:
        return folder.lstat().st_uid == os.geteuid()
    except OSError:
        return False


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
