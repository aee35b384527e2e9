"""The redaction salt: 32 random bytes per installation, readable by this user only.

GPU serials and UUIDs in shared output become ``redacted-<hash>``, a salted SHA-256 (``redact``),
so two reports from one machine still match and nobody else can reverse them. Serials are short
numbers: whoever knows the salt can hash every candidate and read a serial back. So the salt is
never derived from anything another user can read (``/etc/machine-id`` is readable by all and
often baked into images), and is stored as ``$XDG_CONFIG_HOME/envaudit/salt`` (default
``~/.config``): the folder is created 0700, the file 0600, written atomically, never replacing a
salt another process stored first.

An existing salt is used only when it is a regular file (not a link), owned by this user, that
nobody else can read or write, in a folder nobody else can write. Anything else is refused with
one line that says how to fix it: remove it and envaudit makes a new one. It is not tightened in
place, because a salt others could read or choose may already be known. Standard library only.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from envaudit.errors import EnvauditError

SALT_BYTES = 32
_FIX = "remove it (envaudit then makes a new one), or pass --no-redact"


def installation_salt(config_home: Path | None = None) -> bytes:
    """This installation's salt, made on first use (``config_home``: default from the
    environment). Raises EnvauditError (one line) when it cannot be read, trusted or stored."""
    folder = _config_home(config_home) / "envaudit"
    path = folder / "salt"
    _check_folder(folder)
    salt = _read(path)
    return salt if salt is not None else _create(folder, path)


def _config_home(config_home: Path | None) -> Path:
    if config_home is not None:
        return config_home
    xdg = os.environ.get("XDG_CONFIG_HOME")
    try:
        return Path(xdg) if xdg else Path.home() / ".config"
    except RuntimeError:  # no HOME and no passwd entry (a container's arbitrary uid)
        raise EnvauditError(
            "cannot find a folder for the redaction salt (neither XDG_CONFIG_HOME nor HOME is"
            " set); set XDG_CONFIG_HOME to a writable folder, or pass --no-redact"
        ) from None


def _check_folder(folder: Path) -> None:
    try:
        info = folder.stat()
    except OSError:  # absent, or unreadable: reading or storing the salt says why
        return
    # Whoever can write the folder can put their own salt in place of this one.
    if info.st_mode & 0o022 or info.st_uid != os.geteuid():
        raise EnvauditError(
            f"the folder of the redaction salt {folder} can be written by others (owner uid"
            f" {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}); remove it or"
            " chmod 700 it if it is yours, or pass --no-redact"
        )


def _read(path: Path) -> bytes | None:
    try:
        # O_NOFOLLOW: a link is refused, not followed; O_NONBLOCK: a FIFO does not hang the open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):  # none yet, or no folder to hold one
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EnvauditError(f"the redaction salt {path} is a symbolic link; {_FIX}") from None
        raise EnvauditError(f"cannot read the redaction salt {path} ({exc.strerror}); {_FIX}")\
            from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise EnvauditError(f"the redaction salt {path} is not a regular file; {_FIX}")
        if info.st_uid != os.geteuid():
            raise EnvauditError(f"the redaction salt {path} belongs to another user (uid"
                                f" {info.st_uid}); {_FIX}")
        if info.st_mode & 0o077:
            raise EnvauditError(f"the redaction salt {path} can be read or written by others"
                                f" (mode {stat.S_IMODE(info.st_mode):04o}); {_FIX}")
        text = handle.read(4 * SALT_BYTES)
    try:
        salt = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        salt = b""
    if len(salt) != SALT_BYTES:
        raise EnvauditError(f"the redaction salt {path} is not {2 * SALT_BYTES} hex digits;"
                            f" {_FIX}")
    return salt


def _create(folder: Path, path: Path) -> bytes:
    salt = secrets.token_bytes(SALT_BYTES)
    tmp = folder / f".salt.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        _check_folder(folder)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(salt.hex() + "\n")
        try:
            os.link(tmp, path)  # never replace a salt another process stored first
        except FileExistsError:
            stored = _read(path)
            salt = salt if stored is None else stored
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise EnvauditError(
            f"cannot store the redaction salt in {path} ({exc.strerror or exc}); set"
            " XDG_CONFIG_HOME to a writable folder, or pass --no-redact"
        ) from None
    return salt
