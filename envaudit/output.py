"""Writing a report to ``-o FILE`` without destroying what is already there.

A pipeline points ``-o`` at paths envaudit did not make: an existing report with tight
permissions, a symlink into a shared folder, a FIFO that a collector reads, ``/dev/null`` or
``/dev/stdout``. What is at the path decides how it is written:

- ``-``, ``/dev/stdout``, ``/dev/fd/1`` or ``/proc/self/fd/1``: this process's stdout, written
  through the descriptor it already has (never reopened, truncated or replaced), so
  ``>> build.log`` appends and ``| cat`` reads it;
- nothing: a new regular file, written atomically, with the mode the umask gives;
- a regular file: replaced atomically (a temporary file in the same folder, created with
  ``O_EXCL``, written, fsynced, renamed over it), keeping its mode and, where permitted, its owner
  and group, so a reader never sees half a report and a 0600 report never becomes 0644;
- a symlink: opened, never renamed over. The kernel follows it or refuses (its
  ``fs.protected_symlinks`` rule), and envaudit applies that same rule itself where the kernel
  does not: a link that another user owns in a sticky folder everyone can write, such as /tmp, is
  refused unless that user also owns the folder. The file it leads to is rewritten in place (its
  inode, mode and owner stay); a link to nothing is refused, as creating a file wherever a link
  points is how links are abused;
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
import sys
from pathlib import Path

from envaudit.errors import EnvauditError

# A few names are tried in case one is taken; O_EXCL makes a taken name an error, never a reuse.
_TEMP_NAME_TRIES = 8
# Names of this process's stdout: writing them must not truncate, replace or reopen it.
STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def is_stdout(path: str) -> bool:
    """Whether ``-o path`` means this process's stdout."""
    return path in STDOUT_NAMES


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as the module docstring describes, or raise
    ``EnvauditError`` with one line saying why not."""
    data = text.encode("utf-8", errors="replace")
    if is_stdout(path):
        _write_stdout(path, data)
        return
    given = Path(path)
    try:
        existing: os.stat_result | None = os.lstat(given)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise EnvauditError(_explain(path, exc)) from None
    mode = existing.st_mode if existing is not None else 0
    try:
        if existing is not None and stat.S_ISLNK(mode):
            _write_through_link(path, data, existing)
        elif existing is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            _write_through(given, data)
        elif existing is None or stat.S_ISREG(mode):
            _replace_atomically(given, data, existing)
        else:
            raise EnvauditError(_refusal(path, mode))
    except OSError as exc:
        raise EnvauditError(_explain(path, exc)) from None


def _write_stdout(path: str, data: bytes) -> None:
    # Descriptor 1 may belong to another file once stdout was closed at start ('>&-'), so only
    # the descriptor of a live sys.stdout is written.
    if sys.stdout is None:
        raise EnvauditError(f"-o {path} is stdout, which is closed; write to a file with -o FILE")
    try:
        sys.stdout.flush()
        _write_all(sys.stdout.fileno(), data)
    except BrokenPipeError:
        raise EnvauditError("the output was not fully written: the program reading stdout closed"
                            " it early (broken pipe); read all of it, or use -o FILE") from None
    except (OSError, ValueError) as exc:
        raise EnvauditError(f"the output was not fully written: cannot write to stdout ({exc});"
                            " write it to a file with -o FILE") from None


def _refusal(path: str, mode: int) -> str:
    if stat.S_ISDIR(mode):
        return f"-o {path} is a directory; give a file name"
    kind = "a socket" if stat.S_ISSOCK(mode) else (
        "a block device" if stat.S_ISBLK(mode) else "a special file")
    return (f"-o {path} is {kind}, which envaudit does not write to; give a regular file, a FIFO"
            " or a character device")


def _write_through_link(path: str, data: bytes, link: os.stat_result) -> None:
    """Open the symlink ``path`` (the kernel follows it) and rewrite what it leads to in place."""
    problem = _protected_link(path, link)
    if problem:
        raise EnvauditError(problem)
    # No O_CREAT: a link to nothing is refused, not made into a file. No O_TRUNC before the
    # kind is known: a block device must not be touched.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise EnvauditError(f"-o {path} is a symlink to {os.readlink(path)}, which does not"
                            " exist; create the file first or give the real path") from None
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise EnvauditError(f"-o {path} is a directory; give a file name") from None
        if exc.errno == errno.ENXIO:
            raise EnvauditError(_refusal(path, stat.S_IFSOCK)) from None
        if exc.errno == errno.EACCES and _kernel_protects_links():
            raise EnvauditError(f"cannot write {path}: the system refuses to follow this symlink"
                                " (fs.protected_symlinks); give the real path") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.ftruncate(fd, 0)
        elif not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise EnvauditError(_refusal(path, mode))
        _write_all(fd, data)
        if stat.S_ISREG(mode):
            os.fsync(fd)
    finally:
        os.close(fd)


def _protected_link(path: str, link: os.stat_result) -> str | None:
    """The kernel's ``protected_symlinks`` rule for the last link of ``path``: in a sticky folder
    that everyone can write, a link is followed only by its owner or when the folder's owner owns
    it. Why ``path`` breaks it, or None."""
    try:
        folder = os.stat(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if not shared or link.st_uid in (os.geteuid(), folder.st_uid):
        return None
    return (f"-o {path} is a symlink that another user (uid {link.st_uid}) made in a folder"
            " everyone can write; envaudit does not follow it; give the real path")


def _kernel_protects_links() -> bool:
    try:
        with open("/proc/sys/fs/protected_symlinks") as handle:
            return handle.read().strip() not in ("", "0")
    except OSError:
        return False


def _write_through(target: Path, data: bytes) -> None:
    # No O_CREAT and no O_TRUNC, and no link followed: if the path was swapped for something
    # else since it was examined, the open or fstat below sees it before a byte is written.
    fd = os.open(target, os.O_WRONLY | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC)
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
