"""The file system side of golden bundles: reading a file of one, partial folders, the swap into
place, recovery after a kill, and the one test of whether a folder is a bundle envaudit wrote.

Constraints the next editor must keep (envaudit often runs as root in CI):
- Never delete or replace what envaudit did not write. A folder is ours only when its manifest
  lists every file in it and nothing else is there. Removal unlinks regular files of the names a
  bundle is made of, then removes the folder only if that emptied it, so anything that appears
  beside them in the meantime survives.
- A replaced bundle stays reachable at its path at every instant: the new folder and the old one
  are exchanged with one ``renameat2(RENAME_EXCHANGE)`` where the kernel and file system offer it.
  Elsewhere the old bundle is set aside and renamed back by the next envaudit command that touches
  the path, if the process died between the two renames.
- The replacement keeps the replaced folder's mode and group.
- A file of a bundle is read only if it is a regular file (no symlink out of the folder, no FIFO
  to block on) and no larger than the caller's limit.
Standard library only (ctypes for renameat2) and ``EnvauditError``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path

from envaudit.errors import EnvauditError

MANIFEST = "manifest.json"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_MAX_MANIFEST_BYTES = 64 << 20
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else OSError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link; a bundle holds plain files only",
                          str(path)) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"it is {info.st_size} bytes, more than the {limit}"
                          " envaudit reads", str(path))
        return handle.read(limit + 1)[:limit]


def not_ours(folder: Path) -> str | None:
    """Why ``folder`` is not exactly a bundle envaudit wrote, or None when it is."""
    if folder.is_symlink():
        return "it is a symbolic link"
    if not folder.is_dir():
        return "it is a file"
    try:
        manifest = json.loads(read_regular(folder / MANIFEST, _MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        return f"it has no {MANIFEST}"
    except (OSError, ValueError, RecursionError):
        return (f"its {MANIFEST} is unreadable, so envaudit cannot tell that it wrote this folder;"
                " if it is a broken bundle, delete it yourself")
    if not isinstance(manifest, dict) or not str(manifest.get("schema")).startswith(
            "envaudit.golden/"):
        return f"its {MANIFEST} is not an envaudit golden manifest"
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(n, str) and _PLAIN_NAME.fullmatch(n) for n in files):
        return "its manifest does not list its files"
    present = {entry.name: entry for entry in os.scandir(folder)}
    extra = sorted(set(present) - {MANIFEST, *files})
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        return f"it also holds {shown}, which its manifest does not list"
    odd = sorted(name for name, entry in present.items()
                 if not entry.is_file(follow_symlinks=False))
    if odd:
        return f"{', '.join(odd)} in it is not a regular file"
    return None


def make_partial(target: Path) -> Path:
    """A new, empty ``.<name>.partial-<pid>-*`` folder beside ``target``, with the umask's mode
    (``mkdtemp``'s 0700 would make a shared bundle private)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-",
                                    dir=target.parent))
    partial.chmod(0o777 & ~_umask())
    return partial


def swap_into_place(partial: Path, target: Path, force: bool) -> None:
    """Move the finished ``partial`` folder to ``target``; with ``force``, replace the bundle
    there (only if it is ours). Raises ``OSError`` for file system failures and
    ``EnvauditError`` when something that must not be replaced appeared at ``target``."""
    _adopt_mode_and_group(partial, target)
    try:
        os.rename(partial, target)  # nothing there, or an empty folder
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
    problem = not_ours(target)
    if problem:
        raise EnvauditError(f"{target} is not an envaudit bundle ({problem}); choose another"
                            " path (envaudit never replaces what it did not write)")
    if not force:
        raise EnvauditError(f"golden bundle {target} was written by another process while this"
                            " record ran; it was kept and this run's bundle discarded; pass"
                            " --force to replace it")
    if _exchange(partial, target):
        remove_ours(partial)  # it now holds the previous bundle
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-",
                                  dir=target.parent))
    os.rename(target, aside / "bundle")
    try:
        os.rename(partial, target)
    except BaseException:
        os.rename(aside / "bundle", target)  # put the previous bundle back
        raise
    remove_ours(aside / "bundle")
    remove_ours(aside)


def remove_ours(folder: Path) -> None:
    """Remove the files a bundle is made of from ``folder``, then the folder if that emptied it.
    Never raises: what cannot be removed stays."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and (
                entry.name == MANIFEST or entry.name.endswith(".npz")):
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def recover(target: Path) -> None:
    """Undo what a killed writer left beside ``target``: put a bundle it had set aside back when
    nothing took its place, and remove its partial folders. Best effort and silent: a folder
    this process may not write is left as it is, and a writer that is still alive is left alone.
    """
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(partial|old)-(\d+)-")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or _alive(int(match.group(2))):
            continue
        folder = Path(entry.path)
        if match.group(1) == "old":
            inner = folder / "bundle"
            try:
                if inner.is_dir() and not os.path.lexists(target):
                    os.rename(inner, target)
            except OSError:
                continue
            remove_ours(inner)
        remove_ours(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _adopt_mode_and_group(partial: Path, target: Path) -> None:
    """Give the new bundle the folder mode and group of the one it replaces (a shared bundle
    stays shared, a private one private)."""
    try:
        info = os.stat(target, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    os.chmod(partial, stat.S_IMODE(info.st_mode))
    try:
        os.chown(partial, -1, info.st_gid)
    except PermissionError:
        pass  # not a member of that group: the folder keeps ours


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the kernel or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
