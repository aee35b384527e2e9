"""What the command line says about itself: each command's help (what it does, its defaults, an
example, its exit codes) and a "did you mean" for a mistyped command, option or choice.

Constraints: standard library only, so ``--help`` and a typo are answered at once; every example
runs as shown; a usage error stays one line on stderr, exit 2, and its hint names the help of the
command it concerns (``see 'envaudit check --help'``), not the top-level help. ``cli.py`` builds
the parser; this module holds its words.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence
from typing import Any

EXIT_USAGE = 2

# Exit codes, as each command uses them (docs/design.md, "Exit codes").
_EXIT_DONE = """exit codes:
  0  done
  2  envaudit could not do it (bad input, unreadable file); one line on stderr says why"""
_EXIT_CHECK = """exit codes:
  0  identical or equivalent (only rounding noise moved)
  1  a finding: drift or precision loss (with --strict: anything not identical)
  2  envaudit could not check (no or corrupt golden, bad input); one line on stderr says why"""
_EXIT_DIFF = """exit codes:
  0  no numerics-relevant field changed
  1  a numerics-relevant field changed
  2  a file could not be read; one line on stderr says why"""
_EXIT_FLEET = """exit codes:
  0  every node ran and no finding (drift, a group apart, a suspected faulty node)
  1  a finding
  2  no node could run, or envaudit could not start; one line on stderr says why"""

_GOLDEN_DEFAULT = ("Which golden: --golden PATH, else --name NAME, else the bundle 'envaudit"
                   " record' wrote\nby default ($XDG_DATA_HOME/envaudit/golden/default), else"
                   " the reference bundle shipped\nwith envaudit (recorded on another machine:"
                   " record your own first).")

# command -> (description, example lines, exit codes)
_COMMANDS: dict[str, tuple[str, Sequence[str], str]] = {
    "fingerprint": (
        "Capture this environment's fingerprint: Python, OS, CPU and its instruction sets, GPU,\n"
        "driver, TensorFlow build, CUDA/cuDNN, numerics libraries, packages and the numerics\n"
        "settings among the environment variables. Does not import TensorFlow.",
        ("envaudit fingerprint", "envaudit fingerprint --format json -o fp.json"),
        _EXIT_DONE),
    "diff": (
        "Compare two fingerprints (JSON files from 'envaudit fingerprint --format json', or\n"
        "golden bundle folders). Numerics-relevant changes first; build details folded\n"
        "unless -v.",
        ("envaudit diff a.json b.json", "envaudit diff golden/reference fp.json -v"),
        _EXIT_DIFF),
    "report": (
        "This environment's fingerprint as Markdown to paste into a bug report; host and user\n"
        "names, home paths and GPU ids are redacted unless --no-redact.",
        ("envaudit report -o env.md",),
        _EXIT_DONE),
    "record": (
        "Run the golden workload (or your own model with --model and --inputs) and store its\n"
        "outputs and this environment's fingerprint as a golden bundle. Record on the machine\n"
        "you trust, then run 'envaudit check' after every change.\n\n"
        "Where: --golden PATH, else --name NAME under $XDG_DATA_HOME/envaudit/golden/\n"
        "(default: 'default', the bundle 'envaudit check' uses when given none).",
        ("envaudit record",
         "envaudit record --model exported/saved_model --inputs images/ --name detector"),
        _EXIT_DONE),
    "check": (
        "Run the workload and compare it, stage by stage, with a golden bundle: the verdict\n"
        "(identical, equivalent, drift, precision loss), what changed in the environment, the\n"
        "detections, and the likely cause, confirmed by re-runs where a setting can be put\n"
        "back.\n\n" + _GOLDEN_DEFAULT,
        ("envaudit check", "envaudit check --name detector --format junit -o report.xml"),
        _EXIT_CHECK),
    "bisect": (
        "A check whose package changes are bisected: environments rebuilt with uv put each\n"
        "changed package back, to confirm or rule it out.\n\n" + _GOLDEN_DEFAULT,
        ("envaudit bisect --golden golden/reference",),
        _EXIT_CHECK),
    "fleet": (
        "The same check (or fingerprint) on every node of a Dask distributed cluster; nodes\n"
        "grouped by fingerprint, and a node that disagrees with its peers named.",
        ("envaudit fleet check --local 2", "envaudit fleet fingerprint --scheduler"
         " tcp://10.0.0.1:8786"),
        _EXIT_FLEET),
    "fleet check": (
        "Run 'envaudit check' on every node, each in a fresh process: groups of nodes by\n"
        "fingerprint, drift per group, and suspected hardware faults (a node that differs from\n"
        "peers with the same fingerprint, re-run to tell transient from persistent).\n\n"
        + _GOLDEN_DEFAULT.replace("--golden PATH, else --name NAME, else", "--golden PATH, else"),
        ("envaudit fleet check --local 2",
         "envaudit fleet check --scheduler tcp://10.0.0.1:8786 --format junit -o fleet.xml"),
        _EXIT_FLEET),
    "fleet fingerprint": (
        "Every node's fingerprint, grouped: which nodes differ, and in what.",
        ("envaudit fleet fingerprint --local 2",),
        _EXIT_FLEET),
    "history": (
        "Past records and checks on this machine, newest last ($XDG_DATA_HOME/envaudit/\n"
        "history.sqlite). Shows the last 20 unless --limit N or --all.\n"
        "'envaudit history show ID' shows one run, every field; 'show' alone, the latest.",
        ("envaudit history", "envaudit history --all --since 2026-01-01", "envaudit history"
         " show"),
        _EXIT_DONE),
    "compare": (
        "Compare two recorded results offline, running nothing: two golden bundles (e.g. one\n"
        "recorded on the GPU box, one on the CPU box) with the statuses, first divergence,\n"
        "detections and fingerprint diff of a check, A taken as the golden; or two check JSON\n"
        "files ('envaudit check --format json'), compared by their arrays' digests.\n"
        "Causes are ranked, never confirmed: nothing can be re-run offline.",
        ("envaudit compare golden/gpu-box golden/cpu-box",
         "envaudit compare before.json after.json --format md -o compare.md"),
        _EXIT_CHECK),
    "config": (
        "The effective configuration: each setting, its value and where it came from. A flag\n"
        "wins over the configuration file, which wins over envaudit's default. The file is\n"
        "envaudit.toml, else [tool.envaudit] in pyproject.toml (never both), in the nearest\n"
        "folder from the current one upwards that holds either, a pyproject.toml or .git.",
        ("envaudit config", "envaudit config --format json"),
        _EXIT_DONE),
    "completion": (
        "A shell completion script for envaudit's commands, options and paths. Load it in\n"
        "your shell's start-up file: for bash, eval \"$(envaudit completion bash)\" in ~/.bashrc;\n"
        "for zsh, save it as _envaudit in a folder on $fpath; for fish, save it as\n"
        "~/.config/fish/completions/envaudit.fish (see docs/completion.md).",
        ("envaudit completion bash", "envaudit completion fish"),
        _EXIT_DONE),
    "cache": (
        "The environments 'envaudit bisect' builds with uv, kept to be reused.",
        ("envaudit cache clear",),
        _EXIT_DONE),
    "cache clear": (
        "Remove every environment envaudit built, and the results cached in them.",
        ("envaudit cache clear",),
        _EXIT_DONE),
}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks (examples and exit codes are lists)."""


def described(command: str) -> dict[str, Any]:
    """``add_parser`` keywords for ``command`` ("check", "fleet check"): its description and an
    epilog of examples and exit codes."""
    text, examples, exits = _COMMANDS[command]
    epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "".join(
        f"  {line}\n" for line in examples) + "\n" + exits
    return {"description": text, "epilog": epilog, "formatter_class": Formatter}


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The one choice ``word`` most likely meant (difflib, as pip and ruff do), or None."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _quoted(choices: Iterable[str]) -> str:
    return ", ".join(choices)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: what is wrong, the likely intended word, and the
    help of the command it concerns; exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "see '" not in message:  # a message may name a better help itself
            message += f"{' ' if message.endswith('?') else '; '}see '{self.prog} --help'"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        meant = did_you_mean(str(value), map(str, action.choices))
        if isinstance(action, argparse._SubParsersAction):
            noun = "action" if action.dest.endswith("_command") else "command"
            if meant is not None:
                message = (f"unknown {noun} {value!r}; did you mean {meant!r}? see"
                           f" '{self.prog} {meant} --help'")
            else:
                message = (f"unknown {noun} {value!r}; the {noun}s are"
                           f" {_quoted(action.choices)}")
        else:
            name = "/".join(action.option_strings) or action.metavar or action.dest
            message = f"{name} {value!r} is not one of {_quoted(map(str, action.choices))}"
            if meant is not None:
                message += f"; did you mean {meant!r}?"
        raise argparse.ArgumentError(None, message)

    def unknown(self, extras: Sequence[str]) -> None:
        """Refuse arguments this (sub)command does not take, naming a close option."""
        first = extras[0]
        if not first.startswith("-") or first == "-":
            self.error(f"unexpected argument {first!r}")
        name = first.split("=", 1)[0]
        meant = did_you_mean(name, self._option_string_actions)
        self.error(f"unknown option {name!r}" + (f"; did you mean {meant!r}?" if meant else ""))
