"""The fish completion script: one ``complete`` line per subcommand, option and positional, each
under a condition that names the command it belongs to ('fleet check' is not 'check').

Constraints: runs no Python on a TAB; fish expands the arguments of ``complete -a`` and
``-n`` as code, so every word is quoted twice there (once for the line, once for fish's second
reading), and once in a description (``-d`` is shown as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envaudit.completion.grammar import Command, Option, Value

_HEADER = """\
# fish completion for envaudit, written by 'envaudit completion fish' from envaudit's own parser.
# Save it as ~/.config/fish/completions/envaudit.fish
"""

_ENGINE = r"""
# The command being completed ("", "check", "fleet check"), then how many of its positionals
# are typed before the cursor, one per line. Options and their values are skipped.
function __envaudit_position
    set -l words (commandline -opc)
    set -e words[1]
    set -l path ''
    set -l position 0
    set -l pending 0
    for word in $words
        if test $pending = 1
            set pending 0
            continue
        end
        switch $word
            case '-*=*'
            case '-*'
                __envaudit_takes_value "$path" $word; and set pending 1
            case '*'
                if test $position = 0; and __envaudit_is_subcommand "$path" $word
                    if test -z "$path"
                        set path $word
                    else
                        set path "$path $word"
                    end
                else
                    set position (math $position + 1)
                end
        end
    end
    printf '%s\n' $path $position
end

# Whether the command being completed is $argv[1]; with $argv[2], also whether the word typed
# is its positional $argv[2] (from 0; 'N+': N or later).
function __envaudit_at
    set -l here (__envaudit_position)
    test "$here[1]" = "$argv[1]"; or return 1
    set -q argv[2]; or return 0
    if string match -q -- '*+' $argv[2]
        test $here[2] -ge (string trim -r -c + -- $argv[2])
    else
        test $here[2] = $argv[2]
    end
end

# The items of a comma-separated list: what is typed up to its last comma, then each of $argv.
function __envaudit_list
    set -l head (string replace -r -- '[^,]*$' '' (commandline -ct))
    printf '%s\n' $head$argv
end

# Golden bundle folders and JSON files (a check's, a fingerprint's) under what is typed.
function __envaudit_bundles
    for file in (commandline -ct)*
        if test -d $file
            printf '%s/\n' $file
        else if string match -q -- '*.json' $file
            printf '%s\n' $file
        end
    end
end

# The bundles 'envaudit record --name NAME' wrote, as envaudit finds them: only plain names.
function __envaudit_bundle_names
    set -l base "$XDG_DATA_HOME"
    test -n "$base"; or set base "$HOME/.local/share"
    for manifest in $base/envaudit/golden/*/manifest.json
        test -f $manifest; or continue
        string replace -r -- '^.*/([^/]+)/manifest\.json$' '$1' $manifest \
            | string match -r -- '^[A-Za-z0-9._-]+$'
    end
end

complete -c envaudit -f
"""


def script(commands: Sequence[Command]) -> str:
    """The whole fish script for ``commands`` (``grammar.commands``)."""
    lines = [_HEADER,
             _membership("__envaudit_takes_value", "Whether option $argv[2] of command $argv[1]"
                         " takes a value.",
                         (f"{c.name} {flag}" for c in commands for flag in c.takes_value())),
             _membership("__envaudit_is_subcommand", "Whether $argv[2] is a subcommand of"
                         " command $argv[1].",
                         (f"{c.name} {n}" for c in commands for n, _ in c.subcommands)),
             _ENGINE]
    for command in commands:
        lines.append(f"# {command.title}")
        lines += [_complete(command.name, "0", ["-a", _code_words([name]), "-d", quoted(summary)])
                  for name, summary in command.subcommands]
        lines += [_complete(command.name, None, [*_flags(o), "-d", quoted(o.summary),
                                                 *_option_value(o.value)])
                  for o in command.options]
        if not command.subcommands:
            lines += _positionals(command)
        lines.append("")
    return "\n".join(lines)


def quoted(word: str) -> str:
    """``word`` single-quoted for fish, where a backslash escapes only a quote or itself."""
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _code_words(words: Iterable[str]) -> str:
    """Words for an argument fish reads as code (``-a``): quoted as words, then as one string."""
    return quoted(" ".join(map(quoted, words)))


def _membership(function: str, what: str, members: Iterable[str]) -> str:
    """A function that answers whether "$argv[1] $argv[2]" is one of ``members`` (``contains``
    compares strings: no wildcard in a name can match another)."""
    listed = " \\\n        ".join(map(quoted, members))
    return "\n".join([f"# {what}", f"function {function}",
                      f'    contains -- "$argv[1] $argv[2]" \\\n        {listed}', "end", ""])


def _complete(command: str, position: str | None, arguments: Sequence[str]) -> str:
    condition = " ".join(["__envaudit_at", quoted(command), *([position] if position else [])])
    return " ".join(["complete -c envaudit -n", quoted(condition), *arguments])


def _flags(option: Option) -> list[str]:
    """fish's spelling of each flag: -s for one letter, -l for a --long one, -o for -old."""
    spelled = []
    for flag in option.flags:
        if flag.startswith("--"):
            spelled += ["-l", quoted(flag[2:])]
        elif len(flag) == 2:
            spelled += ["-s", quoted(flag[1:])]
        else:
            spelled += ["-o", quoted(flag[1:])]
    return spelled


def _option_value(value: Value | None) -> list[str]:
    if value is None:
        return []
    if value.kind == "path":
        return ["-r", "-F"]
    return ["-x", *_candidates(value)]


def _candidates(value: Value) -> list[str]:
    """What ``-a`` offers for ``value`` (nothing for a value only the user knows)."""
    if value.kind == "words":
        return ["-a", _code_words(value.words)]
    if value.kind == "list":
        return ["-a", quoted(f"(__envaudit_list {' '.join(map(quoted, value.words))})")]
    return {"path": ["-F"],
            "bundle": ["-a", quoted("(__envaudit_bundles)")],
            "bundle-name": ["-a", quoted("(__envaudit_bundle_names)")],
            "free": []}[value.kind]


def _positionals(command: Command) -> list[str]:
    lines = []
    for index, value in enumerate(command.positionals):
        repeats = command.repeats_last and index == len(command.positionals) - 1
        candidates = _candidates(value)
        if candidates:
            lines.append(_complete(command.name, f"{index}{'+' if repeats else ''}", candidates))
    return lines
