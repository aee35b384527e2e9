"""The command line's habits, as pytest, ruff and pip-audit have them: -q and -v, -V, a "did you
mean" for a mistyped command, option, choice or golden path (whose hint names that command's
help), per-command help with defaults, examples and exit codes, ``check --name``, ``history`` in
pages of 20 and ``history show`` of the latest run, and Ctrl-C without TensorFlow's start-up log.

In-process (``cli.main``) where only the parser and the words are judged; real subprocesses
where TensorFlow or a signal is involved.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import cli_env, run_cli
from test_render_check import make_result

import envaudit
from envaudit import cli, history
from envaudit.cli_help import _COMMANDS
from envaudit.workload.tf_runtime import silenced_stderr


def usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    return err


# --- did you mean ------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "line"), [
    (["chek"], "envaudit: error: unknown command 'chek'; did you mean 'check'? see 'envaudit"
               " check --help'"),
    (["fingerprnt"], "envaudit: error: unknown command 'fingerprnt'; did you mean"
                     " 'fingerprint'? see 'envaudit fingerprint --help'"),
    (["fleet", "chek"], "envaudit fleet: error: unknown action 'chek'; did you mean 'check'? see"
                        " 'envaudit fleet check --help'"),
    (["check", "--goldne", "g"], "envaudit check: error: unknown option '--goldne'; did you"
                                 " mean '--golden'? see 'envaudit check --help'"),
    (["diff", "a", "b", "--vrebose"], "envaudit diff: error: unknown option '--vrebose'; did"
                                      " you mean '--verbose'? see 'envaudit diff --help'"),
    (["check", "--format", "jsn"], "envaudit check: error: --format 'jsn' is not one of text,"
                                   " json, md, junit, html; did you mean 'json'? see 'envaudit"
                                   " check --help'"),
])
def test_a_mistyped_word_gets_the_word_meant_and_that_commands_help(capsys, argv, line):
    # (a prefix such as --verbos is not a typo: argparse takes it for --verbose)
    assert usage_error(capsys, *argv) == line + "\n"


def test_a_word_close_to_nothing_lists_the_choices(capsys):
    err = usage_error(capsys, "zzz")
    assert "unknown command 'zzz'; the commands are fingerprint, diff, report" in err
    assert "did you mean" not in err and err.endswith("see 'envaudit --help'\n")


def test_a_mistyped_golden_path_names_the_bundle_meant_and_never_records_there(
        golden_bundle, tmp_path, capsys):
    shutil.copytree(golden_bundle, tmp_path / "golden" / "reference")
    typo = tmp_path / "golden" / "referense"
    assert not typo.exists()  # the setup: a typo beside a real bundle
    assert cli.main(["check", "--golden", str(typo), "--no-history"]) == 2
    err = capsys.readouterr().err
    assert err == (f"envaudit: error: no golden bundle at {typo}; did you mean"
                   f" {tmp_path / 'golden' / 'reference'}?\n")
    assert "envaudit record" not in err
    # a typo in the folder above it too
    assert cli.main(["check", "--golden", str(tmp_path / "goldn" / "reference"),
                     "--no-history"]) == 2
    assert f"did you mean {tmp_path / 'golden' / 'reference'}?" in capsys.readouterr().err


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_each_command_has_a_description_examples_that_parse_and_exit_codes(capsys, command):
    with pytest.raises(SystemExit) as exited:
        cli.main([*command.split(), "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    description, examples, _ = _COMMANDS[command]
    assert description.splitlines()[0] in out
    assert "exit codes:\n  0  " in out and "example" in out
    for example in examples:
        assert f"  {example}\n" in out
        words = shlex.split(example)
        assert words[0] == "envaudit"
        cli.build_parser().parse_args(words[1:])  # every example is a valid command line


def test_check_help_says_which_golden_is_used_without_golden(capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Which golden: --golden PATH, else --name NAME, else the bundle 'envaudit record'" \
        " wrote by default ($XDG_DATA_HOME/envaudit/golden/default), else the reference" in out
    assert "2 envaudit could not check" in out


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(capsys, flag):
    with pytest.raises(SystemExit) as exited:
        cli.main([flag])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"envaudit {envaudit.__version__}\n"


def test_fleet_fingerprint_offers_no_junit(capsys):
    err = usage_error(capsys, "fleet", "fingerprint", "--local", "1", "--format", "junit")
    assert "--format 'junit' is not one of text, json, md, html" in err
    assert "envaudit fleet fingerprint --help" in err


# --- -q, -v and check --name --------------------------------------------------------------------


def test_quiet_check_by_name_prints_the_headline_alone(golden_bundle, tmp_path):
    data = tmp_path / "data"
    named = data / "envaudit" / "golden" / "mine"
    shutil.copytree(golden_bundle, named)
    for argv in (["-q", "check"], ["check", "-q"]):
        proc = run_cli(*argv, "--name", "mine", "--modes", "eager", "--no-confirm",
                       env=cli_env(XDG_DATA_HOME=str(data)))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert proc.stdout.startswith("✔ Identical: ") and proc.stdout.count("\n") == 1
    listed = history.runs(data / "envaudit" / "history.sqlite")
    assert [Path(r.golden_path) for r in listed] == [named, named]


def test_name_and_golden_together_are_refused(capsys):
    err = usage_error(capsys, "check", "--golden", "a", "--name", "b")
    assert "not allowed with argument --golden" in err


def test_quiet_and_verbose_diff(tmp_path, capsys):
    from envaudit.fingerprint import capture

    fp = capture().to_dict()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(envaudit.fingerprint.Fingerprint(fp).to_json())
    fp["env"] = {**fp.get("env", {}), "TF_ENABLE_ONEDNN_OPTS": "0"}
    b.write_text(envaudit.fingerprint.Fingerprint(fp).to_json())
    assert cli.main(["-q", "diff", str(a), str(b)]) == 1
    assert capsys.readouterr().out == "1 numerics-relevant change(s), 0 informational\n"
    assert cli.main(["diff", str(a), str(b), "-v"]) == 1
    assert "env.TF_ENABLE_ONEDNN_OPTS" in capsys.readouterr().out


# --- history ------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def many_runs(tmp_path, monkeypatch) -> Path:
    """25 checks on record in a real history file."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    path = history.default_path()
    result = dataclasses.replace(make_result(), golden_sha256="a" * 64)
    for i in range(25):
        assert history.append_check(result, "a" * 64, "check", path,
                                    at=T0 + timedelta(minutes=i)) is None
    return path


def test_history_shows_the_last_20_unless_told(many_runs, capsys):
    assert len(history.runs(many_runs)) == 25  # the setup: more runs than a page
    assert cli.main(["history"]) == 0
    out, err = capsys.readouterr()
    rows = out.splitlines()[1:]
    assert [int(r.split()[0]) for r in rows] == list(range(6, 26))  # the newest 20, oldest first
    assert err == "envaudit: the last 20 of 25 runs; --all lists every one, --limit N the last N\n"
    assert cli.main(["history", "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    assert [int(r.split()[0]) for r in out.splitlines()[1:]] == [23, 24, 25]
    assert cli.main(["history", "--all"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 26 and err == ""


def test_history_show_alone_shows_the_latest_run(many_runs, capsys):
    assert cli.main(["history", "show"]) == 0
    assert capsys.readouterr().out.startswith("run 25: check, 2026-01-01 00:24:00\n")
    assert cli.main(["history", "shwo"]) == 2
    assert "unknown history action 'shwo'; did you mean 'show'?" in capsys.readouterr().err


def test_history_show_with_nothing_on_record_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert cli.main(["history", "show"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs on record in " in err


# --- Ctrl-C ------------------------------------------------------------------------------------


def test_tensorflow_chatter_is_replayed_on_a_failure_but_not_on_ctrl_c(capfd):
    with pytest.raises(RuntimeError), silenced_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n")
        raise RuntimeError("the import failed")
    assert "oneDNN custom operations" in capfd.readouterr().err  # the setup: replay exists
    with pytest.raises(KeyboardInterrupt), silenced_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n")
        raise KeyboardInterrupt
    assert capfd.readouterr().err == ""


def _tensorflow_loading(pid: int) -> bool:
    try:
        return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_ctrl_c_during_a_check_prints_one_line(golden_bundle):
    """A real SIGINT to the whole process group (what a terminal sends) while TensorFlow starts."""
    proc = subprocess.Popen([sys.executable, "-m", "envaudit", "check", "--golden",
                             str(golden_bundle), "--no-history"], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not _tensorflow_loading(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # the setup: TensorFlow's libraries are being loaded, so its chatter is in the captured fd 2
    assert _tensorflow_loading(proc.pid)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out, err) == (130, "", "envaudit: interrupted\n")


def _swallowing_capture(real):
    """A fingerprint capture that meets a Ctrl-C and swallows it, as a library's bare ``except:``
    or a ``__del__`` run during TensorFlow's import does, then goes on as if nothing happened."""
    def capture():
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException:  # noqa: BLE001 -- the library's habit under test
            pass
        return real()
    return capture


@pytest.mark.parametrize("swallowed_as", ["nothing", "an error"])
def test_a_ctrl_c_a_library_swallowed_still_ends_the_command(monkeypatch, capsys, swallowed_as):
    import envaudit.fingerprint as fingerprint

    capture = _swallowing_capture(fingerprint.capture)
    if swallowed_as == "an error":
        def capture_then_fail():
            capture()
            raise RuntimeError("the library turned the interrupt into this")
        monkeypatch.setattr(fingerprint, "capture", capture_then_fail)
    else:
        monkeypatch.setattr(fingerprint, "capture", capture)
    assert cli.main(["fingerprint", "--format", "json"]) == 130
    assert capsys.readouterr() == ("", "envaudit: interrupted\n")  # no report for it
    # an in-process caller gets its Ctrl-C back as Python handles it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_tensorflow_chatter_stays_silent_while_another_thread_still_runs_silenced(capfd):
    """The probes compile in one thread while the user's model runs in another, each silenced:
    the first to finish must not hand fd 2 back to the terminal under the other."""
    import threading

    entered, first_left = threading.Event(), threading.Event()

    def second():
        with silenced_stderr():
            entered.set()
            first_left.wait(10)
            os.write(2, b"I0000 dump_mlir_util.cc:269] disabling MLIR crash reproducer\n")

    thread = threading.Thread(target=second)
    with silenced_stderr():
        thread.start()
        entered.wait(10)
    first_left.set()
    thread.join(10)
    assert capfd.readouterr().err == ""
    os.write(2, b"after\n")  # and fd 2 is the terminal's again once both left
    assert capfd.readouterr().err == "after\n"
