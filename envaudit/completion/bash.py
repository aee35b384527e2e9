"""The bash completion script: envaudit's grammar as ``case`` tables, and one function that reads
the words typed so far against them (``complete -F``).

Constraints: the script runs nothing but bash builtins on a TAB (no Python, no envaudit); every
word from the parser is single-quoted, and nothing is offered through ``compgen -W``, which would
expand a word a second time ('$(...)' in a bundle's folder name would run). Works without the
bash-completion package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envaudit.completion.grammar import Command, Value

_HEADER = """\
# bash completion for envaudit, written by 'envaudit completion bash' from envaudit's own parser.
# Load it from ~/.bashrc:  eval "$(envaudit completion bash)"
# or save it as ~/.local/share/bash-completion/completions/envaudit
"""

# The part that does not depend on the grammar. Variables set by the table functions (kind,
# words) are the caller's locals: bash scopes them dynamically.
_ENGINE = r"""
# Add the words ($2...) that start with the typed word $1, quoted for the command line.
_envaudit_offer() {
    local plain word
    _envaudit_unquote "$1"
    shift
    for word; do
        [[ $word == "$plain"* ]] && printf -v word '%q' "$word" && COMPREPLY+=("$word")
    done
}

# Whether $1 is one of $2...
_envaudit_is_one_of() {
    local word=$1 candidate
    shift
    for candidate; do [[ $candidate == "$word" ]] && return 0; done
    return 1
}

# Set plain to the typed word $1 without its quoting ('my\ dir' is 'my dir'), never evaluated.
_envaudit_unquote() {
    local rest=$1
    plain=""
    if [[ $rest == \'* ]]; then
        plain=${rest#\'}
        plain=${plain%\'}
        return
    fi
    rest=${rest#\"}
    rest=${rest%\"}
    while [[ $rest == *\\* ]]; do
        plain+=${rest%%\\*}
        rest=${rest#*\\}
        plain+=${rest:0:1}
        rest=${rest:1}
    done
    plain+=$rest
}

# The bundles 'envaudit record --name NAME' wrote, as envaudit finds them: only plain names.
_envaudit_bundle_names() {
    local manifest name
    for manifest in "${XDG_DATA_HOME:-$HOME/.local/share}"/envaudit/golden/*/manifest.json; do
        [[ -f $manifest ]] || continue
        name=${manifest%/manifest.json}
        name=${name##*/}
        [[ $name =~ ^[A-Za-z0-9._-]+$ && $name == "$1"* ]] && COMPREPLY+=("$name")
    done
}

# Complete $2, a value of kind $1 (words: its choices).
_envaudit_value() {
    local typed=$2 head="" file plain
    case $1 in
        words) _envaudit_offer "$typed" "${words[@]}" ;;
        list)  # comma-separated: complete the last item, and leave room for another
            if [[ $typed == *,* ]]; then head=${typed%,*},; typed=${typed##*,}; fi
            for file in "${words[@]}"; do
                [[ $file == "$typed"* ]] && COMPREPLY+=("$head$file")
            done
            compopt -o nospace 2>/dev/null ;;
        path|bundle)
            compopt -o filenames 2>/dev/null
            _envaudit_unquote "$typed"
            if [[ $1 == path ]]; then
                while IFS= read -r file; do COMPREPLY+=("$file"); done < <(compgen -f -- "$plain")
            else
                while IFS= read -r file; do COMPREPLY+=("$file"); done < <(
                    compgen -d -- "$plain"; compgen -f -X '!*.json' -- "$plain")
            fi ;;
        bundle-name) _envaudit_bundle_names "$typed" ;;
    esac
}

_envaudit() {
    local typed=${COMP_WORDS[COMP_CWORD]} path="" pending="" kind="" word plain i position=0
    local -a words=()
    COMPREPLY=()
    # Which command is being typed, and which of its positionals; skip options and their values
    # (bash splits '--format=json' into '--format', '=', 'json').
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word=${COMP_WORDS[i]}
        if [[ -n $pending ]]; then
            [[ $word == = ]] || pending=""
            continue
        fi
        case $word in
            -*=*) ;;
            -*) _envaudit_option_value "$path" "$word"; [[ -n $kind ]] && pending=$word ;;
            *)
                _envaudit_subcommands "$path"
                _envaudit_unquote "$word"
                if (( position == 0 )) && _envaudit_is_one_of "$plain" "${words[@]}"; then
                    path=${path:+$path }$plain
                else
                    (( position += 1 ))
                fi ;;
        esac
    done
    if [[ -n $pending ]]; then
        [[ $typed == = ]] && typed=""
        _envaudit_option_value "$path" "$pending"
        _envaudit_value "$kind" "$typed"
        return 0
    fi
    if [[ $typed == -*=* ]]; then  # '=' is not a word break here: the option is in the word
        _envaudit_option_value "$path" "${typed%%=*}"
        _envaudit_value "$kind" "${typed#*=}"
        COMPREPLY=("${COMPREPLY[@]/#/${typed%%=*}=}")
        return 0
    fi
    if [[ $typed == -* ]]; then
        _envaudit_options "$path"
        _envaudit_offer "$typed" "${words[@]}"
        return 0
    fi
    _envaudit_subcommands "$path"
    if (( ${#words[@]} )); then
        [[ $position == 0 ]] && _envaudit_offer "$typed" "${words[@]}"
        return 0
    fi
    _envaudit_positional "$path" "$position"
    if [[ -n $kind ]]; then
        _envaudit_value "$kind" "$typed"
    else
        _envaudit_options "$path"
        _envaudit_offer "$typed" "${words[@]}"
    fi
    return 0
}

complete -F _envaudit envaudit
"""


def script(commands: Sequence[Command]) -> str:
    """The whole bash script for ``commands`` (``grammar.commands``)."""
    tables = [
        _table("_envaudit_subcommands", "The subcommands of command $1.",
               ((c.name, [_words(n for n, _ in c.subcommands)]) for c in commands
                if c.subcommands)),
        _table("_envaudit_options", "The options of command $1.",
               ((c.name, [_words(f for o in c.options for f in o.flags)]) for c in commands)),
        _nested("_envaudit_option_value", "What the value of option $2 of command $1 is.",
                ((c.name, [("|".join(map(quoted, o.flags)), o.value) for o in c.options
                            if o.value is not None]) for c in commands)),
        _nested("_envaudit_positional", "What positional $2 (from 0) of command $1 is.",
                ((c.name, _positions(c)) for c in commands if c.positionals)),
    ]
    return _HEADER + "\n" + "\n".join(tables) + _ENGINE


def quoted(word: str) -> str:
    """``word`` single-quoted for bash (and any POSIX shell): nothing in it is expanded."""
    return "'" + word.replace("'", "'\\''") + "'"


def _words(words: Iterable[str]) -> str:
    return f"words=({' '.join(map(quoted, words))})"


def _assign(value: Value) -> str:
    words = f"; {_words(value.words)}" if value.kind in ("words", "list") else ""
    return f"kind={value.kind}{words}"


def _table(function: str, what: str, rows: Iterable[tuple[str, list[str]]]) -> str:
    lines = [f"# {what}", f"{function}() {{", "    words=()", "    case $1 in"]
    lines += [f"        {quoted(key)}) {'; '.join(body)} ;;" for key, body in rows]
    return "\n".join([*lines, "    esac", "}", ""])


def _nested(function: str, what: str,
            rows: Iterable[tuple[str, Sequence[tuple[str, Value]]]]) -> str:
    """A two-level table: command $1, then $2 (an option or a position, matched by the case
    pattern of each entry) sets ``kind`` (and ``words``); ``kind`` stays empty for the rest."""
    lines = [f"# {what}", f"{function}() {{", "    kind=\"\" words=()", "    case $1 in"]
    for command, entries in rows:
        if not entries:
            continue
        lines += [f"        {quoted(command)})", "            case $2 in"]
        lines += [f"                {pattern}) {_assign(value)} ;;" for pattern, value in entries]
        lines += ["            esac ;;"]
    return "\n".join([*lines, "    esac", "}", ""])


def _positions(command: Command) -> list[tuple[str, Value]]:
    """Position -> value; past the last, the last again when it repeats (the pattern '*')."""
    rows = [(quoted(str(i)), value) for i, value in enumerate(command.positionals)]
    if command.repeats_last:
        rows.append(("*", command.positionals[-1]))
    return rows
