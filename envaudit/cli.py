"""Command line: the handlers of each command, output and exit codes, nothing else (the
grammar and its help are ``cli_parser`` and ``cli_help``).

Exit codes (docs/design.md, "Exit codes"): 0 identical/equivalent or nothing numerics-relevant
changed; 1 a finding (drift, precision loss, a numerics-relevant change); 2 envaudit could not do
its job. A user error is an ``EnvauditError``: one line on stderr, exit 2, never a traceback.

Heavy modules (TensorFlow above all) are imported inside the handlers that need them, so
``envaudit fingerprint`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envaudit import cli_parser, interrupt, tflite_settings
from envaudit.cli_parser import _path, _positive_int  # noqa: F401  (tests use them from here)
from envaudit.errors import EnvauditError
from envaudit.render.escape import TerminalSafe, for_document, for_terminal

EXIT_OK, EXIT_FINDING, EXIT_ERROR = 0, 1, 2


def _console(file: Any = None):
    """A rich console for stdout (``file`` None) or a plain one for ``file``.

    Off a terminal (a pipe, a file, -o) lines are not wrapped: ``| head -1`` or ``grep`` gets a
    whole headline. Tables still fit 120 columns (rich lays them out to the console's width), so
    a log stays readable."""
    from rich.console import Console

    if file is not None:
        return Console(
            file=file, no_color=True, force_terminal=False, width=120, soft_wrap=True,
            highlight=False,  # pragma: no mutate
        )
    # pragma: no mutate start
    piped = not sys.stdout.isatty()
    console = Console(no_color=bool(os.environ.get("NO_COLOR")), soft_wrap=piped,
                      highlight=False, width=120 if piped else None)
    # pragma: no mutate end
    # rich answers a broken pipe with SystemExit(1), which would bypass main() and report a
    # finding that may not exist; hand it back as the error it is.
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return console


def _broken_pipe() -> None:
    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def _emit(output: Any, out_path: str | None) -> None:
    """Print a str or rich renderable to stdout, or write it to ``out_path`` as plain text."""
    # Every renderer escapes a stranger's strings for its format (render/escape.py); this is the
    # net under one that forgot: no control character but a line break leaves envaudit.
    interrupt.stop_if_heard()  # no report for a command the user interrupted
    if isinstance(output, str):
        output = for_document(output)
    if out_path:
        from envaudit.output import write_text

        if isinstance(output, str):
            write_text(out_path, output)
        else:
            buffer = io.StringIO()
            _console(buffer).print(TerminalSafe(output))
            write_text(out_path, buffer.getvalue())
        return
    if sys.stdout is None:  # started with stdout closed ('>&-')
        raise EnvauditError("stdout is closed, so the output has nowhere to go; "
                            "write it to a file with -o FILE")
    try:
        if isinstance(output, str):
            sys.stdout.write(output if output.endswith("\n") else output + "\n")
        else:
            _console().print(TerminalSafe(output))
        # Flushed here, not at exit, so a lost reader is reported with the right exit code.
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise EnvauditError("the output was not fully written: the program reading stdout "
                            "closed it early (broken pipe); read all of it, or use -o FILE") \
            from None
    except OSError as exc:
        _silence_stdout()
        raise EnvauditError(f"the output was not fully written: cannot write to stdout "
                            f"({exc.strerror or exc}); write it to a file with -o FILE") from None


def _silence_stdout() -> None:
    """Point fd 1 at the null device, so the interpreter's last flush of what is still buffered
    cannot fail again with 'Exception ignored' noise (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass


# --- handlers -------------------------------------------------------------------------------


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from envaudit.fingerprint import capture

    fp = capture()
    _fingerprint_out(fp, args)
    _written(args, f"fingerprint {fp.fingerprint_id}")
    return EXIT_OK


def _fingerprint_out(fp: Any, args: argparse.Namespace) -> None:
    from envaudit.render.formats import writer

    _emit(writer("fingerprint", args.format).render(fp), args.output)


def _cmd_diff(args: argparse.Namespace) -> int:
    from envaudit.fingerprint import diff
    from envaudit.fingerprint.load import load_pair

    a, b = load_pair(args.a, args.b)
    changes = diff(a, b)
    finding = any(c.numerics for c in changes)
    if not args.no_redact:
        from envaudit.redact_result import shareable_diff

        a, b, changes = shareable_diff(a, b, changes)
    from envaudit.render.formats import writer

    renderer = writer("diff", args.format)
    if args.format != "text":
        _emit(renderer.render(a, b, changes), args.output)
    else:
        _emit(renderer.summary(changes) if args.quiet else
              renderer.render(a, b, changes, verbose=args.verbose), args.output)
    code = EXIT_FINDING if finding else EXIT_OK
    numerics = sum(1 for c in changes if c.numerics)
    _written(args, f"{numerics} numerics-relevant change(s) (exit {code}); diff")
    return code


def _cmd_report(args: argparse.Namespace) -> int:
    from envaudit.fingerprint import capture
    from envaudit.render import fingerprint_md

    fp = capture()
    _emit(fingerprint_md.render(fp, redact=not args.no_redact), args.output)
    _written(args, f"report of fingerprint {fp.fingerprint_id}")
    return EXIT_OK


def _cmd_record(args: argparse.Namespace) -> int:
    from envaudit.record import record
    from envaudit.store import default_bundle_path

    path = Path(args.golden) if args.golden else default_bundle_path(args.name)
    notes: list[str] = []  # what the user should know about a model's recording
    modes = _recorded_modes(args)
    tflite_settings.apply(args.tflite_kernels, args.tflite_threads)
    if args.model is None:
        for option, value in (("--inputs", args.inputs), ("--signature", args.signature),
                              ("--detections", args.detections),
                              ("--train-inputs", args.train_inputs)):
            if value is not None:
                raise EnvauditError(f"{option} describes your own model: pass --model PATH too")
        with _progress("recording golden workload", args.quiet) as progress:  # pragma: no mutate
            bundle = record(path, force=args.force, redact=not args.no_redact,
                            progress=progress, tf32=args.tf32, steps=args.steps,
                            training_modes=args.training_modes, modes=modes,
                            note=notes.append)
    else:
        if args.training_modes is not None:
            raise EnvauditError("--training-modes records the canary's training steps; your"
                                " model trains in the mode it runs in (--train-inputs)")
        if args.inputs is None:
            raise EnvauditError("--model needs --inputs PATH: a folder of PNG/JPEG images or an"
                                " .npz of named arrays to run the model on")
        from envaudit.usermodel.record import record_model
        from envaudit.usermodel.spec import parse_detections

        detections = parse_detections(args.detections) if args.detections else None
        with _progress("recording your model", args.quiet) as progress:  # pragma: no mutate
            bundle = record_model(path, model=Path(args.model), inputs=Path(args.inputs),
                                  signature=args.signature, detections=detections,
                                  force=args.force, redact=not args.no_redact,
                                  progress=progress, note=notes.append, tf32=args.tf32,
                                  train_inputs=(Path(args.train_inputs) if args.train_inputs
                                                else None), steps=args.steps,
                                  mode=_one_mode(modes))
    if not args.quiet:
        _say(f"recorded golden bundle {_one_line(str(bundle.path))} ({bundle.array_count}"
             " arrays)")
        for note in notes:  # after the progress line is gone
            _say(f"envaudit: note: {_one_line(note)}")
    if _history_on(args):
        from envaudit import history

        _warn(history.append_record(bundle))
    return EXIT_OK


def _recorded_modes(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The modes ``--modes`` and ``--tflite-optimize`` ask to record (None: the default)."""
    from envaudit import modes as registry

    if not args.tflite_optimize:
        return args.modes
    if args.model is not None and args.modes is None:
        return tuple(registry.TFLITE_OPTIMIZATIONS[o] for o in args.tflite_optimize)
    base = args.modes or registry.recorded_by_default()
    return registry.in_order([*base, *(registry.TFLITE_OPTIMIZATIONS[o]
                                       for o in args.tflite_optimize)])


def _one_mode(modes: tuple[str, ...] | None) -> str | None:
    """The one mode a user model is recorded in (None: the mode its own run uses)."""
    if modes is not None and len(modes) != 1:
        raise EnvauditError(f"a model is recorded in one mode, not {len(modes)}"
                            f" ({', '.join(modes)}); record one bundle per mode")
    return modes[0] if modes else None


def _cmd_check(args: argparse.Namespace) -> int:
    from envaudit.pipeline.compose import check
    from envaudit.usermodel.spec import parse_detections, parse_tolerances

    _reports_apart(args)
    tflite_settings.apply(args.tflite_kernels, args.tflite_threads)
    golden = args.golden
    if getattr(args, "name", None) is not None:
        from envaudit.store import default_bundle_path

        golden = str(default_bundle_path(args.name))
    with _progress("checking", args.quiet) as progress:  # pragma: no mutate
        result = check(
            golden=golden,
            repeat=args.repeat,
            confirm=not args.no_confirm,
            strict=args.strict,
            modes=args.modes,
            progress=progress,
            model=args.model,
            tolerances=parse_tolerances(args.tolerance) if args.tolerance else None,
            detections=parse_detections(args.detections) if args.detections else None,
            bisect=args.bisect,
            tf32=args.tf32,
            growth_target=args.growth_target,
        )
    for note in () if args.quiet else result.notes:
        _say(f"envaudit: note: {_one_line(note)}")
    if _history_on(args):
        result = _remember_check(result, "bisect" if args.bisect else "check")
    return _check_out(result, args)


def _check_out(result: Any, args: argparse.Namespace) -> int:
    """A check's result written as asked (redacted unless --no-redact); its exit code."""
    if not args.no_redact:
        from envaudit.redact_result import shareable

        result = shareable(result)
    _emit(_check_report(result, args.format, args.quiet, args.verbose), args.output)
    for fmt, path in args.also or ():
        _emit(_check_report(result, fmt, False, args.verbose), path)
    return _checked(result, args)


def _check_report(result: Any, fmt: str, quiet: bool, verbose: bool) -> Any:
    """The result in one format: a str, or a rich renderable for text."""
    from envaudit.render.formats import writer

    renderer = writer("check", fmt)
    if fmt != "text":
        return renderer.render(result)
    return renderer.headline(result) if quiet else renderer.render(result, verbose=verbose)


def _reports_apart(args: argparse.Namespace) -> None:
    """Each ``--also`` report in a file of its own, apart from ``-o``'s, said before the run (a
    check takes minutes): stdout is for ``-o`` or the default alone."""
    from envaudit.output import is_stdout

    named = [path for _fmt, path in args.also or ()]
    for path in named:
        if is_stdout(path):
            raise EnvauditError(f"--also writes to a file, not to {path}; -o {path} (or no -o)"
                                " is the report on stdout")
    if args.output:
        named.append(args.output)
    seen: set[str] = set()
    for path in named:
        if os.path.abspath(path) in seen:
            raise EnvauditError(f"{path} is named twice among -o and --also; give each report"
                                " its own file")
        seen.add(os.path.abspath(path))


def _cmd_compare(args: argparse.Namespace) -> int:
    _reports_apart(args)
    from envaudit.pipeline.offline import compare

    return _check_out(compare(args.a, args.b, strict=args.strict), args)


def _cmd_config(args: argparse.Namespace) -> int:
    from envaudit import config
    from envaudit.render.formats import writer

    _emit(writer("config", args.format).render(config.effective()), args.output)
    _written(args, "configuration")
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace) -> int:
    from envaudit.completion import script

    _emit(script(args.shell, build_parser()), None)
    return EXIT_OK


def _checked(result: Any, args: argparse.Namespace) -> int:
    """The exit code, after one line on stderr naming the verdict and the files written."""
    from envaudit.output import is_stdout

    strict = " (--strict)" if result.strict else ""
    what = f"{result.verdict.replace('_', ' ')} (exit {result.exit_code}{strict})"
    files = [path for path in [args.output, *(p for _f, p in args.also or ())]
             if path and not is_stdout(path)]
    if files and not args.quiet:
        reports = "report" if len(files) == 1 else "reports"
        _say(f"envaudit: {what}; {reports} written to {_one_line(', '.join(files))}")
    return result.exit_code


def _history_on(args: argparse.Namespace) -> bool:
    from envaudit.history import history_enabled

    return history_enabled(bool(getattr(args, "no_history", False)))


def _warn(line: str | None) -> None:
    if line:
        _say(f"envaudit: warning: {_one_line(line)}")


def _written(args: argparse.Namespace, what: str) -> None:
    """With ``-o FILE``, one line on stderr: "envaudit: drift (exit 1); report written to FILE"
    (``what`` is all before "written"), so the terminal is not left silent. Not with -q, and not
    when FILE is stdout itself."""
    from envaudit.output import is_stdout

    if args.output and not is_stdout(args.output) and not args.quiet:
        _say(f"envaudit: {_one_line(what)} written to {_one_line(args.output)}")


def _remember_check(result: Any, command: str) -> Any:
    """The check with what changed since the last identical check of its golden, appended to the
    history (as captured: it stays on this machine). A history that cannot be read or written is
    one warning line; the check goes on."""
    import dataclasses

    from envaudit import history

    golden_sha = result.golden_sha256
    if not golden_sha:  # a result that names no golden bundle: nothing to remember it by
        return result
    result = dataclasses.replace(
        result, since_last_identical=history.since_last_identical(result, golden_sha))
    _warn(history.append_check(result, golden_sha,
                               command="check" if command == "check" else command))
    return result


def _cmd_history(args: argparse.Namespace) -> int:
    from envaudit import history
    from envaudit.render.formats import writer

    action = list(args.action)
    path = history.default_path()
    if action:
        return _history_show(action, path, args)
    since = history.parse_since(args.since) if args.since else None
    golden_sha = None
    if args.golden:
        from envaudit.store import read_manifest

        golden_sha = str(read_manifest(Path(args.golden))["manifest_sha256"])
    limit = None if args.all else args.limit
    runs = history.runs(path, golden_sha=golden_sha, since=since, limit=limit)
    _emit(writer("history", args.format).render(runs, path), args.output)
    if limit is not None and len(runs) == limit and not args.quiet:
        total = history.count(path, golden_sha=golden_sha, since=since)
        if total > limit:  # on stderr: the table on stdout stays one row per run
            _say(f"envaudit: the last {limit} of {total} runs; --all lists every one,"
                 " --limit N the last N")
    _written(args, f"{len(runs)} run(s)")
    return EXIT_OK


def _history_show(action: list[str], path: Path, args: argparse.Namespace) -> int:
    """``history show ID``, or ``history show`` alone: the latest run."""
    from envaudit import history
    from envaudit.cli_help import did_you_mean
    from envaudit.render.formats import writer

    if action[0] != "show" or len(action) > 2:
        meant = did_you_mean(action[0], ["show"]) if action[0] != "show" else None
        raise EnvauditError(f"unknown history action {' '.join(action)!r}; "
                            + (f"did you mean {meant!r}? " if meant else "")
                            + "'envaudit history' lists runs, 'envaudit history show [ID]' shows"
                              " one (the latest without ID)")
    if len(action) == 1:
        found = history.latest(path)
        if found is None:
            raise EnvauditError(f"no runs on record in {path}; 'envaudit check' or 'envaudit"
                                " record' adds one")
    else:
        found = history.run(history.parse_run_id(action[1]), path)
        if found is None:
            raise EnvauditError(f"no run {action[1]} in {path}; 'envaudit history' lists them")
    _emit(writer("history", args.format).render_run(found), args.output)
    _written(args, f"run {found.id}")
    return EXIT_OK


def _cmd_bisect(args: argparse.Namespace) -> int:
    """``envaudit bisect``: a check whose package changes are bisected."""
    args.bisect = True
    return _cmd_check(args)


def _cmd_fleet_check(args: argparse.Namespace) -> int:
    from envaudit.fleet.run import fleet_check

    with _progress("fleet check", args.quiet) as progress:  # pragma: no mutate
        report = fleet_check(scheduler=args.scheduler, local=args.local, golden=args.golden,
                             timeout=args.timeout, rerun=args.rerun, redact=not args.no_redact,
                             modes=args.modes, tls=_tls(args), progress=_node_lines(progress))
    if _history_on(args):
        from envaudit import history
        from envaudit.store import read_manifest, resolve_golden

        try:
            golden_sha = str(read_manifest(resolve_golden(args.golden))["manifest_sha256"])
        except EnvauditError as exc:  # the golden went away after the run: say so, go on
            _warn(f"history not recorded: {exc}")
        else:
            _warn(history.append_fleet(report.to_dict(), golden_sha))
    return _emit_fleet(report, args)


def _cmd_fleet_fingerprint(args: argparse.Namespace) -> int:
    from envaudit.fleet.run import fleet_fingerprint

    with _progress("fleet fingerprint", args.quiet) as progress:  # pragma: no mutate
        report = fleet_fingerprint(scheduler=args.scheduler, local=args.local,
                                   redact=not args.no_redact, tls=_tls(args),
                                   progress=_node_lines(progress))
    return _emit_fleet(report, args)


def _tls(args: argparse.Namespace) -> Any:
    from envaudit.fleet.address import TlsFiles

    return TlsFiles(args.tls_ca_file, args.tls_cert, args.tls_key)


def _emit_fleet(report: Any, args: argparse.Namespace) -> int:
    from envaudit.render.formats import writer

    _emit(writer(f"fleet {report.command}", args.format).render(report), args.output)
    _written(args, f"fleet {report.command} (exit {report.exit_code}); report")
    return report.exit_code


def _node_lines(progress: _progress):
    """Per node, one line on a terminal's stderr (and the status line); silent off a terminal."""
    def say(message: str) -> None:
        progress(message)
        # pragma: no mutate start
        if not progress.quiet and sys.stderr is not None and sys.stderr.isatty():
            _say(f"envaudit: {_one_line(message)}")
        # pragma: no mutate end
    return say


def _cmd_cache_clear(args: argparse.Namespace) -> int:
    from envaudit.environments.uv import clear_cache, env_root

    removed, freed = clear_cache()
    if not args.quiet:
        _say(f"removed {removed} environment(s) from {_one_line(str(env_root()))},"
             f" {freed / 2**20:.1f} MiB freed")
    return EXIT_OK


# pragma: no mutate start
class _progress:
    """A rich status line on stderr while something takes seconds; silent off a terminal."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self._status = None

    def __enter__(self):
        if not self.quiet and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            from rich.console import Console

            self._status = Console(stderr=True).status(self.label)
            self._status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        if self._status is not None:
            # Text, not a str: a str is read as rich markup, and a message may quote a node.
            from rich.text import Text

            self._status.update(Text(f"{self.label}: {_one_line(message)}"))

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)
# pragma: no mutate end


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser, wired to this module's handlers (the grammar is ``cli_parser``)."""
    return cli_parser.build_parser({
        "fingerprint": _cmd_fingerprint, "diff": _cmd_diff, "report": _cmd_report,
        "record": _cmd_record, "check": _cmd_check, "bisect": _cmd_bisect,
        "fleet check": _cmd_fleet_check, "fleet fingerprint": _cmd_fleet_fingerprint,
        "history": _cmd_history, "cache clear": _cmd_cache_clear, "compare": _cmd_compare,
        "config": _cmd_config, "completion": _cmd_completion})


def _tolerant_streams() -> None:
    """Let stdout and stderr carry any text: on an ASCII-only stream (PYTHONIOENCODING=ascii, a C
    locale) a check mark or a non-UTF-8 path is escaped instead of ending in a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


# An error message may quote a value from someone else's bundle: it must stay one line that
# cannot drive the terminal (the same escaping as every terminal report).
_one_line = for_terminal


def _say(line: str) -> None:
    """One line on stderr; a lost stderr must not turn an exit code into a traceback."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def configured(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed, each option it left out taken from the configuration file where
    that sets it (``envaudit.config``: a flag wins, then the file, then the default). A usage
    error exits 2 (argparse); a mistake in the file raises ``EnvauditError``."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # refused by the (sub)command they were given to, which names its own help
        getattr(args, "parser", parser).unknown(extras)
    args.quiet = getattr(args, "quiet", False)
    args.verbose = getattr(args, "verbose", False)
    if getattr(args, "handler", None):
        from envaudit import config

        unredacted = config.apply(args, parser, lambda: cli_parser.given(build_parser(), argv))
        if unredacted and not args.quiet:
            _say(f"envaudit: note: redaction is off (redact = false in {_one_line(unredacted)});"
                 " --redact turns it back on")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    try:
        with interrupt.listening():
            args = configured(argv)
            if not getattr(args, "handler", None):
                build_parser().print_help(sys.stderr)
                return EXIT_ERROR
            code = args.handler(args)
            interrupt.stop_if_heard()  # a Ctrl-C some library swallowed still ends the command
            return code
    except EnvauditError as exc:
        _say(f"envaudit: error: {_one_line(str(exc))}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        if argv is None:  # the process itself, about to exit: see interrupt.answered
            interrupt.answered()
        _say("envaudit: interrupted")
        return 130
    except Exception as exc:
        if interrupt.heard():  # what a library made of the Ctrl-C it caught
            _say("envaudit: interrupted")
            return 130
        # A bug in envaudit, not something the user did: one line to report, no traceback
        # unless asked for, and never an exit code a pipeline could read as a verdict.
        if os.environ.get("ENVAUDIT_DEBUG", "") not in ("", "0"):
            raise
        detail = _one_line(" ".join(str(exc).split()))
        _say(f"envaudit: internal error: {type(exc).__name__}: {detail}; please report it with "
             "the command line and the output of 'envaudit report'")
        return EXIT_ERROR
