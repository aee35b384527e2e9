"""What completes where: envaudit's commands, options and values, read from its argparse parser.

The shell scripts (``bash``, ``zsh``, ``fish``) are written from this one description, so an
option added to the parser is completed in every shell without an edit here. What a value
completes to is decided once, below, from the parser's own facts: its ``choices``, its ``type``
(``cli_parser._path`` takes a path, ``_modes`` a comma-separated list of modes) and its metavar.

Constraints: standard library and TF-free envaudit modules only (``envaudit completion`` must
answer at once); nothing here is trusted to be shell-safe: every word is quoted by the writer of
the shell it lands in, and descriptions are made one printable line here.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from envaudit import cli_parser, modes
from envaudit.render.escape import for_terminal

# What a value completes to:
#   words       one of ``words`` (an option's choices, a literal word of a positional)
#   list        a comma-separated list of ``words`` (--modes eager,xla)
#   path        any file or folder
#   bundle      a golden bundle folder or a JSON file (a check's, a fingerprint's)
#   bundle-name a bundle recorded under $XDG_DATA_HOME/envaudit/golden/ (read by the shell)
#   free        something only the user knows (a number, a date, an address): nothing offered
ValueKind = Literal["words", "list", "path", "bundle", "bundle-name", "free"]

# The metavars of arguments that name a file, when their type does not say so.
_PATH_METAVARS = frozenset({"PATH", "FILE", "PEM"})
# Arguments that name a bundle or its JSON: --golden in every command, and the two sides of
# 'compare' and 'diff' (their dests).
_BUNDLE_OPTIONS = frozenset({"--golden"})
_BUNDLE_POSITIONALS = frozenset({"a", "b"})
# --name takes a bundle's name, which the shell lists from the bundles folder.
_BUNDLE_NAME_OPTIONS = frozenset({"--name"})
# Types whose value is a comma-separated list, and where its items come from (read when the
# script is written, so a mode registered by then is offered).
_LISTS: dict[Callable[[str], object], Callable[[], Sequence[str]]] = {
    cli_parser._modes: modes.names,
    cli_parser._optimizations: lambda: tuple(modes.TFLITE_OPTIMIZATIONS),
}
# A literal word in a positional's metavar ("show [ID]"): lower case, as usage lines write
# the words typed as they are; placeholders are upper case or bracketed.
_LITERAL = re.compile(r"[a-z][a-z0-9-]*")
_SUMMARY_LENGTH = 72


@dataclass(frozen=True)
class Value:
    """What one value (of an option or a positional) completes to, and what it is called in
    the usage line (its metavar: FILE, MODE,...)."""

    kind: ValueKind
    words: tuple[str, ...] = ()
    label: str = ""


@dataclass(frozen=True)
class Option:
    """One option: its flags (``-o``, ``--output``), what it does in a line, the value it takes
    (None: a switch), whether it may be given again, and the flags it cannot be given with."""

    flags: tuple[str, ...]
    summary: str
    value: Value | None
    repeatable: bool
    excludes: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    """One (sub)command: ``path`` is ``()`` for envaudit itself, ``("fleet", "check")`` for
    'envaudit fleet check'. ``subcommands`` are (name, summary) pairs; ``positionals`` the values
    of its positional arguments in order, the last repeated when ``repeats_last``."""

    path: tuple[str, ...]
    options: tuple[Option, ...]
    subcommands: tuple[tuple[str, str], ...]
    positionals: tuple[Value, ...]
    repeats_last: bool

    @property
    def name(self) -> str:
        """The path as the user types it ("" for envaudit itself)."""
        return " ".join(self.path)

    @property
    def title(self) -> str:
        """'envaudit fleet check' as one printable line (for a comment in a script)."""
        return for_terminal(" ".join(["envaudit", *self.path]))

    def takes_value(self) -> tuple[str, ...]:
        """Every flag of this command that takes a value."""
        return tuple(f for o in self.options if o.value is not None for f in o.flags)


def commands(parser: argparse.ArgumentParser) -> tuple[Command, ...]:
    """Every command of ``parser``, envaudit itself first, each before its subcommands."""
    return tuple(_walk(parser, ()))


def one_line(text: str | None) -> str:
    """A help text as one short printable line: its first clause, whitespace collapsed."""
    line = for_terminal(" ".join((text or "").split()))
    line = re.split(r"; | \(", line, maxsplit=1)[0]
    if len(line) > _SUMMARY_LENGTH:
        line = line[:_SUMMARY_LENGTH - 3].rstrip() + "..."
    return line


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[Command]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {c.dest: c.help for s in subparsers for c in s._choices_actions}
    children = [(name, child) for s in subparsers for name, child in s.choices.items()]
    positionals = [a for a in parser._actions
                   if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    slots = [slot for a in positionals for slot in _positional_slots(a)]
    last = positionals[-1] if positionals else None
    yield Command(
        path=path,
        options=tuple(_option(parser, a) for a in parser._actions if a.option_strings),
        subcommands=tuple((name, one_line(summaries.get(name))) for name, _ in children),
        positionals=tuple(slots),
        repeats_last=last is not None and last.nargs in ("*", "+", argparse.REMAINDER)
        and len(_metavar_words(last)) == 1,
    )
    for name, child in children:
        yield from _walk(child, (*path, name))


def _option(parser: argparse.ArgumentParser, action: argparse.Action) -> Option:
    repeatable = isinstance(action, (argparse._AppendAction, argparse._CountAction,
                                     argparse._AppendConstAction))
    return Option(
        flags=tuple(action.option_strings),
        summary=one_line(_help(parser, action)),
        value=None if action.nargs == 0 else _value(action, action.option_strings),
        repeatable=repeatable,
        excludes=() if repeatable else tuple(action.option_strings) + _partners(parser, action),
    )


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help as ``--help`` shows it ('%(default)s' filled in, '%%' as '%')."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    try:
        return parser._get_formatter()._expand_help(action)
    except (KeyError, TypeError, ValueError):
        return action.help


def _partners(parser: argparse.ArgumentParser, action: argparse.Action) -> tuple[str, ...]:
    """The flags of the options in a mutually exclusive group with ``action``."""
    return tuple(flag for group in parser._mutually_exclusive_groups
                 if action in group._group_actions
                 for other in group._group_actions if other is not action
                 for flag in other.option_strings)


def _value(action: argparse.Action, flags: Sequence[str], label: str | None = None) -> Value:
    """What a value of ``action`` completes to, from its choices, type, flags and metavar."""
    label = one_line(label or " ".join(_metavar_words(action)))
    if action.choices is not None:
        return Value("words", tuple(map(str, action.choices)), label)
    if action.type in _LISTS:
        return Value("list", tuple(_LISTS[action.type]()), label)
    if _BUNDLE_OPTIONS.intersection(flags) or (
            not flags and action.dest in _BUNDLE_POSITIONALS):
        return Value("bundle", label=label)
    if _BUNDLE_NAME_OPTIONS.intersection(flags):
        return Value("bundle-name", label=label)
    if action.type is cli_parser._path or action.metavar in _PATH_METAVARS:
        return Value("path", label=label)
    return Value("free", label=label)


def _metavar_words(action: argparse.Action) -> list[str]:
    metavar = action.metavar if isinstance(action.metavar, str) else None
    return (metavar or action.dest.upper()).split() or [action.dest.upper()]


def _positional_slots(action: argparse.Action) -> list[Value]:
    """One value per word of the positional's metavar: "show [ID]" is the word 'show', then an
    ID (completed as the positional's own values); a one-word metavar is one value."""
    words = _metavar_words(action)
    if len(words) == 1:
        return [_value(action, ())]
    return [Value("words", (w,), w) if _LITERAL.fullmatch(w) else _value(action, (), w)
            for w in words]
