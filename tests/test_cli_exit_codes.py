"""The CLI's exit codes, in-process: 0, 1 or 2 for each command, 130 for Ctrl-C, and every way
envaudit cannot do its job (a user error, a usage error, a lost stdout, a bug) as exactly one
stderr line and exit 2 (docs/design.md, "Exit codes").

The heavy work is stubbed where it is looked up (``envaudit.pipeline.compose.check``,
``envaudit.record.record``, ``envaudit.fingerprint.capture``), so these tests judge what the CLI
decides, not what the workload computes; ``diff`` runs for real on small fingerprint files.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.text import Text
from test_render_check import make_result

import envaudit.fingerprint
import envaudit.pipeline.compose
import envaudit.record
from envaudit import cli
from envaudit.errors import EnvauditError
from envaudit.fingerprint import Fingerprint, capture
from envaudit.render import check_text, diff_text
from envaudit.usermodel.spec import DetectionNames, Tolerance, Tolerances

REPORT_IT = "please report it with the command line and the output of 'envaudit report'"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine() -> dict[str, Any]:
    """This machine's fingerprint as data, with a host name the tests can look for."""
    data = copy.deepcopy(capture().data)
    data["os"]["hostname"] = "alpha-host"
    return data


@pytest.fixture
def fake_capture(machine, monkeypatch) -> Fingerprint:
    fp = Fingerprint(copy.deepcopy(machine))
    monkeypatch.setattr(envaudit.fingerprint, "capture", lambda: fp)
    return fp


def fingerprint_file(folder: Path, name: str, data: dict[str, Any], *, host: str | None = None,
                     env: dict[str, str] | None = None) -> str:
    data = copy.deepcopy(data)
    if host is not None:
        data["os"]["hostname"] = host
    data["env"].update(env or {})
    path = folder / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def pair(tmp_path, machine) -> SimpleNamespace:
    """Fingerprint files: the golden one, and current ones that differ in what the name says."""
    def make(name: str, **kwargs: Any) -> str:
        return fingerprint_file(tmp_path, name, machine, **kwargs)

    onednn = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    return SimpleNamespace(
        golden=make("golden.json"),
        same=make("same.json"),
        informational=make("informational.json", host="beta-host"),
        numerics=make("numerics.json", env=onednn),
        mixed=make("mixed.json", host="beta-host", env=onednn),
    )


@pytest.fixture
def checked(monkeypatch) -> SimpleNamespace:
    """``check`` stubbed: ``checked.calls`` keeps each call's arguments; the answer is
    ``checked.result`` when a test sets one, else the drift result (exit 1) with its ``strict``."""
    stub = SimpleNamespace(calls=[], result=None)
    monkeypatch.setenv("ENVAUDIT_HISTORY", "off")  # the stub's golden is no bundle to remember

    def fake_check(**kwargs: Any):
        stub.calls.append(kwargs)
        kwargs["progress"]("comparing")  # the progress callback must be callable
        return stub.result or make_result(strict=kwargs["strict"])

    monkeypatch.setattr(envaudit.pipeline.compose, "check", fake_check)
    return stub


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


# --- diff: 0 unless a numerics-relevant field changed ------------------------------------------


@pytest.mark.parametrize(("current", "expected"), [
    ("same", 0), ("informational", 0), ("numerics", 1), ("mixed", 1),
])
def test_diff_exits_1_only_for_a_numerics_relevant_change(capsys, pair, current, expected):
    code, out, err = run(capsys, "diff", pair.golden, getattr(pair, current), "--format", "json")
    assert (code, err) == (expected, "")
    document = json.loads(out)
    assert document["numerics_changed"] is bool(expected)


def test_diff_counts_in_json_match_the_exit_code(capsys, pair):
    code, out, _ = run(capsys, "diff", pair.golden, pair.mixed, "--format", "json")
    assert code == 1
    assert json.loads(out)["counts"] == {"numerics": 1, "informational": 1}


@pytest.mark.parametrize("fmt", [(), ("--format", "text")])
def test_diff_as_text_has_the_same_exit_codes(capsys, pair, fmt):
    assert run(capsys, "diff", pair.golden, pair.informational, *fmt)[0] == 0
    code, out, _ = run(capsys, "diff", pair.golden, pair.numerics, *fmt)
    assert code == 1
    assert "TF_ENABLE_ONEDNN_OPTS" in out


def test_diff_redacts_host_names_unless_told_not_to(capsys, pair):
    _, shared, _ = run(capsys, "diff", pair.golden, pair.informational, "--format", "json")
    assert "alpha-host" not in shared and "beta-host" not in shared
    assert "[hostname]" in shared
    code, plain, _ = run(capsys, "diff", pair.golden, pair.informational, "--format", "json",
                         "--no-redact")
    assert code == 0
    assert '"golden": "alpha-host"' in plain and '"current": "beta-host"' in plain


@pytest.mark.parametrize("verbose", [False, True])
def test_diff_passes_verbose_to_the_text_table(capsys, pair, monkeypatch, verbose):
    seen: list[bool] = []

    def render(a, b, changes, verbose: bool = False) -> str:
        seen.append(verbose)
        return "table"

    monkeypatch.setattr(diff_text, "render", render)
    code, out, _ = run(capsys, "diff", pair.golden, pair.numerics, *(["--verbose"] * verbose))
    assert (code, out, seen) == (1, "table\n", [verbose])


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_diff_to_a_file_keeps_its_exit_code(capsys, pair, tmp_path, fmt):
    target = tmp_path / "diff"
    code, out, err = run(capsys, "diff", pair.golden, pair.numerics, "--format", fmt,
                         "-o", str(target))
    # -o: the report in the file, and one line on stderr so the terminal is not left silent
    assert (code, out) == (1, "")
    assert err == f"envaudit: 1 numerics-relevant change(s) (exit 1); diff written to {target}\n"
    assert "TF_ENABLE_ONEDNN_OPTS" in target.read_text()


def test_diff_of_a_missing_file_is_one_error_line(capsys, pair, tmp_path):
    missing = tmp_path / "nope.json"
    code, out, err = run(capsys, "diff", pair.golden, str(missing))
    assert (code, out) == (2, "")
    assert err.startswith(f"envaudit: error: {missing} does not exist; ")
    assert err.count("\n") == 1 and err.endswith("\n")


# --- fingerprint and report: 0 when done ------------------------------------------------------


@pytest.mark.parametrize(("fmt", "start"), [
    ("json", '{\n  "schema": "envaudit.fingerprint/1"'),
    ("md", "## Environment fingerprint `fp-"),
])
def test_fingerprint_formats(capsys, fake_capture, fmt, start):
    code, out, err = run(capsys, "fingerprint", "--format", fmt)
    assert (code, err) == (0, "")
    assert out.startswith(start)
    assert out.endswith("\n") and not out.endswith("\n\n\n")


@pytest.mark.parametrize(("fmt", "start"), [
    ("json", '{\n  "schema": "envaudit.fingerprint/1"'),
    ("md", "## Environment fingerprint `fp-"),
    ("text", ""),
])
def test_fingerprint_to_a_file_in_every_format(capsys, fake_capture, tmp_path, fmt, start):
    target = tmp_path / "fp"
    assert run(capsys, "fingerprint", "--format", fmt, "-o", str(target)) == (
        0, "", f"envaudit: fingerprint {fake_capture.fingerprint_id} written to {target}\n")
    text = target.read_text()
    assert text.startswith(start) and fake_capture.fingerprint_id in text


def test_fingerprint_as_text_is_the_rich_table(capsys, fake_capture):
    code, out, err = run(capsys, "fingerprint")
    assert (code, err) == (0, "")
    assert fake_capture.fingerprint_id in out
    assert not out.startswith("{") and not out.startswith("#")


def test_fingerprint_text_to_a_file_is_plain(capsys, fake_capture, tmp_path):
    target = tmp_path / "fp.txt"
    code, out, err = run(capsys, "fingerprint", "-q", "-o", str(target))
    assert (code, out, err) == (0, "", "")  # -q: not even the summary line
    text = target.read_text()
    assert fake_capture.fingerprint_id in text
    assert "\x1b[" not in text


def test_report_is_redacted_unless_told_not_to(capsys, fake_capture):
    code, shared, err = run(capsys, "report")
    assert (code, err) == (0, "")
    assert shared.startswith("## Environment fingerprint")
    assert "alpha-host" not in shared
    code, plain, _ = run(capsys, "report", "--no-redact")
    assert code == 0
    assert "alpha-host" in plain


def test_report_to_a_file(capsys, fake_capture, tmp_path):
    target = tmp_path / "report.md"
    code, out, err = run(capsys, "report", "-o", str(target))
    assert (code, out) == (0, "") and err.endswith(f" written to {target}\n")
    assert target.read_text().startswith("## Environment fingerprint")


# --- record: 0 when done, 2 when refused --------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch) -> list[tuple[Path, bool, bool]]:
    calls: list[tuple[Path, bool, bool]] = []
    monkeypatch.setenv("ENVAUDIT_HISTORY", "off")  # the stub's bundle is no bundle to remember

    def fake_record(path: Path, *, force: bool, redact: bool, progress,
                    tf32: str = "default", steps: int | None = None,
                    training_modes: tuple[str, ...] | None = None,
                    modes: tuple[str, ...] | None = None, note=None) -> SimpleNamespace:
        calls.append((path, force, redact))
        progress("writing")
        return SimpleNamespace(path=Path("/b/golden"), array_count=53)

    monkeypatch.setattr(envaudit.record, "record", fake_record)
    return calls


def test_record_to_a_path(capsys, recorded):
    code, out, err = run(capsys, "record", "--golden", "g/x", "--force")
    assert (code, out, err) == (0, "", "recorded golden bundle /b/golden (53 arrays)\n")
    assert recorded == [(Path("g/x"), True, True)]


def test_record_by_name_under_the_data_home(capsys, recorded, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert run(capsys, "record", "--no-redact")[0] == 0
    assert run(capsys, "record", "--name", "mine")[0] == 0
    assert recorded == [(Path("/data/envaudit/golden/default"), False, False),
                        (Path("/data/envaudit/golden/mine"), False, True)]


def test_record_with_a_bad_name_is_one_error_line(capsys, recorded):
    assert run(capsys, "record", "--name", "..") == (
        2, "", "envaudit: error: bundle name '..' is not a plain name; use letters, digits,"
        " . _ -\n")
    assert recorded == []


# --- check: the result's exit code, whatever the format ----------------------------------------


def test_check_forwards_its_options(capsys, checked):
    assert run(capsys, "check")[0] == 1
    assert run(capsys, "check", "--golden", "g", "--repeat", "3", "--no-confirm", "--strict")[0] \
        == 1
    assert run(capsys, "check", "--golden", "g", "--model", "m.keras", "--tolerance",
               "rtol:1e-5", "--tolerance", "logits=atol:0.5", "--detections",
               "boxes=b,scores=s,classes=c")[0] == 1
    forwarded = [{k: v for k, v in call.items() if k != "progress"} for call in checked.calls]
    plain = {"model": None, "tolerances": None, "detections": None, "bisect": False,
             "tf32": "default", "growth_target": 1e-3}
    assert forwarded[:2] == [
        {"golden": None, "repeat": 1, "confirm": True, "strict": False, "modes": None, **plain},
        {"golden": "g", "repeat": 3, "confirm": False, "strict": True, "modes": None, **plain},
    ]
    mine = forwarded[2]
    assert run(capsys, "check", "--tf32", "off")[0] == 1
    assert checked.calls[-1]["tf32"] == "off"
    assert run(capsys, "check", "--growth-target", "1e-4")[0] == 1
    assert checked.calls[-1]["growth_target"] == 1e-4
    with pytest.raises(SystemExit) as refused:  # argparse: not a positive number
        run(capsys, "check", "--growth-target", "0")
    assert refused.value.code == 2
    assert mine["model"] == "m.keras"
    assert mine["tolerances"] == Tolerances(Tolerance(1e-5, 0.0),
                                            {"logits": Tolerance(0.0, 0.5)})
    assert mine["detections"] == DetectionNames("b", "s", "c")


@pytest.mark.parametrize("fmt", ["text", "json", "md", "junit"])
@pytest.mark.parametrize(("changed", "strict", "expected"), [
    (True, False, 1),   # drift
    (False, False, 0),  # equivalent
    (False, True, 1),   # equivalent under --strict
])
def test_check_exit_code_in_every_format(capsys, checked, fmt, changed, strict, expected):
    checked.result = make_result(changed_detections=changed, strict=strict)
    code, out, err = run(capsys, "check", "--format", fmt, *(["--strict"] * strict))
    assert (code, err) == (expected, "")
    verdict = "drift" if changed else "equivalent"
    if fmt == "json":
        document = json.loads(out)
        assert (document["verdict"], document["exit_code"]) == (verdict, expected)
    elif fmt == "md":
        assert out.startswith("## envaudit check: ")
        assert verdict in out.splitlines()[0]
    elif fmt == "junit":
        assert ET.fromstring(out.encode()).get("name") == "envaudit"
    else:
        assert not out.startswith(("{", "#", "<")) and verdict in out.lower()


def test_check_identical_is_0_even_strict(capsys, checked):
    checked.result = dataclasses.replace(make_result(strict=True), verdict="identical",
                                            exit_code=0)
    assert run(capsys, "check", "--strict", "--format", "json")[0] == 0


def test_check_redacts_unless_told_not_to(capsys, checked):
    checked.result = dataclasses.replace(make_result(),
                                            headline="see https://u:hunter2@example.com/x")
    _, shared, _ = run(capsys, "check", "--format", "json")
    assert json.loads(shared)["headline"] == "see https://[redacted]@example.com/x"
    _, plain, _ = run(capsys, "check", "--format", "json", "--no-redact")
    assert json.loads(plain)["headline"] == "see https://u:hunter2@example.com/x"


@pytest.mark.parametrize("verbose", [False, True])
def test_check_passes_verbose_to_the_text_report(capsys, checked, monkeypatch, verbose):
    seen: list[bool] = []

    def render(result, verbose: bool = False) -> str:
        seen.append(verbose)
        return "report"

    monkeypatch.setattr(check_text, "render", render)
    assert run(capsys, "check", *(["--verbose"] * verbose)) == (1, "report\n", "")
    assert seen == [verbose]


@pytest.mark.parametrize(("fmt", "start"), [
    ("junit", '<?xml version="1.0" encoding="UTF-8"?>'),
    ("json", '{\n  "schema": "envaudit.check/2"'),
    ("md", "## envaudit check: "), ("text", ""),
])
def test_check_to_a_file_keeps_its_exit_code(capsys, checked, tmp_path, fmt, start):
    target = tmp_path / "check"
    assert run(capsys, "check", "--format", fmt, "-o", str(target)) == (
        1, "", f"envaudit: drift (exit 1); report written to {target}\n")
    text = target.read_text()
    assert text.startswith(start) and "drift" in text.lower()


# --- every failure is exit 2 and one line ------------------------------------------------------


def failing(monkeypatch, error: BaseException) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_report", handler)


def test_a_user_error_is_one_escaped_line(capsys, monkeypatch):
    failing(monkeypatch, EnvauditError("bad\nvalue \x1b[31mred\t"))
    assert run(capsys, "report") == (2, "", "envaudit: error: bad\\nvalue \\x1b[31mred\\t\n")


def test_ctrl_c_is_130(capsys, monkeypatch):
    failing(monkeypatch, KeyboardInterrupt())
    assert run(capsys, "report") == (130, "", "envaudit: interrupted\n")


@pytest.mark.parametrize("debug", [None, "", "0"])
def test_a_bug_is_one_line_and_exit_2(capsys, monkeypatch, debug):
    if debug is None:
        monkeypatch.delenv("ENVAUDIT_DEBUG", raising=False)
    else:
        monkeypatch.setenv("ENVAUDIT_DEBUG", debug)
    failing(monkeypatch, RuntimeError("no\n  such\tkey \x07"))
    assert run(capsys, "report") == (
        2, "", f"envaudit: internal error: RuntimeError: no such key \\x07; {REPORT_IT}\n")


@pytest.mark.parametrize("debug", ["1", "yes"])
def test_envaudit_debug_re_raises_a_bug(capsys, monkeypatch, debug):
    monkeypatch.setenv("ENVAUDIT_DEBUG", debug)
    failing(monkeypatch, ZeroDivisionError("boom"))
    with pytest.raises(ZeroDivisionError, match="boom"):
        cli.main(["report"])
    assert capsys.readouterr() == ("", "")


def test_each_command_reaches_its_handler(capsys, monkeypatch):
    for name in ("fingerprint", "diff", "report", "record", "check"):
        monkeypatch.setattr(cli, f"_cmd_{name}", lambda args, name=name: len(name))
    assert cli.main(["fingerprint"]) == 11
    assert cli.main(["diff", "a", "b"]) == 4
    assert cli.main(["report"]) == 6
    assert cli.main(["record"]) == 6
    assert cli.main(["check"]) == 5
    assert capsys.readouterr() == ("", "")


def test_no_command_prints_help_on_stderr_and_is_2(capsys):
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert err.startswith("usage: envaudit [-h] [-V] [-q] [-v] COMMAND ...\n")


EMPTY = "is empty; give a path or leave the option out"


@pytest.mark.parametrize(("argv", "line"), [
    (["check", "--repeat", "0"], "argument --repeat: must be 1 or more"),
    (["check", "--repeat", "-1"], "argument --repeat: must be 1 or more"),
    (["check", "--repeat", "x"], "argument --repeat: 'x' is not a whole number"),
    (["check", "--repeat", "1.5"], "argument --repeat: '1.5' is not a whole number"),
    (["check", "--golden", ""], f"argument --golden: {EMPTY}"),
    (["record", "--golden", ""], f"argument --golden: {EMPTY}"),
    (["check", "-o", ""], f"argument -o/--output: {EMPTY}"),
])
def test_a_usage_error_is_one_line_and_2(capsys, checked, argv, line):
    err = usage_error(capsys, *argv)
    assert err == f"envaudit {argv[0]}: error: {line}; see 'envaudit {argv[0]} --help'\n"
    assert checked.calls == []  # check never ran


def test_an_unknown_option_is_a_usage_error(capsys):
    assert usage_error(capsys, "--frobnicate") == (
        "envaudit: error: unknown option '--frobnicate'; see 'envaudit --help'\n")


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("2", 2), (" 7 ", 7), ("+3", 3)])
def test_repeat_counts_from_1(text, value):
    assert cli._positive_int(text) == value


@pytest.mark.parametrize("text", ["\u0663", "\u00b3", "1e3", "3.0", "9" * 19])
def test_a_count_is_ascii_digits(text):
    assert int("\u0663") == 3 and "\u00b3".isdigit()  # what int() and isdigit() would let in
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
        cli._positive_int(text)


@pytest.mark.parametrize("text", ["x", "", " ", "a", "/tmp/x", "-"])
def test_any_non_empty_path_is_taken_as_given(text):
    if text:
        assert cli._path(text) == text
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="^is empty; give a path or leave"
                           " the option out$"):
            cli._path(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("plain words: 'quoted' (1/2)", "plain words: 'quoted' (1/2)"),
    ("", ""),
    ("a\nb\r\n", "a\\nb\\r\\n"),
    ("\ttab", "\\ttab"),
    ("\x1b[2J\x07\x00\x7f", "\\x1b[2J\\x07\\x00\\x7f"),
    ("é ✓ 漢", "é ✓ 漢"),
    ("line\u2028sep\x85", "line\\u2028sep\\x85"),
    ("\U000e0001", "\\U000e0001"),
])
def test_one_line_escapes_what_is_not_printable(text, expected):
    assert cli._one_line(text) == expected


# --- a lost stdout is exit 2 -------------------------------------------------------------------


class Pipe(io.TextIOBase):
    """A stdout whose reader is gone (or whose disk is full): writing or flushing raises."""

    def __init__(self, error: OSError, on: str = "write") -> None:
        self.error, self.on, self.written = error, on, []

    def write(self, text: str) -> int:
        if self.on == "write":
            raise self.error
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        if self.on == "flush":
            raise self.error

    def isatty(self) -> bool:
        return False


BROKEN = ("the output was not fully written: the program reading stdout closed it early (broken"
          " pipe); read all of it, or use -o FILE")


@pytest.fixture
def silenced(monkeypatch) -> list[bool]:
    calls: list[bool] = []
    monkeypatch.setattr(cli, "_silence_stdout", lambda: calls.append(True))
    return calls


@pytest.mark.parametrize("on", ["write", "flush"])
@pytest.mark.parametrize("output", ["text", Text("rich")], ids=["str", "renderable"])
def test_a_broken_pipe_is_an_error_and_silences_stdout(monkeypatch, silenced, on, output):
    monkeypatch.setattr("sys.stdout", Pipe(BrokenPipeError(32, "Broken pipe"), on))
    with pytest.raises(EnvauditError) as error:
        cli._emit(output, None)
    assert (str(error.value), silenced) == (BROKEN, [True])


@pytest.mark.parametrize(("failure", "why"), [(OSError(28, "No space left on device"),
                                               "No space left on device"),
                                              (OSError("lost"), "lost")])
def test_a_write_error_on_stdout_is_an_error(monkeypatch, silenced, failure, why):
    monkeypatch.setattr("sys.stdout", Pipe(failure, "flush"))
    with pytest.raises(EnvauditError) as error:
        cli._emit("text", None)
    assert str(error.value) == (f"the output was not fully written: cannot write to stdout"
                                f" ({why}); write it to a file with -o FILE")
    assert silenced == [True]


def test_a_broken_pipe_in_a_command_is_exit_2_with_one_line(capsys, monkeypatch, checked,
                                                            silenced):
    monkeypatch.setattr("sys.stdout", Pipe(BrokenPipeError(32, "Broken pipe")))
    code = cli.main(["check", "--format", "json"])
    assert (code, capsys.readouterr().err) == (2, f"envaudit: error: {BROKEN}\n")


def test_a_closed_stdout_is_exit_2_unless_writing_to_a_file(capsys, monkeypatch, checked,
                                                            tmp_path):
    monkeypatch.setattr("sys.stdout", None)
    assert cli.main(["check", "--format", "json"]) == 2
    assert capsys.readouterr().err == (
        "envaudit: error: stdout is closed, so the output has nowhere to go; write it to a file"
        " with -o FILE\n")
    target = tmp_path / "out.json"
    assert cli.main(["check", "--format", "json", "-o", str(target)]) == 1
    assert json.loads(target.read_text())["verdict"] == "drift"


def test_emit_ends_text_with_one_newline_and_flushes(monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, encoding="utf-8"))
    cli._emit("a", None)
    cli._emit("b\n", None)
    cli._emit(Text("c"), None)
    assert raw.getvalue() == b"a\nb\nc\n"  # there without a flush of our own


def test_emit_to_a_file_writes_text_and_rich_renderables(tmp_path):
    cli._emit("plain", str(tmp_path / "a.txt"))
    cli._emit(Text("rich", style="bold red"), str(tmp_path / "b.txt"))
    assert (tmp_path / "a.txt").read_text() == "plain"
    assert (tmp_path / "b.txt").read_text() == "rich\n"


def test_the_stdout_console_reports_a_broken_pipe_as_such():
    with pytest.raises(BrokenPipeError) as error:
        cli._console().on_broken_pipe()
    assert (error.value.errno, error.value.strerror) == (32, "Broken pipe")


def test_silencing_points_stdout_at_the_null_device(monkeypatch, tmp_path):
    with open(tmp_path / "out", "w") as stdout:
        monkeypatch.setattr("sys.stdout", stdout)
        cli._silence_stdout()
        assert os.readlink(f"/proc/self/fd/{stdout.fileno()}") == "/dev/null"
        assert os.write(stdout.fileno(), b"lost") == 4
    assert (tmp_path / "out").read_bytes() == b""


@pytest.mark.parametrize("stdout", [None, io.StringIO()], ids=["none", "no file descriptor"])
def test_silencing_a_stdout_without_a_descriptor_is_quiet(monkeypatch, stdout):
    monkeypatch.setattr("sys.stdout", stdout)
    assert cli._silence_stdout() is None


# --- streams that cannot carry every character, or are gone ------------------------------------


def test_ascii_streams_escape_what_they_cannot_encode(monkeypatch):
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(out, encoding="ascii"))
    monkeypatch.setattr("sys.stderr", io.TextIOWrapper(err, encoding="ascii"))
    cli._tolerant_streams()
    for stream in (__import__("sys").stdout, __import__("sys").stderr):
        stream.write("\u2713 ok\n")
        stream.flush()
    assert (out.getvalue(), err.getvalue()) == (b"\\u2713 ok\n", b"\\u2713 ok\n")


class Unconfigurable(io.StringIO):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def reconfigure(self, **kwargs: Any) -> None:
        raise self.error


@pytest.mark.parametrize("error", [ValueError("detached"), OSError("gone")])
def test_a_stream_that_cannot_be_reconfigured_is_left_as_it_is(monkeypatch, error):
    monkeypatch.setattr("sys.stdout", Unconfigurable(error))
    monkeypatch.setattr("sys.stderr", io.StringIO())  # no reconfigure at all
    assert cli._tolerant_streams() is None


def test_say_writes_one_flushed_line(monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr("sys.stderr", io.TextIOWrapper(raw, encoding="utf-8"))
    cli._say("envaudit: x")
    assert raw.getvalue() == b"envaudit: x\n"


@pytest.mark.parametrize("stderr", [None, Pipe(OSError(5, "Input/output error")), "closed"],
                         ids=["none", "write error", "closed"])
def test_say_on_a_lost_stderr_is_quiet(monkeypatch, stderr):
    if stderr == "closed":
        stderr = io.StringIO()
        stderr.close()
    monkeypatch.setattr("sys.stderr", stderr)
    assert cli._say("lost") is None


def test_a_lost_stderr_keeps_the_exit_code(monkeypatch):
    failing(monkeypatch, EnvauditError("refused"))
    monkeypatch.setattr("sys.stderr", None)
    assert cli.main(["report"]) == 2


def test_bisect_is_a_check_with_bisect(capsys, checked):
    assert run(capsys, "bisect", "--golden", "g", "--no-confirm", "--format", "json")[0] == 1
    call = checked.calls[-1]
    assert call["bisect"] is True and call["golden"] == "g" and call["confirm"] is False
    assert run(capsys, "check", "--golden", "g", "--bisect")[0] == 1
    assert checked.calls[-1]["bisect"] is True


def test_cache_clear_removes_the_environments_envaudit_built_and_nothing_else(capsys, tmp_path,
                                                                             monkeypatch):
    from envaudit.environments.cache import write_marker

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    envs = tmp_path / "envaudit" / "envs"
    built = envs / ("a" * 64)
    (built / "results").mkdir(parents=True)
    (built / "results" / "x.npz").write_bytes(b"0" * 2048)
    write_marker(built, "a" * 64, [["numpy", "2.4.6"]], "lib/python3.11/site-packages",
                 "3.11.7", 0.0)
    foreign = envs / "notes"
    foreign.mkdir()
    code, out, err = run(capsys, "cache", "clear")
    assert (code, out) == (0, "")
    assert err.startswith(f"removed 1 environment(s) from {envs}")
    assert not built.exists() and foreign.exists()
    assert usage_error(capsys, "cache").startswith("envaudit cache: error:")



# --- history: what the CLI appends and says --------------------------------------------------


def test_checks_are_remembered_and_the_last_identical_one_is_named(capsys, monkeypatch,
                                                                  tmp_path, golden_bundle):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    from envaudit.store import read_manifest

    golden = {"golden_path": str(golden_bundle),
              "golden_sha256": read_manifest(golden_bundle)["manifest_sha256"]}
    base = make_result()
    identical = dataclasses.replace(base, verdict="identical", exit_code=0, **golden)
    drifted = dataclasses.replace(base, **golden)
    answers = iter([identical, drifted])
    monkeypatch.setattr(envaudit.pipeline.compose, "check", lambda **kw: next(answers))
    assert run(capsys, "check")[0] == 0
    code, out, err = run(capsys, "check")
    assert code == 1 and err == ""
    assert "last identical check against this golden: " in out
    code, out, err = run(capsys, "history", "--format", "json")
    runs = json.loads(out)["runs"]
    assert [r["verdict"] for r in runs] == ["identical", "drift"]
    assert run(capsys, "history", "show", str(runs[0]["id"]))[0] == 0
    assert run(capsys, "history", "show", "99") == (
        2, "", f"envaudit: error: no run 99 in {tmp_path / 'envaudit' / 'history.sqlite'};"
               " 'envaudit history' lists them\n")
    monkeypatch.setattr(envaudit.pipeline.compose, "check", lambda **kw: drifted)
    assert run(capsys, "check", "--no-history")[0] == 1
    assert len(json.loads(run(capsys, "history", "--format", "json")[1])["runs"]) == 2


def test_a_broken_history_is_one_warning_and_the_check_goes_on(capsys, monkeypatch, tmp_path,
                                                              golden_bundle):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    broken = tmp_path / "envaudit" / "history.sqlite"
    broken.parent.mkdir()
    broken.write_bytes(b"not a database" * 100)
    from envaudit.store import read_manifest

    result = dataclasses.replace(make_result(), golden_path=str(golden_bundle),
                                 golden_sha256=read_manifest(golden_bundle)["manifest_sha256"])
    monkeypatch.setattr(envaudit.pipeline.compose, "check", lambda **kw: result)
    code, out, err = run(capsys, "check", "--format", "json")
    assert code == 1 and json.loads(out)["verdict"] == "drift"
    assert len(err.splitlines()) == 1 and err.startswith("envaudit: warning: history not"
                                                         " recorded: ")
    assert broken.read_bytes() == b"not a database" * 100  # a user's file is never replaced


def test_history_on_an_empty_database_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    code, out, err = run(capsys, "history")
    assert (code, err) == (0, "") and out.startswith("no checks on record in ")
    assert run(capsys, "history", "--since", "yesterday")[0] == 2



def test_a_result_without_a_golden_bundle_is_not_remembered(capsys, monkeypatch, tmp_path):
    """As from a stub or a future source: history needs the golden's checksum; without one the
    check is reported as ever, and nothing is appended."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(envaudit.pipeline.compose, "check", lambda **kw: make_result())
    assert run(capsys, "check", "--golden", "unused")[0] == 1
    assert not (tmp_path / "envaudit" / "history.sqlite").exists()
