"""Configuration files: the defaults a project writes down for envaudit's options.

A flag typed on the command line wins; then the configuration file (``config_files``: the
nearest project's ``envaudit.toml``, or its pyproject's ``[tool.envaudit]``); then envaudit's own
default. What the command line typed is known by parsing it again without defaults
(``cli_parser.given``), so an abbreviated flag (``--str``) wins like a whole one, and a flag of a
mutually exclusive pair (``--name``) sets aside the file's value for the other (``golden``).

- ``apply(args, grammar, typed)``: the parsed command line completed from the file (``cli.main``).
- ``value(key, start)``: one key's configured value, or None (the pytest plugin's golden).
- ``effective(start)``: what ``envaudit config`` shows (``render/config_text``, ``config_json``).

Constraints the next editor must keep:
- Standard library only: ``apply`` runs before every command. A command that has none of the
  options a key sets (``fingerprint``, ``history``) reads no file at all.
- Every key of a file is checked whenever the file is read, even one the command has no use for:
  a mistake is one line naming the file, the key and what is allowed (``EnvauditError``, exit 2),
  never a value silently ignored.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envaudit import cli_parser
from envaudit.cli_help import did_you_mean
from envaudit.config_files import Found, search
from envaudit.config_keys import BY_NAME, KEYS, Key, checked, option
from envaudit.errors import EnvauditError

DEFAULT = "default"  # the source of a value no file set


@dataclass(frozen=True)
class Setting:
    """One key of ``envaudit config``: its value and where the value came from."""

    key: str
    value: Any
    source: str  # "default", or the file's label: "envaudit.toml (/abs/path)"


@dataclass(frozen=True)
class SourceFile:
    """A configuration file the search found in the project's folder."""

    path: str
    kind: str  # "envaudit.toml", "pyproject.toml [tool.envaudit]", "pyproject.toml"
    used: bool
    note: str  # why it was not read ("" when used)


@dataclass(frozen=True)
class Effective:
    """The effective configuration in one folder: where the search went and every key's value."""

    start: str  # the folder the search started from
    root: str | None  # the project's folder it stopped at; None: none up to the filesystem root
    sources: tuple[SourceFile, ...]
    settings: tuple[Setting, ...]


def apply(args: argparse.Namespace, grammar: argparse.ArgumentParser,
          typed: Callable[[], set[str]], start: Path | None = None) -> str | None:
    """Set on ``args`` (parsed by ``grammar``) each option that the configuration file sets and
    the command line left out. ``typed()`` answers which destinations the command line set; it is
    asked only when the file sets something for this command. Returns the file that turned
    redaction off for this command (None: it did not), for the command line to say so: a
    project's file must not make a shared report show host and user names unnoticed."""
    command = _command_of(args, grammar)
    if command is None:
        return None
    name, parser = command
    settable = {k.name: a for k in KEYS if (a := option(k, name, parser)) is not None}
    if not settable:
        return None  # no file is read for this command
    found = search(start or _here())
    values = _values(found, grammar)
    chosen = [k for k in values if k in settable]
    if not chosen:
        return None
    explicit = typed()
    set_aside = _beside(parser, explicit)
    unredacted = None
    for key_name in chosen:
        action = settable[key_name]
        if action.dest in explicit or action.dest in set_aside:
            continue
        key = BY_NAME[key_name]
        # Checked again for this command's option: its choices may be its own.
        setattr(args, action.dest, key.flip(_checked(key, found, action, for_command=name)))
        if key_name == "redact" and getattr(args, action.dest) and found.source is not None:
            unredacted = found.source.label
    return unredacted


def value(key: str, start: Path | None = None) -> object | None:
    """The value the configuration file found from ``start`` (default: the current folder) gives
    ``key`` (``golden``: an absolute path), or None where no file sets it. ``EnvauditError`` for a
    file with a mistake; ``ValueError`` for a key envaudit does not have."""
    if key not in BY_NAME:
        raise ValueError(f"envaudit has no configuration key {key!r}; keys: {', '.join(BY_NAME)}")
    return _values(search(start or _here()), _grammar()).get(key)


def effective(start: Path | None = None) -> Effective:
    """Every key's effective value in ``start`` (default: the current folder), and its source."""
    start = start or _here()
    grammar = _grammar()
    found = search(start)
    values = _values(found, grammar)
    settings = []
    for key in KEYS:
        if key.name in values and found.source is not None:
            settings.append(Setting(key.name, values[key.name], found.source.label))
        else:
            _, action = _reference(key, grammar)
            settings.append(Setting(key.name, key.flip(action.default), DEFAULT))
    sources = [SourceFile(str(p), p.name, False, why) for p, why in found.passed_over]
    if found.source is not None:
        sources.insert(0, SourceFile(str(found.source.path), found.source.kind, True, ""))
    return Effective(str(start.absolute()), None if found.folder is None else str(found.folder),
                     tuple(sources), tuple(settings))


def _here() -> Path:
    """The current folder, where the search for a configuration starts."""
    try:
        return Path.cwd()
    except OSError as exc:  # removed while a shell was still in it
        raise EnvauditError(f"cannot look for envaudit.toml or pyproject.toml from the current"
                            f" folder ({exc.strerror or exc}); cd into an existing folder")\
            from None


# --- checking a file ------------------------------------------------------------------------


def _values(found: Found, grammar: argparse.ArgumentParser) -> dict[str, Any]:
    """Every key of the file found, checked as its flag's value (in the command whose option
    stands for the key everywhere, ``_reference``); {} without a file."""
    if found.source is None:
        return {}
    for name in found.table:
        if name not in BY_NAME:
            meant = did_you_mean(str(name), BY_NAME)
            raise EnvauditError(f"{found.source.label}: unknown key {_shown(name)}"
                                + (f"; did you mean {meant!r}?" if meant else "")
                                + f" (keys: {', '.join(BY_NAME)})")
    _refuse_exclusive(found, grammar)
    return {name: _checked(BY_NAME[name], found, _reference(BY_NAME[name], grammar)[1])
            for name in found.table}


def _checked(key: Key, found: Found, action: argparse.Action, for_command: str = "") -> Any:
    """The key's value from the file, checked by ``action``; ``for_command``: the command whose
    own option that is, named in the error."""
    assert found.source is not None
    raw = found.table[key.name]
    try:
        return checked(key, raw, action, found.source.path.parent)
    except ValueError as exc:
        raise EnvauditError(f"{found.source.label}: {key.name} = {_shown(raw)}: {exc}"
                            + (f" in 'envaudit {for_command}'" if for_command else "")) from None


def _refuse_exclusive(found: Found, grammar: argparse.ArgumentParser) -> None:
    """Two keys whose flags no command takes together (golden and name) are a mistake."""
    assert found.source is not None
    for name, parser in cli_parser.commands(grammar).items():
        for group in parser._mutually_exclusive_groups:
            flags = {s for a in group._group_actions for s in a.option_strings}
            both = [k.name for k in KEYS if k.name in found.table and k.flag in flags
                    and option(k, name, parser) is not None]
            if len(both) > 1:
                raise EnvauditError(f"{found.source.label}: {' and '.join(both)} cannot both be"
                                    f" set (as {' and '.join(BY_NAME[k].flag for k in both)}"
                                    " cannot be given together); keep one")


def _shown(raw: Any) -> str:
    """A stranger's value as an error quotes it: as TOML would spell most values, and short."""
    text = json.dumps(raw, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# --- the grammar ----------------------------------------------------------------------------


def _command_of(args: argparse.Namespace,
                grammar: argparse.ArgumentParser) -> tuple[str, argparse.ArgumentParser] | None:
    """The command ``args`` are for, by name, and its parser."""
    parser = getattr(args, "parser", None)
    return next(((n, p) for n, p in cli_parser.commands(grammar).items() if p is parser), None)


def _beside(parser: argparse.ArgumentParser, explicit: set[str]) -> set[str]:
    """The destinations in a mutually exclusive group with one the command line set: typing
    ``--name`` sets aside the file's ``golden``."""
    found: set[str] = set()
    for group in parser._mutually_exclusive_groups:
        dests = {a.dest for a in group._group_actions}
        if dests & explicit:
            found |= dests
    return found


def _reference(key: Key, grammar: argparse.ArgumentParser) -> tuple[str, argparse.Action]:
    """The command (``check`` where it has the option, else the first that has it) and action
    that check a key's value and give its default."""
    found = [(n, a) for n, p in cli_parser.commands(grammar).items()
             if (a := option(key, n, p)) is not None]
    return next((pair for pair in found if pair[0] == "check"), found[0])


@functools.cache
def _grammar() -> argparse.ArgumentParser:
    """The command line's grammar, for its options alone (no command runs through it)."""
    return cli_parser.build_parser(defaultdict(lambda: _not_run))


def _not_run(args: argparse.Namespace) -> int:
    raise RuntimeError("config's grammar runs no command")
