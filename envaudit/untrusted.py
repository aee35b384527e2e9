"""Reading what someone else wrote, within bounds: the one reader of strangers' files and JSON.

A fingerprint file, a bundle's manifest or a row of the history may have been made by anyone, and
envaudit reads them as root in CI. Reading one must end promptly, in bounded memory, with a value
or one line of refusal, whatever the path names: a FIFO (``open`` or ``read`` would block
forever), a device such as ``/dev/zero`` (a read that never ends), a folder, a file of gigabytes,
or JSON nested so deep that the parser, or any later walk over the tree, exhausts Python's
recursion limit (an "internal error" instead of a message).

Constraints the next editor must keep:
- Standard library only; no printing. ``Refused`` (a ``ValueError``) carries a predicate that the
  caller puts after the name of what it read ("is a FIFO, not a regular file"), so every caller
  words its own fix; ``OSError`` from the file system (missing file, permission) passes through.
- ``read_file`` follows symbolic links (the kernel resolves them) and then judges what it opened,
  by ``fstat`` on the open descriptor: a check by path could be raced by a swap.
- The nesting depth is measured on the text, iteratively, *before* ``json.loads`` builds anything.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

# The deepest JSON envaudit reads from anyone. A fingerprint is 6 levels deep, a manifest 7 (it
# holds a fingerprint), a node's check answer about 6; 64 leaves room for growth and stays far
# below the ~1,000 frames at which Python's parser and encoder give up.
MAX_DEPTH = 64
# A string token, quotes and escapes included (unrolled, so it is linear in the text's length),
# or one bracket. Brackets inside strings are skipped with their string.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]', re.DOTALL)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR,
          "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class Refused(ValueError):
    """What is wrong with an input, as a predicate: "is a FIFO, not a regular file"."""


class TooDeep(Refused):
    """JSON nested deeper than ``MAX_DEPTH``."""


def read_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path`` if it is (or links to) a regular file of at most ``limit`` bytes;
    ``Refused`` for anything else, ``OSError`` when the file system says no."""
    # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer;
    # O_NOCTTY: opening a terminal never makes it ours.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise Refused(f"is {kind}, not a regular file")
        if info.st_size > limit:
            raise Refused(f"is {info.st_size} bytes, more than the {_size(limit)} envaudit reads")
        data = handle.read(limit + 1)  # the file may grow after fstat
    if len(data) > limit:
        raise Refused(f"is more than the {_size(limit)} envaudit reads")
    return data


def loads(data: bytes | str) -> Any:
    """``json.loads`` of UTF-8 ``data`` nested at most ``MAX_DEPTH`` deep; ``TooDeep`` or
    ``Refused`` otherwise."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise Refused("is not a text file (not UTF-8)") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise TooDeep(f"is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise Refused(f"is not valid JSON ({getattr(exc, 'msg', exc)}{where})") from None


def read_json(path: str | os.PathLike[str], limit: int) -> Any:
    """``loads(read_file(path, limit))``."""
    return loads(read_file(Path(path), limit))


def nesting_depth(text: str) -> int:
    """How deep the brackets of ``text`` nest, outside strings; counting stops just past
    ``MAX_DEPTH``. Exact for valid JSON; for invalid JSON only an estimate, which the parser
    refuses anyway."""
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        elif char != '"':
            depth -= 1
    return deepest


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"
