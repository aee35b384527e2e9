"""envaudit's own copy inside a built environment. Standard library only.

The child ``python -m envaudit.workload`` must run this envaudit's workload, never one from a
package index: the running ``envaudit`` package folder is copied into the environment's
site-packages. A copy works the same for an editable checkout and for a wheel install (installing
the checkout would need a build backend, and a wheel install has no checkout to install). The
workload's data is not copied: the child reads this process's verified assets through
``ENVAUDIT_ASSETS``. Copies are compared by a digest of their files, compiled caches left out, so
a cached environment is refreshed when envaudit changes and never runs an older workload.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def own_package() -> Path:
    """This envaudit's package folder (the one this module is part of)."""
    return Path(__file__).resolve().parent.parent


def place(site: Path) -> None:
    """Copy this envaudit into ``site``, replacing an older copy (two renames; a concurrent
    refresh that placed the same files is fine)."""
    source = own_package()
    staging = site / f".envaudit-{os.getpid()}-{os.urandom(4).hex()}"
    for rel in _files(source):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, staging / rel)
    target = site / "envaudit"
    old = site / f".envaudit-old-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        if target.exists():
            target.rename(old)
        staging.rename(target)
    except OSError:
        if differs(site):
            raise
    finally:
        for leftover in (staging, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def differs(site: Path) -> str | None:
    """Why the copy in ``site`` is not this envaudit, or None when it is."""
    if _digest(site / "envaudit") != _digest(own_package()):
        return "its copy of envaudit differs from the envaudit running here"
    return None


def digest() -> str:
    """SHA-256 of the envaudit running here (its files, without compiled caches): what a result
    computed by a copy of it depends on."""
    return _digest(own_package())


def _files(package: Path) -> list[Path]:
    """The package's files as relative paths; compiled caches are not part of it."""
    return sorted(p.relative_to(package) for p in package.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def _digest(package: Path) -> str:
    digest = hashlib.sha256()
    if package.is_dir():
        for rel in _files(package):
            digest.update(str(rel).encode() + b"\0" + (package / rel).read_bytes() + b"\0")
    return digest.hexdigest()
