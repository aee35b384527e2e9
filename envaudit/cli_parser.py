"""The command line's grammar: every command, option and default, built on ``cli_help``'s words.

Constraints: standard library only and no envaudit module that imports NumPy or TensorFlow, so
``--help`` and a usage error are answered at once; every option that takes a path refuses an empty
one (it would silently mean "the default"); ``-q`` and ``-v`` are accepted before or after the
command. What runs a command is ``cli.py``'s business: it passes its handlers in.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from envaudit.cli_help import Formatter, Parser, described
from envaudit.compare.types import DEFAULT_GROWTH_TARGET
from envaudit.render.formats import choices
from envaudit.tf32 import OPTIONS
from envaudit.tflite_settings import KERNELS as TFLITE_KERNELS
from envaudit.tflite_settings import KERNELS_VARIABLE, THREADS_VARIABLE
from envaudit.version import __version__

Handler = Callable[[argparse.Namespace], int]

_NO_REDACT = "show host and user names, home paths and GPU ids (secrets stay hidden)"
_VERBOSE = ("more detail: every environment change in the text table of check and diff,"
            " build details included")
_OUTPUT = "write to FILE instead of stdout (one summary line goes to stderr)"
_ALSO = ("also write the same result in FORMAT to FILE, e.g. --also html=report.html; repeat for"
         " several (one run, every report)")
HISTORY_SHOWN = 20  # runs 'envaudit history' lists without --limit or --all
_NO_HISTORY = ("do not append this run to the history ($XDG_DATA_HOME/envaudit/history.sqlite;"
               " ENVAUDIT_HISTORY=off does the same)")
# A switch a configuration file can turn (envaudit.config) needs a flag that turns it back, or a
# file's 'redact = false' could not be undone for one report: switch -> its opposite, and help.
_OPPOSITES = {
    "--no-redact": ("--redact", "redact (the default): undoes redact = false from a"
                                " configuration file"),
    "--no-history": ("--history", "append this run to the history (the default): undoes"
                                  " history = false from a configuration file"),
    "--no-confirm": ("--confirm", "run the confirmation re-runs (the default): undoes"
                                  " confirm = false from a configuration file"),
    "--strict": ("--no-strict", "exit 1 only on a finding (the default): undoes strict = true"
                                " from a configuration file"),
}


def build_parser(handlers: Mapping[str, Handler]) -> Parser:
    """The whole grammar; ``handlers`` maps each command ("check", "fleet check") to the
    function that runs it (``cli.py``)."""
    # pragma: no mutate start
    parser = Parser(
        prog="envaudit",
        description="Did your environment change the numbers your detection model produces?\n\n"
                    "Start with 'envaudit record' on a machine you trust, then run 'envaudit"
                    " check'\nafter every change.",
        epilog="'envaudit COMMAND --help' describes a command: its defaults, an example and its"
               " exit codes.",
        formatter_class=Formatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"envaudit {__version__}")
    _loudness(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = _command(sub, "fingerprint", "capture this environment's fingerprint")
    p.add_argument("--format", choices=choices("fingerprint"), default="text",
                   help="default: text")
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    # pragma: no mutate end
    p.set_defaults(handler=handlers["fingerprint"])

    # pragma: no mutate start
    p = _command(sub, "diff", "compare two fingerprints (JSON files or golden bundles)")
    p.add_argument("a", metavar="A", help="fingerprint JSON file or golden bundle folder")
    p.add_argument("b", metavar="B", help="fingerprint JSON file or golden bundle folder")
    p.add_argument("--format", choices=choices("diff"), default="text", help="default: text")
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    p.add_argument("--no-redact", action="store_true", help=_NO_REDACT)
    # pragma: no mutate end
    p.set_defaults(handler=handlers["diff"])

    # pragma: no mutate start
    p = _command(sub, "report", "a redacted Markdown fingerprint to paste into a bug report")
    p.add_argument("--no-redact", action="store_true", help=_NO_REDACT)
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    # pragma: no mutate end
    p.set_defaults(handler=handlers["report"])

    # pragma: no mutate start
    p = _command(sub, "record", "run the golden workload and store a golden bundle")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--golden", metavar="PATH", type=_path, help="bundle folder to write")
    where.add_argument("--name", default="default",
                       help="bundle name under $XDG_DATA_HOME/envaudit/golden/ (default:"
                            " default, the one check uses without --golden)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    p.add_argument("--no-redact", action="store_true",
                   help="store the fingerprint with host, user and paths (secrets never)")
    p.add_argument("--model", metavar="PATH", type=_path,
                   help="record your own model instead: a SavedModel folder or a .keras file")
    p.add_argument("--inputs", metavar="PATH", type=_path,
                   help="with --model: a folder of PNG/JPEG images or an .npz of named arrays")
    p.add_argument("--signature", metavar="NAME",
                   help="with --model: the SavedModel signature to run (default serving_default)")
    p.add_argument("--detections", metavar="boxes=NAME,scores=NAME,classes=NAME[,count=NAME]",
                   help="with --model: the outputs that hold detections (the Object Detection"
                        " API's names are recognised without it)")
    p.add_argument("--train-inputs", metavar="PATH", type=_path,
                   help="with a compiled .keras --model: an .npz of inputs and targets (x and y,"
                        " or named like the model's inputs and outputs) to record the model's"
                        " own training steps on, each on the whole file")
    p.add_argument("--steps", type=_count, default=None, metavar="N",
                   help="steps of the canary's own training to record beside it, or with"
                        " --train-inputs of your model's (default 3; 0: none for the canary;"
                        " e.g. 100 to see how a difference grows)")
    p.add_argument("--training-modes", type=_modes, metavar="MODE,...",
                   help="modes to record the training steps in: eager, graph, xla (default:"
                        " eager,graph; xla compiles the whole step, which takes seconds)")
    p.add_argument("--modes", type=_modes, metavar="MODE,...",
                   help="execution modes to record: eager, graph, xla (the default), and the"
                        " deployment runtimes tflite, tflite-float16, tflite-dynamic-range,"
                        " onnx; with --model, one mode: tflite (or an optimized one) converts"
                        " your model")
    p.add_argument("--tflite-optimize", type=_optimizations, metavar="OPT,...",
                   help="also record the TFLite model converted with these optimizations, each"
                        " as its own mode: float16, dynamic-range")
    p.add_argument("--no-history", action="store_true", help=_NO_HISTORY)
    _tf32(p)
    _tflite(p)
    # pragma: no mutate end
    p.set_defaults(handler=handlers["record"])

    # pragma: no mutate start
    p = _command(sub, "check", "run the workload and compare it with a golden bundle")
    _golden_choice(p)
    p.add_argument("--repeat", type=_positive_int, default=1, metavar="N",
                   help="run the workload N times to measure nondeterminism (default 1)")
    p.add_argument("--no-confirm", action="store_true", help="skip confirmation re-runs")
    p.add_argument("--strict", action="store_true", help="exit 1 on any non-identical result")
    p.add_argument("--modes", type=_modes, metavar="MODE,...",
                   help="execution modes to check: eager, graph, xla (default: all the golden"
                        " recorded)")
    p.add_argument("--model", metavar="PATH", type=_path,
                   help="a golden of your own model: where the model is now, if it moved")
    p.add_argument("--tolerance", action="append", metavar="[OUTPUT=]rtol:X,atol:Y",
                   help="a difference you accept in an output of your model (or, without"
                        " OUTPUT=, in every output); repeat for several (default: none)")
    p.add_argument("--detections", metavar="boxes=NAME,scores=NAME,classes=NAME[,count=NAME]",
                   help="the outputs of your model that hold detections")
    p.add_argument("--bisect", action="store_true",
                   help="confirm or rule out package changes by rebuilding environments with uv")
    p.add_argument("--growth-target", type=_positive_float, default=DEFAULT_GROWTH_TARGET,
                   metavar="X",
                   help="the relative weight difference the training steps' growth is projected"
                        f" to (default {DEFAULT_GROWTH_TARGET:g})")
    _tf32(p)
    _tflite(p)
    _check_output(p)
    # pragma: no mutate end
    p.set_defaults(handler=handlers["check"])

    # pragma: no mutate start
    p = _command(sub, "bisect", "check, and bisect the package changes in environments rebuilt"
                                " with uv")
    _golden_choice(p)
    p.add_argument("--model", metavar="PATH", type=_path,
                   help="a golden of your own model: where the model is now, if it moved")
    p.add_argument("--no-confirm", action="store_true", help="skip confirmation re-runs")
    p.add_argument("--strict", action="store_true", help="exit 1 on any non-identical result")
    _check_output(p)
    p.set_defaults(handler=handlers["bisect"], repeat=1, modes=None, tolerance=None,
                   detections=None, tf32="default", growth_target=DEFAULT_GROWTH_TARGET,
                   tflite_kernels=None, tflite_threads=None)
    # pragma: no mutate end

    # pragma: no mutate start
    p = _command(sub, "fleet", "check every node of a Dask distributed cluster")
    fleet = p.add_subparsers(dest="fleet_command", metavar="ACTION", parser_class=Parser,
                             required=True)
    fc = _command(fleet, "check", "run envaudit check on every node: groups, drift and suspected"
                                  " hardware faults", "fleet check")
    fc.add_argument("--golden", metavar="PATH", type=_path,
                    help="golden bundle folder (default: as 'envaudit check')")
    fc.add_argument("--timeout", type=_positive_int, default=600, metavar="S",
                    help="seconds one node's check may take (default 600)")
    fc.add_argument("--rerun", type=_count, default=2, metavar="K",
                    help="re-runs of a suspected faulty node on that node (default 2)")
    fc.add_argument("--modes", type=_modes, metavar="MODE,...",
                    help="execution modes each node checks (default: all the golden recorded)")
    fc.add_argument("--no-history", action="store_true", help=_NO_HISTORY)
    ff = _command(fleet, "fingerprint", "every node's fingerprint, grouped", "fleet fingerprint")
    for q, formats in ((fc, choices("fleet check")), (ff, choices("fleet fingerprint"))):
        where = q.add_mutually_exclusive_group(required=True)
        where.add_argument("--scheduler", metavar="ADDRESS",
                           help="the Dask scheduler, e.g. tcp://10.0.0.1:8786 or"
                                " tls://10.0.0.1:8786")
        where.add_argument("--local", type=_positive_int, metavar="N",
                           help="start a local Dask cluster of N workers (a try on one machine)")
        q.add_argument("--format", choices=formats, default="text", help="default: text")
        q.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
        q.add_argument("--no-redact", action="store_true", help=_NO_REDACT)
        q.add_argument("--tls-ca-file", metavar="PEM", type=_path,
                       help="tls:// scheduler: the CA that signed its certificate")
        q.add_argument("--tls-cert", metavar="PEM", type=_path,
                       help="tls:// scheduler: this client's certificate")
        q.add_argument("--tls-key", metavar="PEM", type=_path,
                       help="tls:// scheduler: the certificate's private key")
    # pragma: no mutate end
    fc.set_defaults(handler=handlers["fleet check"])
    ff.set_defaults(handler=handlers["fleet fingerprint"])

    # pragma: no mutate start
    p = _command(sub, "history", "past records and checks on this machine (envaudit history;"
                                 " envaudit history show [ID])")
    p.add_argument("action", nargs="*", metavar="show [ID]",
                   help="one run, all its fields (without ID: the latest)")
    p.add_argument("--golden", metavar="PATH", type=_path, help="only runs against this golden")
    p.add_argument("--since", metavar="DATE", help="only runs at or after DATE (ISO, UTC)")
    count = p.add_mutually_exclusive_group()
    count.add_argument("--limit", type=_positive_int, default=HISTORY_SHOWN, metavar="N",
                       help=f"show the last N runs (default {HISTORY_SHOWN})")
    count.add_argument("--all", action="store_true", help="show every run")
    p.add_argument("--format", choices=choices("history"), default="text", help="default: text")
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    p.set_defaults(handler=handlers["history"])
    # pragma: no mutate end

    # pragma: no mutate start
    p = _command(sub, "compare", "compare two recorded bundles or check JSONs, offline")
    p.add_argument("a", metavar="A", type=_path,
                   help="golden bundle folder or check JSON file: the reference")
    p.add_argument("b", metavar="B", type=_path,
                   help="golden bundle folder or check JSON file: compared with A")
    p.add_argument("--strict", action="store_true", help="exit 1 on any non-identical result")
    p.add_argument("--format", choices=choices("check"), default="text", help="default: text")
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    p.add_argument("--also", action="append", type=_also, metavar="FORMAT=FILE", help=_ALSO)
    p.add_argument("--no-redact", action="store_true", help=_NO_REDACT)
    p.set_defaults(handler=handlers["compare"])

    p = _command(sub, "config", "the effective configuration and where each value came from")
    p.add_argument("--format", choices=choices("config"), default="text", help="default: text")
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    p.set_defaults(handler=handlers["config"])

    p = _command(sub, "completion", "a shell completion script: bash, zsh or fish")
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    p.set_defaults(handler=handlers["completion"])
    # pragma: no mutate end

    # pragma: no mutate start
    p = _command(sub, "cache", "the environments --bisect builds")
    cache = p.add_subparsers(dest="cache_command", metavar="ACTION", parser_class=Parser,
                             required=True)
    clear = _command(cache, "clear", "remove every environment envaudit built, and the results"
                                     " cached in them", "cache clear")
    # pragma: no mutate end
    clear.set_defaults(handler=handlers["cache clear"])
    _opposites(parser)
    return parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by the words that name it ("check", "fleet check"), in the order of
    the grammar; groups of commands ("fleet", "cache") are not commands."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                inner = commands(sub)
                found.update({f"{word} {k}": q for k, q in inner.items()} if inner else
                             {word: sub})
    return found


def given(fresh: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The destinations the command line ``argv`` set itself, however its options were
    abbreviated: ``argv`` parsed again by ``fresh`` with every default taken out, so only what was
    typed lands in the namespace. ``fresh`` is spent (a parser built for this call alone)."""
    for p in _tree(fresh):
        p._defaults.clear()  # set_defaults: the handler, bisect's fixed values
        for action in p._actions:
            action.default = argparse.SUPPRESS
    namespace, _ = fresh.parse_known_args(argv)
    return set(vars(namespace))


def _tree(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every parser below it, groups of commands included."""
    below = [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
             for sub in action.choices.values()]
    return [parser, *(q for sub in below for q in _tree(sub))]


def _opposites(parser: argparse.ArgumentParser) -> None:
    """Beside each configurable switch, the flag that turns it back (``_OPPOSITES``)."""
    for p in commands(parser).values():
        for switch, (opposite, words) in _OPPOSITES.items():
            action = p._option_string_actions.get(switch)
            if action is not None:
                p.add_argument(opposite, dest=action.dest, action="store_false",
                               default=argparse.SUPPRESS, help=words)


def _command(sub: Any, name: str, summary: str, key: str | None = None) -> Parser:
    """A subcommand with its description, example and exit codes (``cli_help``), -q and -v, and
    itself in the namespace, so an argument it does not take is refused by it (naming its help)."""
    p = sub.add_parser(name, help=summary, **described(key or name))
    _loudness(p)
    p.set_defaults(parser=p)
    return p


def _loudness(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before or after the command, either counts ('envaudit -q check' and
    # 'envaudit check -q'), and a subcommand's default never overwrites the top level's.
    # pragma: no mutate start
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="print only the result (the headline of a check) and errors")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help=_VERBOSE)
    # pragma: no mutate end


def _golden_choice(p: argparse.ArgumentParser) -> None:
    # pragma: no mutate start
    where = p.add_mutually_exclusive_group()
    where.add_argument("--golden", metavar="PATH", type=_path,
                       help="golden bundle folder (default: see above)")
    where.add_argument("--name", help="a bundle recorded with 'envaudit record --name NAME'")
    # pragma: no mutate end


def _tf32(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tf32", choices=OPTIONS, default="default",
                   help="TensorFlow's TF32 switch (tensor-core fp32 math on Ampere and later GPUs)"
                        " for the run and every re-run: on, off, or default (TensorFlow's own"
                        " choice); the state it had is recorded")


def _tflite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tflite-kernels", choices=TFLITE_KERNELS, metavar="KERNELS",
                   help="the LiteRT kernels the tflite modes run on: xnnpack (LiteRT's default),"
                        f" builtin or reference (sets {KERNELS_VARIABLE}, which re-runs put back)")
    p.add_argument("--tflite-threads", type=_positive_int, metavar="N",
                   help="the LiteRT interpreter's thread count for the tflite modes (default:"
                        f" LiteRT's own; sets {THREADS_VARIABLE})")


def _check_output(p: argparse.ArgumentParser) -> None:
    # pragma: no mutate start
    p.add_argument("--format", choices=choices("check"), default="text",
                   help="default: text; html: one self-contained page with charts and the boxes"
                        " on the images")
    p.add_argument("-o", "--output", metavar="FILE", type=_path, help=_OUTPUT)
    p.add_argument("--also", action="append", type=_also, metavar="FORMAT=FILE", help=_ALSO)
    p.add_argument("--no-redact", action="store_true", help=_NO_REDACT)
    p.add_argument("--no-history", action="store_true", help=_NO_HISTORY)
    # pragma: no mutate end


def _also(text: str) -> tuple[str, str]:
    """``--also FORMAT=FILE``: one more report of the same result, in a file."""
    fmt, sep, path = text.partition("=")
    if not sep or fmt not in choices("check"):
        raise argparse.ArgumentTypeError(f"{text!r} is not FORMAT=FILE with FORMAT one of"
                                         f" {', '.join(choices('check'))}")
    return fmt, _path(path)


def _whole_number(text: str, least: int) -> int:
    # ASCII digits only: int() also reads digits of other scripts ('٣'), which nobody types here.
    if not re.fullmatch(r"\s*[+-]?[0-9]{1,18}\s*", text, flags=re.ASCII):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    value = int(text)
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _count(text: str) -> int:
    return _whole_number(text, 0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number (e.g. 1e-3)")
    return value


def _optimizations(text: str) -> tuple[str, ...]:
    from envaudit.modes import TFLITE_OPTIMIZATIONS

    chosen = tuple(o.strip() for o in text.split(",") if o.strip())
    if not chosen or any(o not in TFLITE_OPTIMIZATIONS for o in chosen):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of optimizations from"
                                         f" {', '.join(TFLITE_OPTIMIZATIONS)}")
    return chosen


def _modes(text: str) -> tuple[str, ...]:
    from envaudit import modes as registry

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or registry.unknown(modes):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of modes from"
                                         f" {', '.join(registry.names())}")
    return modes


def _path(text: str) -> str:
    # An empty path would silently mean "the default": the default bundle, or stdout.
    if not text:
        raise argparse.ArgumentTypeError("is empty; give a path or leave the option out")
    return text
