"""The file system side of golden bundles: reading a file of one, partial folders, the swap into
place, recovery after a kill, and the one test of whether a folder is a bundle envaudit wrote.

Constraints the next editor must keep (envaudit often runs as root in CI, in folders strangers
can write to and on archives strangers made):
- Never delete or replace what envaudit did not write. A folder is ours only when its manifest
  lists every file in it and nothing else is there (but the marker below, which a write killed
  right after its swap leaves in the new bundle). Removal unlinks regular files of the names a
  bundle is made of, then removes the folder only if that emptied it, so anything that appears
  beside them in the meantime survives.
- Nothing is deleted or renamed through a symbolic link: folders are opened with ``O_NOFOLLOW``
  and everything inside them is unlinked or renamed relative to that descriptor, so a link
  swapped in between a check and its use redirects nothing.
- Recovery acts only on a folder envaudit made: named ``.<bundle>.partial-<pid>-*`` or
  ``.<bundle>.old-<pid>-*``, a real folder (not a link) that belongs to this user and holds the
  ``WORK_MARKER`` file written when it was made. Anything else named like one is left alone.
- A replaced bundle stays reachable at its path at every instant: the new folder and the old one
  are exchanged with one ``renameat2(RENAME_EXCHANGE)`` where the kernel and file system offer it.
  Elsewhere the old bundle is set aside and renamed back by the next envaudit command that touches
  the path, if the process died between the two renames.
- What envaudit creates has its own modes (folders 0755, files 0644, less the umask), never
  those of a folder it lands in; ``--force`` keeps the mode and group of the bundle it replaces
  only when that bundle belongs to this user, and never leaves it writable by everyone.
- A file of a bundle is read only if it is a regular file (no symlink out of the folder, no FIFO
  to block on) and no larger than the caller's limit.
Standard library only (ctypes for renameat2) and ``EnvauditError``.
"""

from __future__ import annotations

import contextlib
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
# The file in every folder envaudit makes beside a bundle (partial writes, a bundle set aside);
# its text is fixed so that a stray file of that name is not taken for it.
WORK_MARKER = ".envaudit-work"
_MARKER_TEXT = b"envaudit: a golden bundle write in progress (or killed)\n"
FOLDER_MODE = 0o755  # less the umask
FILE_MODE = 0o644  # less the umask
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # linux/fs.h
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)
_AT_FDCWD = -100
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
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
    extra = sorted(set(present) - {MANIFEST, WORK_MARKER, *files})
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        return f"it also holds {shown}, which its manifest does not list"
    odd = sorted(name for name, entry in present.items()
                 if not entry.is_file(follow_symlinks=False))
    if odd:
        return f"{', '.join(odd)} in it is not a regular file"
    return None


def make_partial(target: Path) -> Path:
    """A new ``.<name>.partial-<pid>-*`` folder beside ``target``, holding only the marker of
    envaudit's work, with envaudit's own folder mode (0755 less the umask: ``mkdtemp``'s 0700
    would make a shared bundle private, and a folder someone else made lends it nothing)."""
    _make_folders(target.parent)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-",
                                    dir=target.parent))
    _write_marker(partial)
    partial.chmod(FOLDER_MODE & ~_umask())
    return partial


def swap_into_place(partial: Path, target: Path, force: bool) -> None:
    """Move the finished ``partial`` folder to ``target``; with ``force``, replace the bundle
    there (only if it is ours). Raises ``OSError`` for file system failures and
    ``EnvauditError`` when something that must not be replaced appeared at ``target``."""
    _adopt_mode_and_group(partial, target)
    try:
        os.rename(partial, target)  # nothing there, or an empty folder
        _unmark(target)
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
        _unmark(target)
        remove_ours(partial)  # it now holds the previous bundle
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-",
                                  dir=target.parent))
    _write_marker(aside)  # before the bundle goes in: recovery needs it to put it back
    os.rename(target, aside / "bundle")
    try:
        os.rename(partial, target)
    except BaseException:
        os.rename(aside / "bundle", target)  # put the previous bundle back
        remove_ours(aside)
        raise
    _unmark(target)
    remove_ours(aside / "bundle")
    remove_ours(aside)


def remove_ours(folder: Path) -> None:
    """Remove the files a bundle is made of from ``folder`` (a folder this process made, or a
    bundle ``not_ours`` accepted), then the folder if that emptied it. A symbolic link at
    ``folder`` is never followed. Never raises: what cannot be removed stays."""
    try:
        parent = os.open(folder.parent, _DIRECTORY)
    except OSError:
        return
    try:
        _remove_folder(parent, folder.name)
    finally:
        os.close(parent)


def recover(target: Path) -> None:
    """Undo what a killed writer left beside ``target``: put a bundle it had set aside back when
    nothing took its place, and remove its partial folders. Only folders this user owns that hold
    envaudit's marker are touched, through file descriptors that never follow a link, so a folder
    named like ours (planted, or unpacked from an archive) neither moves nor deletes anything
    elsewhere. Best effort and silent; a writer that is still alive is left alone."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(partial|old)-(\d+)-")
    try:
        parent = os.open(target.parent, _DIRECTORY)
    except OSError:
        return
    try:
        for name in os.listdir(parent):
            match = pattern.match(name)
            if not match or _alive(int(match.group(2))):
                continue
            folder = _open_ours(parent, name)
            if folder is None:
                continue
            try:
                if match.group(1) == "old" and not _put_back(folder, parent, target.name):
                    if not _exists(parent, target.name):
                        continue  # it could not be moved back: everything stays
                    _remove_folder(folder, "bundle")  # a newer bundle took its place
                _remove_files(folder)
            finally:
                os.close(folder)
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=parent)
    finally:
        os.close(parent)


def _open_ours(parent: int, name: str) -> int | None:
    """A descriptor of the real folder ``name`` in ``parent`` when it belongs to this user and
    holds envaudit's marker, else None (a link, a file, someone else's folder)."""
    try:
        fd = os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:
        return None
    if os.fstat(fd).st_uid == os.geteuid() and _has_marker(fd):
        return fd
    os.close(fd)
    return None


def _put_back(aside: int, parent: int, name: str) -> bool:
    """Rename the real folder ``bundle`` in ``aside`` to ``name`` in ``parent`` unless something
    is there; whether it moved."""
    try:
        inner = os.stat("bundle", dir_fd=aside, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISDIR(inner.st_mode):
        return False
    return _rename_no_replace(aside, "bundle", parent, name)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


def _remove_folder(parent: int, name: str) -> None:
    try:
        fd = os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:
        return
    try:
        _remove_files(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=parent)


def _remove_files(folder: int) -> None:
    """Unlink the regular files named like a bundle's (and the marker) in the open ``folder``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name not in (MANIFEST, WORK_MARKER) and not name.endswith(".npz"):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=folder)


def _write_marker(folder: Path) -> None:
    fd = os.open(folder / WORK_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, _MARKER_TEXT)
    finally:
        os.close(fd)


def _unmark(folder: Path) -> None:
    """Remove the marker from a partial folder that just became the bundle (kept until then, so
    that a partial folder of a killed write is always recognised as ours)."""
    try:
        fd = os.open(folder, _DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if _has_marker(fd):
            os.unlink(WORK_MARKER, dir_fd=fd)
    except OSError:
        pass  # a bundle that keeps its marker is still a whole bundle (``not_ours`` allows it)
    finally:
        os.close(fd)


def _has_marker(folder: int) -> bool:
    try:
        fd = os.open(WORK_MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=folder)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.read(fd, len(_MARKER_TEXT) + 1) == _MARKER_TEXT
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents with envaudit's folder mode (``Path.mkdir``
    gives parents the umask's mode, 0777 under umask 0)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if os.path.isdir(candidate):
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            os.mkdir(candidate, FOLDER_MODE)
        except FileExistsError:
            if not os.path.isdir(candidate):  # a file in the way, as Path.mkdir says
                raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _adopt_mode_and_group(partial: Path, target: Path) -> None:
    """Give the new bundle the folder mode and group of the bundle it replaces (a shared bundle
    stays shared, a private one private) when that bundle belongs to this user, never writable
    by everyone. Anything else at ``target`` (an empty folder someone else made) lends nothing."""
    try:
        info = os.stat(target, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or not_ours(target):
        return
    os.chmod(partial, stat.S_IMODE(info.st_mode) & ~stat.S_IWOTH)
    try:
        os.chown(partial, -1, info.st_gid)
    except PermissionError:
        pass  # not a member of that group: the folder keeps ours


def _libc_renameat2():
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    return renameat2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the kernel or file system cannot."""
    renameat2 = _libc_renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(b))


def _rename_no_replace(src_dir: int, src: str, dst_dir: int, dst: str) -> bool:
    """Rename ``src`` to ``dst`` (names in open folders) only if nothing is at ``dst``; whether
    it moved. Atomic where the kernel offers ``RENAME_NOREPLACE``."""
    renameat2 = _libc_renameat2()
    if renameat2 is not None:
        if renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst),
                     _RENAME_NOREPLACE) == 0:
            return True
        if ctypes.get_errno() not in _UNSUPPORTED:
            return False
    if _exists(dst_dir, dst):
        return False
    try:
        os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
    except OSError:
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
