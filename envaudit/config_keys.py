"""The keys a configuration file may set: one record per key, each standing for one option.

A key is the option's long flag without its dashes (``tflite-threads`` is ``--tflite-threads``),
except a switch named for what it keeps on: ``redact = false`` is ``--no-redact``, ``history``
and ``confirm`` likewise. A key sets that option's default in every command that has the option
(or, where the record names them, in those commands only).

Constraints the next editor must keep:
- A file accepts exactly what the command line accepts: a value is checked by the option's own
  type function and choices, read from the parser's action (``cli_parser``), never by a copy.
- A file is a stranger's: a key names an option from this table, nothing else; a value is data
  for that option, never a module, a command or an environment variable.
- Standard library only (``usermodel.spec``, which checks --tolerance and --detections, is too).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envaudit.cli_help import did_you_mean
from envaudit.errors import EnvauditError

# How a key's value is written in TOML, and how it becomes the option's value.
Kind = Literal["path", "text", "switch", "whole", "number", "choice", "modes", "tolerance",
               "detections"]

# What each kind accepts, as a user reads it in an error.
_WRITTEN = {
    "path": "a path (a string; relative to the file's folder)",
    "text": "a string",
    "switch": "true or false",
    "whole": "a whole number",
    "number": "a number",
    "choice": "a string",
    "modes": 'a list of modes, e.g. ["eager", "graph"]',
    "tolerance": 'a table of output = "rtol:X,atol:Y" ("*" for every output) or a list of'
                 ' "[OUTPUT=]rtol:X,atol:Y"',
    "detections": 'a table { boxes = NAME, scores = NAME, classes = NAME[, count = NAME] } or'
                  ' "boxes=NAME,scores=NAME,classes=NAME"',
}


@dataclass(frozen=True)
class Key:
    """One key: its name in the file, the flag it stands for, how its value is written."""

    name: str
    flag: str  # the option's flag, as the parser knows it
    kind: Kind
    negated: bool = False  # the flag says the opposite: 'redact = false' is --no-redact
    commands: tuple[str, ...] | None = None  # None: every command that has the flag

    def flip(self, value: Any) -> Any:
        """The key's value as its option's value, or back: 'redact = false' is --no-redact on."""
        return (not value) if self.negated else value


# Where an option means something else in some command, the record names the commands it sets:
# history's --golden filters the runs listed; a format other than a check report's would make
# one file's 'format' wrong for every other command.
_CHECKED = ("check", "bisect", "compare", "fleet check")
KEYS: tuple[Key, ...] = (
    Key("golden", "--golden", "path", commands=("record", "check", "bisect", "fleet check")),
    Key("name", "--name", "text"),
    Key("modes", "--modes", "modes"),
    Key("tolerance", "--tolerance", "tolerance"),
    Key("detections", "--detections", "detections"),
    Key("strict", "--strict", "switch"),
    Key("redact", "--no-redact", "switch", negated=True),
    Key("history", "--no-history", "switch", negated=True),
    Key("confirm", "--no-confirm", "switch", negated=True),
    Key("repeat", "--repeat", "whole"),
    Key("tf32", "--tf32", "choice"),
    Key("tflite-kernels", "--tflite-kernels", "choice"),
    Key("tflite-threads", "--tflite-threads", "whole"),
    Key("growth-target", "--growth-target", "number"),
    Key("format", "--format", "choice", commands=_CHECKED),
)
BY_NAME: Mapping[str, Key] = {k.name: k for k in KEYS}


def option(key: Key, command: str, parser: argparse.ArgumentParser) -> argparse.Action | None:
    """The action ``key`` sets in ``command`` (whose parser is ``parser``); None where the key
    does not apply to that command."""
    if key.commands is not None and command not in key.commands:
        return None
    return parser._option_string_actions.get(key.flag)


def checked(key: Key, raw: Any, action: argparse.Action, folder: Path) -> Any:
    """``raw`` from a file as the key's value, checked as the flag's value would be; a path
    relative to ``folder`` (the file's). ``ValueError`` with what is wrong and what is allowed."""
    text = _flag_text(key, raw)
    if key.kind in ("tolerance", "detections"):
        return _checked_by(key, text)
    if key.kind == "switch":
        return raw
    try:
        value = action.type(text) if callable(action.type) else text
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{exc} (as for {key.flag})") from None
    if action.choices is not None and value not in action.choices:
        offered = list(map(str, action.choices))
        meant = did_you_mean(str(value), offered)
        raise ValueError(f"must be one of {', '.join(offered)} (as for {key.flag})"
                         + (f"; did you mean {meant!r}?" if meant else ""))
    if key.kind == "path":
        return str(folder / value)  # an absolute value stays as it is
    if key.kind == "text" and not value:
        raise ValueError(f"is empty; give {_WRITTEN[key.kind]} or leave the key out")
    return value


def _flag_text(key: Key, raw: Any) -> Any:
    """``raw`` as the text the flag would have been given (a list of texts for --tolerance, a bool
    for a switch); ``ValueError`` when TOML wrote it as another type."""
    kind = key.kind
    if kind == "switch" and isinstance(raw, bool):
        return raw
    if kind in ("path", "text", "choice", "modes", "detections", "tolerance") and \
            isinstance(raw, str):
        return [raw] if kind == "tolerance" else raw
    if kind == "whole" and isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if kind == "number" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    if kind in ("modes", "tolerance") and isinstance(raw, list) and \
            all(isinstance(item, str) for item in raw):
        return ",".join(raw) if kind == "modes" else list(raw)
    if kind in ("tolerance", "detections") and isinstance(raw, dict) and \
            all(isinstance(v, str) for v in raw.values()):
        if kind == "detections":
            return ",".join(f"{field}={name}" for field, name in raw.items())
        return [text if output == "*" else f"{output}={text}" for output, text in raw.items()]
    raise ValueError(f"must be {_WRITTEN[kind]} (as for {key.flag})")


def _checked_by(key: Key, text: Any) -> Any:
    """--tolerance (a list of texts) and --detections (one text) checked by the functions that
    read those flags, whose message names the flag and what it expects; the texts are kept, as
    the flags keep them."""
    from envaudit.usermodel.spec import parse_detections, parse_tolerances

    try:
        (parse_tolerances if key.kind == "tolerance" else parse_detections)(text)
    except EnvauditError as exc:
        raise ValueError(str(exc)) from None
    return text
