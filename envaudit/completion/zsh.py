"""The zsh completion script: one ``_arguments`` function per command, its subcommands described
by ``_describe``, its choices offered from single-quoted word lists.

Constraints: works autoloaded from ``$fpath`` (``#compdef``) and sourced after ``compinit``; runs
no Python on a TAB. ``_arguments`` reads its specs with rules of its own (a colon ends a field, a
backslash escapes only the next character and is kept, ``]`` ends a description), so the text of
a description or a label is made safe for them here, and words that are completed are never put
in a spec: they live in ``_envaudit_words``, quoted for the shell alone. An option name
``_arguments`` cannot spell is refused with ``ValueError`` (the tests build every script).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from envaudit.completion.bash import quoted
from envaudit.completion.grammar import Command, Option, Value

_HEADER = """\
#compdef envaudit
# zsh completion for envaudit, written by 'envaudit completion zsh' from envaudit's own parser.
# Save it as _envaudit in a folder on $fpath (before compinit runs in ~/.zshrc),
# or load it after compinit:  eval "$(envaudit completion zsh)"
"""

_ENGINE = r"""
# The bundles 'envaudit record --name NAME' wrote, as envaudit finds them: only plain names.
_envaudit_bundle_names() {
  local -a names
  names=( ${XDG_DATA_HOME:-$HOME/.local/share}/envaudit/golden/*/manifest.json(N-.:h:t) )
  names=( ${names:#*[^A-Za-z0-9._-]*} )
  compadd "$@" -a names
}
"""

_FOOTER = """
if [[ ${funcstack[1]-} == _envaudit ]]; then
  _envaudit "$@"  # autoloaded by compinit: this file is the function's body
else
  compdef _envaudit envaudit
fi
"""

_FLAG = re.compile(r"--?[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def script(commands: Sequence[Command]) -> str:
    """The whole zsh script for ``commands`` (``grammar.commands``)."""
    lists: list[tuple[str, ...]] = []
    functions = _function_names(commands)
    bodies = [_command_function(c, functions, lists) for c in commands]
    return "\n".join([_HEADER, _words_function(lists), _ENGINE, *bodies, _FOOTER])


def _function_names(commands: Sequence[Command]) -> dict[tuple[str, ...], str]:
    names: dict[tuple[str, ...], str] = {}
    for command in commands:
        name = "_".join(["_envaudit", *(re.sub(r"[^A-Za-z0-9]", "_", p) for p in command.path)])
        while name in names.values():  # two paths that spell the same
            name += "_"
        names[command.path] = name
    return names


def _words_function(lists: list[tuple[str, ...]]) -> str:
    """``_envaudit_words N [compadd options]``: offer word list N. The lists are filled while
    the command functions are written, so this is written after them (but placed before)."""
    return "\n".join([
        "# Offer word list $1 (compadd's options follow).",
        "_envaudit_words() {",
        "  local -a words",
        "  case $1 in",
        *(f"    ({n}) words=({' '.join(map(quoted, w))}) ;;" for n, w in enumerate(lists)),
        "  esac",
        "  shift",
        '  compadd "$@" -a words',
        "}",
    ])


def _command_function(command: Command, functions: dict[tuple[str, ...], str],
                      lists: list[tuple[str, ...]]) -> str:
    specs = [spec for o in command.options for spec in _option_specs(o, lists)]
    if command.subcommands:
        specs += ["': :->subcommand'", "'*:: :->argument'"]
    else:
        specs += [_positional_spec(i, v, command, lists)
                  for i, v in enumerate(command.positionals)]
    lines = [f"# {command.title}", f"{functions[command.path]}() {{"]
    if command.subcommands:
        lines += ["  local curcontext=$curcontext state state_descr line ret=1",
                  "  typeset -A opt_args"]
    lines.append("  _arguments -C -s -S : \\\n    " + " \\\n    ".join(specs)
                 + (" && ret=0" if command.subcommands else ""))
    if command.subcommands:
        lines += _dispatch(command, functions)
    return "\n".join([*lines, "}", ""])


def _dispatch(command: Command, functions: dict[tuple[str, ...], str]) -> list[str]:
    described = " ".join(quoted(_described(name, summary)) for name, summary in command.subcommands)
    branches = [f"        ({quoted(name)}) {functions[(*command.path, name)]} && ret=0 ;;"
                for name, _ in command.subcommands]
    return ["  case $state in",
            "    (subcommand)",
            "      local -a subcommands",
            f"      subcommands=({described})",
            "      _describe -t commands command subcommands && ret=0 ;;",
            "    (argument)",
            "      case $line[1] in", *branches, "      esac ;;",
            "  esac",
            "  return ret"]


def _option_specs(option: Option, lists: list[tuple[str, ...]]) -> list[str]:
    for flag in (*option.flags, *option.excludes):
        if not _FLAG.fullmatch(flag):
            raise ValueError(f"zsh's _arguments cannot complete the option {flag!r}")
    excluded = f"({' '.join(option.excludes)})" if option.excludes else ""
    repeat = "*" if option.repeatable else ""
    described = f"[{_text(option.summary).replace('[', '(').replace(']', ')')}]"
    specs = []
    for flag in option.flags:
        takes = ("=" if flag.startswith("--") else "+") if option.value else ""
        argument = f":{_field(option.value.label)}:{_action(option.value, lists)}" \
            if option.value else ""
        specs.append(quoted(f"{excluded}{repeat}{flag}{takes}{described}{argument}"))
    return specs


def _positional_spec(index: int, value: Value, command: Command,
                     lists: list[tuple[str, ...]]) -> str:
    last = index == len(command.positionals) - 1
    position = "*" if last and command.repeats_last else str(index + 1)
    return quoted(f"{position}:{_field(value.label)}:{_action(value, lists)}")


def _action(value: Value, lists: list[tuple[str, ...]]) -> str:
    """The action of a spec: what ``_arguments`` runs to complete ``value``."""
    if value.kind in ("words", "list"):
        if value.words not in lists:
            lists.append(value.words)
        offer = f'_envaudit_words {lists.index(value.words)} "${{expl[@]}}"'
        return f"{{_sequence {offer}}}" if value.kind == "list" else f"{{{offer}}}"
    return {"path": "_files",
            "bundle": '_files -g "*.json"',
            "bundle-name": '{_envaudit_bundle_names "${expl[@]}"}',
            "free": " "}[value.kind]


def _text(text: str) -> str:
    """Shown text as zsh's completion shows it literally: no backslash (``_arguments`` keeps
    one, and one before a field's end would swallow it), and '%' doubled (prompt escapes)."""
    return text.replace("\\", "").replace("%", "%%")


def _field(text: str) -> str:
    """Shown text inside a colon-separated field of a spec."""
    return _text(text).replace(":", "\\:") or " "


def _described(name: str, summary: str) -> str:
    """A 'name:description' item for ``_describe`` (a colon in the name escaped)."""
    return f"{name.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}:{_text(summary)}"
