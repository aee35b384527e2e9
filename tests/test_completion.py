"""envaudit completion: the scripts complete what the real parser accepts, driven in real shells.

bash is driven everywhere: the script is loaded in ``bash --norc --noprofile`` and its function is
called with COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT as bash sets them on a TAB. zsh and fish
scripts are checked against the parser as text everywhere, and driven in the real shell where it
is installed (zsh through ``compinit`` on a pseudo-terminal, fish through ``complete -C``); where
it is not, those tests skip and say so. No TensorFlow: one envaudit subprocess in all.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

from envaudit import modes
from envaudit.cli import build_parser
from envaudit.completion import WRITERS, fish, script
from envaudit.render.formats import choices

SHELLS = tuple(WRITERS)


# --- the parser, walked here (not by the module under test) -------------------------------------


def subcommands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: child for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, child in a.choices.items()}


Commands = Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]


def every_command(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Commands:
    yield path, parser
    for name, child in subcommands_of(parser).items():
        yield from every_command(child, (*path, name))


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for a in parser._actions for flag in a.option_strings]


def options_with_choices(parser: argparse.ArgumentParser) -> list[tuple[str, list[str]]]:
    return [(a.option_strings[-1], list(a.choices)) for a in parser._actions
            if a.option_strings and a.choices]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.fixture(scope="module")
def scripts(parser, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("completion")
    written = {}
    for shell in SHELLS:
        written[shell] = folder / shell / ("_envaudit" if shell == "zsh" else f"envaudit.{shell}")
        written[shell].parent.mkdir()
        written[shell].write_text(script(shell, parser))
    return written


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A folder with a bundle folder, a check JSON, a text file and a folder with a space; its
    XDG data folder holds two bundles, a folder without a manifest and a hostile name."""
    (tmp_path / "bundle-a").mkdir()
    (tmp_path / "my dir").mkdir()
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    golden = tmp_path / "xdg" / "envaudit" / "golden"
    for name in ("default", "gpu-box", "$(touch pwned)", "no-manifest"):
        (golden / name).mkdir(parents=True)
        if name != "no-manifest":
            (golden / name / "manifest.json").write_text("{}")
    return tmp_path


def shell_env(workdir: Path, **extra: str | None) -> dict[str, str]:
    return cli_env(**{"XDG_DATA_HOME": str(workdir / "xdg"), "HOME": str(workdir), **extra})


# --- bash ---------------------------------------------------------------------------------------


def comp_words(line: str) -> list[str]:
    """COMP_WORDS as bash makes them: words split at spaces outside quotes and escapes, and '='
    its own word (it is in COMP_WORDBREAKS); a line ending in a space has an empty last word."""
    words, word, quote, escaped = [], "", "", False
    for char in line:
        if char == " " and not quote and not escaped:
            words.append(word)
            word = ""
            continue
        word += char
        if escaped:
            escaped = False
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        else:
            escaped = char == "\\"
    return [part for w in [*words, word] for part in ([p for p in re.split("(=)", w) if p] or [""])]


def bash_complete(script_path: Path, lines: Sequence[str], cwd: Path,
                  env: dict[str, str]) -> list[list[str]]:
    """What bash offers at the end of each line, one bash for all of them."""
    calls = [f"source {shlex.quote(str(script_path))}"]
    for line in lines:
        words = comp_words(line)
        calls += [f"COMP_WORDS=({' '.join(map(shlex.quote, words))})",
                  f"COMP_CWORD={len(words) - 1} COMP_LINE={shlex.quote(line)}"
                  f" COMP_POINT={len(line)} COMPREPLY=()",
                  '_envaudit envaudit "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
                  "(( ${#COMPREPLY[@]} )) && printf '%s\\n' \"${COMPREPLY[@]}\"",
                  "printf '\\x1e\\n'"]
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(calls)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    answers = proc.stdout.split("\x1e\n")[:-1]
    assert len(answers) == len(lines), proc.stdout
    return [answer.splitlines() for answer in answers]


@pytest.fixture
def bash(scripts, workdir):
    def complete(*lines: str, **env: str | None) -> list[list[str]]:
        return bash_complete(scripts["bash"], lines, workdir, shell_env(workdir, **env))
    return complete


def test_bash_completes_commands_options_and_choices(bash, parser):
    commands = subcommands_of(parser)
    assert bash("envaudit ch", "envaudit c", "envaudit check --fo", "envaudit check --format ",
                "envaudit -q ch", "envaudit completion ") == [
        ["check"],
        [name for name in commands if name.startswith("c")],
        ["--format"],
        list(choices("check")),
        ["check"],
        ["bash", "zsh", "fish"],
    ]
    assert list(choices("check")) == ["text", "json", "md", "junit", "html"]


def test_bash_completes_a_value_given_with_an_equals_sign(bash):
    # bash splits '--format=j' into '--format', '=', 'j'; the value completes either way.
    assert bash("envaudit check --format=j", "envaudit check --format=") == [
        ["json", "junit"], list(choices("check"))]


def test_bash_completes_nested_subcommands_and_their_options(bash):
    assert bash("envaudit fleet ", "envaudit fleet check --fo", "envaudit fleet fingerprint"
                " --format ", "envaudit cache ", "envaudit fleet check ch") == [
        ["check", "fingerprint"], ["--format"], list(choices("fleet fingerprint")), ["clear"],
        []]  # fleet check takes no word but its options: nothing starts with 'ch'


def test_bash_completes_bundle_folders_and_json_where_a_bundle_goes(bash):
    golden, compare_a, compare_b, after, output = bash(
        "envaudit check --golden ", "envaudit compare ", "envaudit compare bundle-a r",
        "envaudit compare bundle-a run.json --st", "envaudit check -o ")
    assert sorted(golden) == ["bundle-a", "my dir", "run.json", "xdg"]  # never notes.txt
    assert sorted(compare_a) == sorted(golden)
    assert compare_b == ["run.json"]
    assert after == ["--strict"]  # A and B given: options only
    assert "notes.txt" in output


def test_bash_completes_a_quoted_or_escaped_path(bash):
    assert bash("envaudit check -o my\\ d", "envaudit check -o 'my d") == [["my dir"], ["my dir"]]


def test_bash_lists_bundle_names_from_the_data_folder_without_running_them(bash, workdir):
    named, later = bash("envaudit check --name ", "envaudit record --force --name g")
    assert sorted(named) == ["default", "gpu-box"]  # no manifest, or not a plain name: left out
    assert later == ["gpu-box"]
    assert not (workdir / "pwned").exists()


def test_bash_bundle_names_default_to_the_home_data_folder(bash, workdir):
    # As envaudit's store reads it: an empty or unset XDG_DATA_HOME means ~/.local/share.
    share = workdir / ".local" / "share"
    share.mkdir(parents=True)
    (workdir / "xdg" / "envaudit").rename(share / "envaudit")
    assert bash("envaudit check --name ", XDG_DATA_HOME="") == [["default", "gpu-box"]]
    assert bash("envaudit check --name ", XDG_DATA_HOME=None) == [["default", "gpu-box"]]


def test_bash_completes_comma_separated_lists_and_positional_words(bash):
    assert bash("envaudit check --modes ", "envaudit check --modes eager,g",
                "envaudit record --tflite-optimize f", "envaudit history ",
                "envaudit history show ", "envaudit check --golden b --na") == [
        list(modes.names()), ["eager,graph"], ["float16"], ["show"],
        [],  # a run's ID: only the user knows it
        ["--name"],  # the value of --golden is not a positional
    ]


def test_bash_completes_every_command_option_and_choice_of_the_real_parser(bash, parser):
    """The parser walked here, every command: its options after '-', its subcommands, and each
    option's choices; a new option or choice the script forgot fails here."""
    lines, expected = [], []
    for path, command in every_command(parser):
        prefix = " ".join(["envaudit", *path])
        lines.append(f"{prefix} -")
        expected.append(sorted(flags_of(command)))
        if subcommands_of(command):
            lines.append(f"{prefix} ")
            expected.append(sorted(subcommands_of(command)))
        for flag, offered in options_with_choices(command):
            lines.append(f"{prefix} {flag} ")
            expected.append(sorted(offered))
    assert [sorted(answer) for answer in bash(*lines)] == expected


# --- a hostile grammar: every word is quoted, nothing runs ------------------------------------

HOSTILE_WORDS = ["$(touch pwned)", "`touch pwned`", "it's", "a b", "x:y", "back\\slash",
                 "semi;colon", "*", "{a,b}", "$HOME", "%s%%", "tab]["]
HOSTILE_HELP = "it's $(touch pwned) `touch pwned` 100%% \\ ] [ : \" done"


def hostile_parser(spellable: bool) -> argparse.ArgumentParser:
    """A parser whose words would run commands if a script let its shell read them as code;
    ``spellable``: only option names zsh's _arguments can write."""
    parser = argparse.ArgumentParser(prog="envaudit")
    sub = parser.add_subparsers(dest="command")
    command = sub.add_parser("evil", help=HOSTILE_HELP)
    command.add_argument("--pick", choices=HOSTILE_WORDS, help=HOSTILE_HELP, metavar="A:B[C]\\")
    command.add_argument("value", choices=HOSTILE_WORDS, help=HOSTILE_HELP)
    if not spellable:
        command.add_argument("--x$(touch pwned)", action="store_true", help=HOSTILE_HELP)
    sub.add_parser("it's$(touch pwned)", help=HOSTILE_HELP)
    sub.add_parser("line\ntouch pwned", help="a name that would end a comment")
    return parser


def test_bash_offers_hostile_words_as_literal_words_and_runs_none(tmp_path):
    path = tmp_path / "envaudit.bash"
    path.write_text(script("bash", hostile_parser(spellable=False)))
    picks, values, flags, commands = bash_complete(
        path, ["envaudit evil --pick ", "envaudit evil ", "envaudit evil --x", "envaudit i"],
        tmp_path, cli_env(HOME=str(tmp_path)))
    # Each offer is quoted for the command line: the shell reads it back as the word itself.
    assert [shlex.split(p) for p in picks] == [[w] for w in HOSTILE_WORDS]
    assert [shlex.split(v) for v in values] == [[w] for w in HOSTILE_WORDS]
    assert [shlex.split(f) for f in flags] == [["--x$(touch pwned)"]]
    assert [shlex.split(c) for c in commands] == [["it's$(touch pwned)"]]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_a_command_named_in_a_comment_stays_on_its_line(shell):
    text = script(shell, hostile_parser(spellable=True))
    assert "# envaudit line\\ntouch pwned\n" in text  # the line break escaped, not obeyed


def test_zsh_refuses_an_option_name_its_specs_cannot_spell():
    with pytest.raises(ValueError, match="cannot complete the option"):
        script("zsh", hostile_parser(spellable=False))


# --- completing never starts envaudit or Python -------------------------------------------------


def test_a_tab_runs_no_envaudit_and_no_python(bash, workdir):
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    for name in ("envaudit", "python", "python3"):
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(workdir / 'started'))}\n")
        stub.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    bash("envaudit ", "envaudit check --name ", "envaudit check --golden ", "envaudit fleet check"
         " --format ", "envaudit history show ", PATH=path)
    assert not (workdir / "started").exists()


def test_the_cli_prints_the_script_of_the_parser_it_runs(parser):
    proc = run_cli("completion", "bash")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.rstrip("\n") == script("bash", parser).rstrip("\n")


# --- zsh and fish: the scripts against the parser, as text --------------------------------------


def zsh_function(text: str, path: Sequence[str]) -> str:
    name = "_".join(["_envaudit", *(re.sub(r"[^A-Za-z0-9]", "_", p) for p in path)])
    match = re.search(rf"^{re.escape(name)}\(\) {{\n(.*?)^}}$", text, re.S | re.M)
    assert match, name
    return match.group(1)


def test_the_zsh_script_has_a_spec_for_every_option_and_subcommand(scripts, parser):
    text = scripts["zsh"].read_text()
    assert text.startswith("#compdef envaudit\n")
    for path, command in every_command(parser):
        body = zsh_function(text, path)
        for flag in flags_of(command):
            assert re.search(rf"[)'*]{re.escape(flag)}[=+]?\[", body), (path, flag)
        for name in subcommands_of(command):
            assert f"'{name}:" in body and f"('{name}')" in body, (path, name)
    offered = re.findall(r"words=\((.*)\)", text)
    for _path, command in every_command(parser):
        for flag, words in options_with_choices(command):
            assert " ".join(f"'{w}'" for w in words) in offered, (flag, words)


def test_the_fish_script_completes_every_option_under_its_own_command(scripts, parser):
    text = scripts["fish"].read_text()
    for path, command in every_command(parser):
        condition = fish.quoted(" ".join(["__envaudit_at", fish.quoted(" ".join(path))]))
        lines = [line for line in text.splitlines()
                 if line.startswith(f"complete -c envaudit -n {condition} ")]
        for action in command._actions:
            for flag in action.option_strings:
                spelled = f"-l {fish.quoted(flag[2:])}" if flag.startswith("--") \
                    else f"-s {fish.quoted(flag[1:])}"
                line = next((x for x in lines if spelled in x), None)
                assert line, (path, flag)
                if action.choices:
                    assert f"-x -a {fish.quoted(' '.join(map(fish.quoted, action.choices)))}" \
                        in line, (path, flag)
        condition = fish.quoted(" ".join(["__envaudit_at", fish.quoted(" ".join(path)), "0"]))
        for name in subcommands_of(command):
            assert f"complete -c envaudit -n {condition} -a {fish.quoted(fish.quoted(name))} " \
                in text, (path, name)


# --- zsh and fish, in the real shells where installed -------------------------------------------


def needs(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed here, so its script is checked as text only"
                    f" (install {shell} to drive it)")
    return found


@pytest.mark.parametrize("shell", SHELLS)
def test_each_script_parses_in_its_shell(shell, scripts):
    binary = needs(shell)
    proc = subprocess.run([binary, "-n", str(scripts[shell])], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


def fish_complete(script_path: Path, lines: Sequence[str], cwd: Path,
                  env: dict[str, str]) -> list[list[str]]:
    calls = [f"source {fish.quoted(str(script_path))}"]
    for line in lines:
        calls += [f"complete -C {fish.quoted(line)}", "printf '\\x1e\\n'"]
    proc = subprocess.run([needs("fish"), "--no-config", "-c", "\n".join(calls)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    answers = proc.stdout.split("\x1e\n")[:-1]
    return [[row.split("\t")[0] for row in answer.splitlines()] for answer in answers]


def core_lines() -> list[tuple[str, list[str]]]:
    """(line, what it completes to) in every shell; a folder may end in '/' (fish)."""
    return [
        ("envaudit ch", ["check"]),
        ("envaudit check --fo", ["--format"]),
        ("envaudit check --format ", list(choices("check"))),
        ("envaudit fleet ", ["check", "fingerprint"]),
        ("envaudit fleet check --fo", ["--format"]),
        ("envaudit check --golden ", ["bundle-a", "my dir", "run.json", "xdg"]),
        ("envaudit compare bundle-a ", ["bundle-a", "my dir", "run.json", "xdg"]),
        ("envaudit check --name ", ["default", "gpu-box"]),
        ("envaudit -q ch", ["check"]),
        ("envaudit history ", ["show"]),
        ("envaudit completion ", ["bash", "zsh", "fish"]),
    ]


def test_fish_completes_what_bash_completes(scripts, workdir):
    lines = [line for line, _ in core_lines()]
    answers = fish_complete(scripts["fish"], lines, workdir, shell_env(workdir))
    for (line, expected), answer in zip(core_lines(), answers):
        assert sorted(a.rstrip("/") for a in answer) == sorted(expected), line
    assert fish_complete(scripts["fish"], ["envaudit check --modes eager,g"], workdir,
                         shell_env(workdir)) == [["eager,graph"]]
    assert not (workdir / "pwned").exists()


def test_fish_completes_every_option_of_the_real_parser(scripts, workdir, parser):
    commands = list(every_command(parser))
    answers = fish_complete(scripts["fish"], [" ".join(["envaudit", *p, "-"]) for p, _ in commands],
                            workdir, shell_env(workdir))
    for (path, command), answer in zip(commands, answers):
        assert sorted(set(answer)) == sorted(flags_of(command)), path


def test_fish_offers_hostile_words_and_runs_none(tmp_path):
    path = tmp_path / "envaudit.fish"
    path.write_text(script("fish", hostile_parser(spellable=False)))
    picks, values, flags = fish_complete(
        path, ["envaudit evil --pick ", "envaudit evil ", "envaudit evil --x"], tmp_path,
        cli_env(HOME=str(tmp_path)))
    assert sorted(picks) == sorted(HOSTILE_WORDS)
    assert set(values) >= set(HOSTILE_WORDS)
    assert flags == ["--x$(touch pwned)"]
    assert not (tmp_path / "pwned").exists()


# zsh completes only inside its line editor: an interactive zsh on a pseudo-terminal loads the
# script through compinit, and compadd is wrapped to write what it is given to a file.
ZSH_SETUP = r"""
unsetopt autolist automenu beep
{load}
compadd() {{
  if (( $@[(I)-[OAD]] )); then builtin compadd "$@"; return; fi
  local -a offered
  builtin compadd -O offered "$@"
  (( $#offered )) && print -rl -- $offered >> {log}
  builtin compadd "$@"
}}
_envaudit_test_done() {{ print -r -- '<<done>>' >> {log}; BUFFER='' }}
zle -N _envaudit_test_done
bindkey '^T' _envaudit_test_done
print -r -- '<<done>>' >> {log}
"""


def on_fpath(folder: Path) -> str:
    """zsh's set-up that autoloads the script from ``folder`` (as '_envaudit')."""
    return f"fpath=({shlex.quote(str(folder))} $fpath); autoload -Uz compinit && compinit -u -D"


def zsh_complete(load: str, lines: Sequence[str], cwd: Path,
                 env: dict[str, str]) -> list[list[str]]:
    """What zsh's completion offers at the end of each line (TAB, then ^T to record it), once
    ``load`` set it up."""
    log = cwd / "zsh-offers.log"
    log.write_text("")
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([needs("zsh"), "-f", "-i"], stdin=secondary, stdout=secondary,
                            stderr=secondary, cwd=cwd, env={**env, "TERM": "xterm"},
                            start_new_session=True)
    os.close(secondary)
    try:
        _type(primary, ZSH_SETUP.format(load=load, log=shlex.quote(str(log))), log, 1)
        for number, line in enumerate(lines, start=2):
            _type(primary, line + "\t\x14", log, number)
        os.write(primary, b"exit\n")
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(primary)
    answers = log.read_text().split("<<done>>\n")[1:-1]
    return [answer.splitlines() for answer in answers]


def _type(primary: int, keys: str, log: Path, done: int, timeout: float = 30) -> None:
    """Type ``keys`` and read the terminal until the log holds ``done`` answers."""
    os.write(primary, keys.encode())
    deadline = time.monotonic() + timeout
    while log.read_text().count("<<done>>") < done:
        assert time.monotonic() < deadline, "zsh did not answer"
        if select.select([primary], [], [], 0.05)[0]:
            os.read(primary, 65536)


def test_zsh_completes_what_bash_completes(scripts, workdir):
    lines = [line for line, _ in core_lines()] + [
        "envaudit check --golden b --na", "envaudit check --tolerance a --tol",
        "envaudit check --format=j", "envaudit check --modes eager,g"]
    answers = zsh_complete(on_fpath(scripts["zsh"].parent), lines, workdir, shell_env(workdir))
    for (line, expected), answer in zip(core_lines(), answers):
        # a file name comes quoted for the command line ('my\\ dir')
        assert sorted(re.sub(r"\\(.)", r"\1", a) for a in answer) == sorted(expected), line
    # --golden and --name exclude each other; --tolerance may be given again; the items of a
    # list complete after its comma.
    assert answers[len(core_lines()):] == [[], ["--tolerance"], ["json", "junit"], ["graph"]]
    assert not (workdir / "pwned").exists()


def test_zsh_completes_every_option_of_the_real_parser(scripts, workdir, parser):
    commands = list(every_command(parser))
    answers = zsh_complete(on_fpath(scripts["zsh"].parent),
                           [" ".join(["envaudit", *p, "-"]) for p, _ in commands],
                           workdir, shell_env(workdir))
    for (path, command), answer in zip(commands, answers):
        assert sorted(set(answer)) == sorted(flags_of(command)), path


def test_zsh_offers_hostile_words_and_runs_none(tmp_path):
    folder = tmp_path / "functions"
    folder.mkdir()
    (folder / "_envaudit").write_text(script("zsh", hostile_parser(spellable=True)))
    picks, values, commands = zsh_complete(
        on_fpath(folder), ["envaudit evil --pick ", "envaudit evil ", "envaudit i"], tmp_path,
        cli_env(HOME=str(tmp_path)))
    assert sorted(picks) == sorted(HOSTILE_WORDS)
    assert sorted(values) == sorted(HOSTILE_WORDS)
    assert commands == ["it's$(touch pwned)"]
    assert not (tmp_path / "pwned").exists()


def test_zsh_completes_with_the_script_loaded_after_compinit(scripts, workdir):
    """The other way the docs give: 'eval "$(envaudit completion zsh)"' after compinit."""
    loaded = shlex.quote(str(scripts["zsh"]))
    load = f'autoload -Uz compinit && compinit -u -D; eval "$(<{loaded})"'
    assert zsh_complete(load, ["envaudit fleet ", "envaudit check --format "], workdir,
                        shell_env(workdir)) == [["check", "fingerprint"], list(choices("check"))]


def test_zsh_specs_escape_what_arguments_reads_as_syntax():
    """Without zsh: a description holds no ']' and no backslash, a label's colons are escaped,
    and the words offered never enter a spec (they are in _envaudit_words, quoted)."""
    text = script("zsh", hostile_parser(spellable=True))
    line = next(line for line in text.splitlines() if "--pick=" in line)
    [spec] = shlex.split(line.rstrip(" \\"))
    match = re.fullmatch(r"\(--pick\)--pick=\[([^]\\]*)\]:((?:[^:\\]|\\:)*):"
                         r"(\{_envaudit_words \d+ \"\$\{expl\[@\]\}\"\})", spec)
    assert match, spec
    assert match.group(2) == "A\\:B[C]"
