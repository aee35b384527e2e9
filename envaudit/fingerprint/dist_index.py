"""The installed distributions, found and named the way ``importlib.metadata`` finds them, at a
fraction of its cost.

``importlib.metadata`` costs about 40 ms to import (it brings the ``email`` package) and parses
every METADATA file with the e-mail parser, twice when both name and version are asked: most of
what ``envaudit fingerprint`` used to spend. A fingerprint needs two header fields, so this module
lists the metadata folders on ``sys.path`` itself (the same folders, in the same order) and reads
``Name`` and ``Version`` from the header block of each METADATA file.

Constraint the next editor must keep: the answer is the one ``importlib.metadata`` gives, or
``None``. Whatever this reader does not reproduce exactly (a zip file on ``sys.path``, a finder
other than the path finder that lists distributions, a folder without metadata, a ``From `` line,
a folded ``Name`` or ``Version`` header, a malformed header) makes ``scan()`` answer ``None``, and
the caller asks ``importlib.metadata`` instead. ``tests/test_fingerprint_fast.py`` holds the two
answers equal on a real environment.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# A header line as the e-mail parser's feedparser recognizes one (``email.feedparser.headerRE``).
_HEADER_LINE = re.compile(r"[\041-\071\073-\176]*:|[\t ]")
_NAME_SEPARATORS = re.compile(r"[-_.]+")
_WANTED = ("name", "version")


class NotExact(Exception):
    """This reader cannot promise importlib.metadata's answer; ask importlib.metadata."""


@dataclass(frozen=True)
class InstalledDist:
    """One metadata folder (or old-style egg-info file): its ``Name`` and ``Version`` fields."""

    path: Path
    name: str | None
    version: str | None

    def read_text(self, filename: str) -> str | None:
        """What ``importlib.metadata.PathDistribution.read_text`` returns for ``filename``."""
        return _read_text(self.path / filename)


def scan() -> list[InstalledDist] | None:
    """Every distribution ``importlib.metadata.distributions()`` lists, in its order; ``None``
    where that order or those fields cannot be reproduced exactly."""
    try:
        return [_read_dist(path) for path in _metadata_paths()]
    except NotExact:
        return None


def _metadata_paths() -> list[Path]:
    finders = [f for f in sys.meta_path if getattr(f, "find_distributions", None)]
    if any(f is not importlib.machinery.PathFinder for f in finders):
        raise NotExact("a finder other than the path finder lists distributions")
    if not finders:
        return []
    found: list[Path] = []
    for entry in sys.path:
        found.extend(_folder_lookup(entry))
    return found


def _folder_lookup(entry: str) -> list[Path]:
    """The metadata paths of one ``sys.path`` entry, grouped by their folder's normalized name
    (first seen first, then listing order), as ``importlib.metadata``'s ``Lookup`` yields them."""
    root = entry or "."
    try:
        children = os.listdir(root)
    except NotADirectoryError:
        raise NotExact(f"{entry} is a file (a zip archive is read by importlib.metadata)") from None
    except OSError:
        return []
    base = os.path.basename(entry).lower()
    infos: dict[str, list[Path]] = {}
    eggs: dict[str, list[Path]] = {}
    for child in children:
        low = child.lower()
        if low.endswith((".dist-info", ".egg-info")):
            name = low.rpartition(".")[0].partition("-")[0]
            key = _NAME_SEPARATORS.sub("-", name).lower().replace("-", "_")
            infos.setdefault(key, []).append(Path(entry, child))
        elif base.endswith(".egg") and low == "egg-info":
            key = base.rpartition(".")[0].partition("-")[0].lower().replace("-", "_")
            eggs.setdefault(key, []).append(Path(entry, child))
    return [p for paths in (*infos.values(), *eggs.values()) for p in paths]


def _read_text(path: Path) -> str | None:
    try:
        # Text mode, as importlib.metadata reads it: universal newlines, strict UTF-8.
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _read_dist(path: Path) -> InstalledDist:
    text = _read_text(path / "METADATA") or _read_text(path / "PKG-INFO") or _read_text(path)
    if not text:
        raise NotExact(f"no metadata in {path}")
    fields = header_fields(text)
    return InstalledDist(path=path, name=fields.get("name"), version=fields.get("version"))


def header_fields(text: str) -> dict[str, str]:
    """``Name`` and ``Version`` (first occurrence each) of a metadata text's header block, as
    ``email.message_from_string(text)[...]`` returns them with the default policy.

    Raises ``NotExact`` for what the e-mail parser treats specially and this reader does not.
    ``text`` comes from text-mode reading, so its only line break is ``\\n``.
    """
    fields: dict[str, str] = {}
    folds_wanted = False  # a continuation line now would fold a wanted field's value
    # An empty line ends the header block, so nothing after the first one is ever read.
    end = text.find("\n\n")
    for line in (text if end < 0 else text[:end]).split("\n"):
        if len(fields) == len(_WANTED) and not folds_wanted:
            break  # both read, neither folded: later lines cannot change them
        if line.startswith("From "):
            raise NotExact("a 'From ' line in a metadata header")
        if not _HEADER_LINE.match(line):
            break  # the first line that is no header line ends the header block
        if line[0] in " \t":
            if folds_wanted:
                raise NotExact("a folded Name or Version header")
            continue
        colon = line.index(":")
        if colon == 0:
            raise NotExact("a metadata header line without a name")
        key = line[:colon].lower()
        folds_wanted = key in _WANTED and key not in fields
        if folds_wanted:
            fields[key] = line[colon + 1:].lstrip(" \t")
    return fields
