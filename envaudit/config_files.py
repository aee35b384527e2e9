"""Finding and reading the configuration file: ``envaudit.toml``, or ``[tool.envaudit]`` in
``pyproject.toml``.

The search starts in the current folder and goes up to the first folder that holds an
``envaudit.toml``, a ``pyproject.toml`` (configured or not) or a repository (``.git``, ``.hg``):
the project's root, as black finds it. Only that folder's files are read, and only one of them:
``envaudit.toml`` when it is there (the pyproject's table beside it is not read, never merged),
else the pyproject's ``[tool.envaudit]`` table. A configuration above a project is never reached,
so a project without one gets envaudit's defaults whatever lies above it.

Constraints the next editor must keep:
- A file is read within bounds (``untrusted.read_file``: a FIFO, a device or a huge file is
  refused) and parsed by the standard library's ``tomllib`` (``tomli`` on Python 3.10).
- A file another user could have put in the user's way is refused, not read: one every user can
  write, or one owned by another user in a folder every user can write (``/tmp``).
- Every failure is one ``EnvauditError`` line naming the file; nothing here prints.
- Standard library only; at most two files are read for one command.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envaudit.errors import EnvauditError
from envaudit.untrusted import Refused, read_file

ENVAUDIT_TOML = "envaudit.toml"
PYPROJECT = "pyproject.toml"
REPOSITORY_MARKERS = (".git", ".hg")
# A pyproject.toml of a large project is tens of kilobytes; a megabyte is far beyond any real one.
READ_LIMIT = 2**20


@dataclass(frozen=True)
class Source:
    """The file a configuration was read from."""

    path: Path  # absolute
    in_pyproject: bool  # the [tool.envaudit] table of a pyproject.toml

    @property
    def kind(self) -> str:
        return f"{PYPROJECT} [tool.envaudit]" if self.in_pyproject else ENVAUDIT_TOML

    @property
    def label(self) -> str:
        """How messages and 'envaudit config' name it: ``envaudit.toml (/abs/path)``."""
        return f"{self.kind} ({self.path})"


@dataclass(frozen=True)
class Found:
    """Where the search stopped and what it read there."""

    folder: Path | None  # the project's root; None: no marker up to the filesystem's root
    source: Source | None  # the file read; None: no configuration
    table: Mapping[str, Any] = field(default_factory=dict)  # its keys, as written
    passed_over: tuple[tuple[Path, str], ...] = ()  # files in the folder not read, and why


def search(start: Path) -> Found:
    """The configuration for a command run in ``start`` (see the module's docstring)."""
    start = Path(os.path.abspath(start))
    for folder in (start, *start.parents):
        own, pyproject = folder / ENVAUDIT_TOML, folder / PYPROJECT
        if own.exists():
            source = Source(own, in_pyproject=False)
            passed = ((pyproject, f"{ENVAUDIT_TOML} in the same folder wins"),) \
                if pyproject.exists() else ()
            return Found(folder, source, _document(source), passed)
        if pyproject.exists():
            source = Source(pyproject, in_pyproject=True)
            table = _pyproject_table(source)
            if table is None:
                return Found(folder, None, {}, ((pyproject, "has no [tool.envaudit] table"),))
            return Found(folder, source, table)
        if any((folder / marker).exists() for marker in REPOSITORY_MARKERS):
            return Found(folder, None)
    return Found(None, None)


def _pyproject_table(source: Source) -> Mapping[str, Any] | None:
    """The [tool.envaudit] table; None when the pyproject has none."""
    tool = _document(source).get("tool")
    if not isinstance(tool, dict) or "envaudit" not in tool:
        return None
    table = tool["envaudit"]
    if not isinstance(table, dict):
        raise EnvauditError(f"{source.label}: tool.envaudit must be a table of settings"
                            " ([tool.envaudit] followed by key = value lines)")
    return table


def _document(source: Source) -> dict[str, Any]:
    """The whole TOML document of ``source``, read within bounds."""
    toml = _toml_module(source)
    _refuse_if_planted(source)
    try:
        data = read_file(source.path, READ_LIMIT)
    except Refused as exc:
        raise EnvauditError(f"{source.path} {exc}; a configuration file is a small text"
                            " file") from None
    except OSError as exc:
        raise EnvauditError(f"cannot read {source.path}: {exc.strerror or exc}; check its"
                            " permissions") from None
    try:
        return toml.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise EnvauditError(f"{source.path} is not UTF-8 text, as TOML must be") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise EnvauditError(f"{source.path} is not valid TOML: nested too deep") from None
    except toml.TOMLDecodeError as exc:  # its message ends with "(at line L, column C)"
        raise EnvauditError(f"{source.path} is not valid TOML: {exc}") from None


def _toml_module(source: Source) -> Any:
    try:
        import tomllib  # Python 3.11 and later
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the same parser, as a package for Python 3.10
        except ModuleNotFoundError:
            raise EnvauditError(f"reading {source.path} needs Python 3.11 or the tomli package"
                                " on Python 3.10: pip install tomli") from None
    return tomllib


def _refuse_if_planted(source: Source) -> None:
    """Refuse a file another user could have put in the user's way (the module's docstring)."""
    try:
        info = source.path.stat()
        folder = source.path.parent.stat()
    except OSError:
        return  # reading it says why
    mode = stat.S_IMODE(info.st_mode)
    why = None
    if info.st_mode & stat.S_IWOTH:
        why = f"every user can write it (mode {mode:04o})"
    elif info.st_uid not in (0, os.geteuid()) and folder.st_mode & stat.S_IWOTH:
        why = (f"it belongs to another user (uid {info.st_uid}) in a folder every user can"
               " write")
    if why:
        raise EnvauditError(f"{source.label} is not read: {why}; remove it, or make it yours"
                            " and writable by you alone, or run envaudit in a folder with its"
                            f" own {ENVAUDIT_TOML} or {PYPROJECT}")
