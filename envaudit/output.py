"""Writing a report to ``-o FILE`` without destroying what is already there.

A pipeline points ``-o`` at paths envaudit did not make: an existing report with tight
permissions, a symlink into a shared folder, a FIFO that a collector reads, ``/dev/null`` or
``/dev/stdout``. What is at the path decides how it is written:

- nothing: a new regular file, written atomically, with the mode the umask gives;
- a regular file: replaced atomically (a temporary file in the same folder, created with
  ``O_EXCL``, written, fsynced, renamed over it), keeping its mode and, where permitted, its owner
  and group, so a reader never sees half a report and a 0600 report never becomes 0644;
- a symlink: followed; its final target is written as above and the link stays a link. A link to
  nothing is refused: creating a file wherever a link points is how links are abused;
- a character device or a FIFO: opened and written through; never replaced, never unlinked;
- anything else (directory, socket, block device): refused.

The temporary file is removed in ``finally``, so a write error, a full disk or Ctrl-C leaves the
previous file as it was and no ``.tmp`` beside it. Every failure a user can fix is an
``EnvauditError`` of one line. Text that cannot be UTF-8 (a lone surrogate from a non-UTF-8 path)
is replaced rather than refused: a report with one odd character beats no report.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from envaudit.errors import EnvauditError

# A few names are tried in case one is taken; O_EXCL makes a taken name an error, never a reuse.
_TEMP_NAME_TRIES = 8


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as the module docstring describes, or raise
    ``EnvauditError`` with one line saying why not."""
    data = text.encode("utf-8", errors="replace")
    target, existing = _resolve(path)
    try:
        if existing is not None and (stat.S_ISCHR(existing.st_mode)
                                     or stat.S_ISFIFO(existing.st_mode)):
            _write_through(target, data)
        else:
            _replace_atomically(target, data, existing)
    except OSError as exc:
        raise EnvauditError(_explain(path, exc)) from None


def _resolve(path: str) -> tuple[Path, os.stat_result | None]:
    """The file to write (symlinks followed) and its status, or None when it does not exist."""
    given = Path(path)
    try:
        link = os.lstat(given)
    except FileNotFoundError:
        return given, None
    except OSError as exc:
        raise EnvauditError(_explain(path, exc)) from None
    target = Path(os.path.realpath(given)) if stat.S_ISLNK(link.st_mode) else given
    try:
        status = os.stat(target)
    except FileNotFoundError:
        raise EnvauditError(
            f"-o {path} is a symlink to {target}, which does not exist; create the file first "
            "or give the real path"
        ) from None
    except OSError as exc:
        raise EnvauditError(_explain(path, exc)) from None
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise EnvauditError(f"-o {path} is a directory; give a file name")
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        kind = "a socket" if stat.S_ISSOCK(mode) else (
            "a block device" if stat.S_ISBLK(mode) else "a special file")
        raise EnvauditError(f"-o {path} is {kind}, which envaudit does not write to; "
                            "give a regular file, a FIFO or a character device")
    return target, status


def _write_through(target: Path, data: bytes) -> None:
    # No O_CREAT and no O_TRUNC: if the path was swapped for something else since it was
    # examined, fstat below sees it before a byte is written.
    fd = os.open(target, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise EnvauditError(f"-o {target} changed while envaudit was writing it; run again")
        _write_all(fd, data)
    finally:
        os.close(fd)


def _replace_atomically(target: Path, data: bytes, existing: os.stat_result | None) -> None:
    # A new file gets 0666 less the umask, as a shell redirect would; an existing one starts
    # private and gets its own mode back once its owner is set (chown may clear set-id bits).
    fd, temp = _create_temp(target, 0o666 if existing is None else 0o600)
    renamed = False
    try:
        if existing is not None:
            if (existing.st_uid, existing.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, existing.st_uid, existing.st_gid)
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temp, target)
        renamed = True
        _sync_folder(target.parent)
    finally:
        if fd >= 0:
            os.close(fd)
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _create_temp(target: Path, mode: int) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(_TEMP_NAME_TRIES):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, mode), temp
        except FileExistsError:
            if attempt == _TEMP_NAME_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_folder(folder: Path) -> None:
    # The rename is durable only once the folder is; a folder that cannot be opened or synced
    # (some network file systems) still holds the complete new file.
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _explain(path: str, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write {path}: {exc.strerror}; the previous file, if any, was left as "
                "it was; free some space or choose another path")
    return f"cannot write {path}: {exc.strerror or exc}; choose a writable path"
