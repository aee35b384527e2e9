"""The pytest plugin as a team uses it: the project in ``tests/plugin_project`` (its own pytest.ini,
so envaudit's conftest stays out) run by real pytest, in a copy, with the moving knob set.

Two pytest runs serve every test here (each starts TensorFlow; about 45 s together): one with
``--envaudit-record`` records a copy of the session's golden and the project's own model's golden
(the drift test and the missing-golden test are not selected: one would record the shared golden,
the other a folder of that name); one on two xdist workers checks them, and checks the shared
golden, recorded before the knob moved, with ``strict=True``. Outcomes and messages are read from
each run's JUnit XML, the summary from its output.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli_env

PROJECT = Path(__file__).resolve().parent / "plugin_project"
CANARY = "test_canary_gate.py"
PASSING = ("test_the_canary_matches_the_golden", "test_the_canary_matches_in_eager_mode")
DRIFT = "test_a_strict_gate_fails_after_a_setting_moved"
MISSING = "test_a_missing_golden_fails_saying_how_to_record"
MODEL = "test_our_model_matches_its_golden"
RUN_TIMEOUT = 600  # a TensorFlow import per process and a few checks, on a loaded 2-core machine


@dataclass(frozen=True)
class Case:
    outcome: str  # passed, failed, skipped
    message: str  # the failure's or the skip's message
    worker: str  # the xdist worker that ran it (a property the project's tests record)


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    cases: dict[str, Case]

    def summary(self) -> list[str]:
        """The lines of the plugin's section at the end of the session."""
        lines = self.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ envaudit =+", line))
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("===")),
                   len(lines))
        return lines[start + 1:end]


@dataclass(frozen=True)
class Gated:
    recorded: Run
    checked: Run
    golden: Path  # the copy of the session's golden, recorded again by the first run
    drift_golden: Path  # the session's golden, recorded before the knob moved
    before: dict  # its manifest before, and after
    after: dict
    models: Path


def _pytest(project: Path, env: dict[str, str], *args: str) -> Run:
    xml = project.parent / f"junit-{len(list(project.parent.glob('junit-*')))}.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--junitxml={xml}", *args],
                          cwd=project, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)
    assert xml.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return Run(proc.returncode, proc.stdout, _cases(xml))


def _cases(xml: Path) -> dict[str, Case]:
    cases = {}
    for case in ET.parse(xml).iter("testcase"):
        outcome, message = "passed", ""
        for tag, said in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                outcome, message = said, found.get("message", "")
        worker = next((p.get("value", "") for p in case.iter("property")
                       if p.get("name") == "worker"), "")
        cases[case.get("name", "")] = Case(outcome, message, worker)
    return cases


def _manifest(golden: Path) -> dict:
    return json.loads((golden / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gated(golden_bundle: Path, moving_knob, tmp_path_factory: pytest.TempPathFactory) -> Gated:
    base = tmp_path_factory.mktemp("plugin")
    project, golden, models = base / "project", base / "golden", base / "models"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(golden_bundle, golden, symlinks=True)
    before = _manifest(golden)
    env = cli_env(**moving_knob.env, GATE_MODELS=str(models),
                  GATE_DRIFT_GOLDEN=str(golden_bundle), PYTHONDONTWRITEBYTECODE="1")
    session = f"--envaudit-golden={golden}"
    recorded = _pytest(project, env, "--envaudit-record", session,
                       *(f"{CANARY}::{name}" for name in PASSING), "test_own_model_gate.py")
    after = _manifest(golden)
    checked = _pytest(project, env, "-n", "2", session)
    return Gated(recorded, checked, golden, golden_bundle, before, after, models)


def test_record_rewrites_the_golden_once_and_skips_saying_so(gated, moving_knob):
    run = gated.recorded
    assert run.returncode == 0, run.stdout[-3000:]
    first, second = (run.cases[name] for name in PASSING)
    assert (first.outcome, second.outcome, run.cases[MODEL].outcome) == ("skipped",) * 3
    assert f"recorded golden {gated.golden} (--envaudit-record)" in first.message
    assert "recorded earlier in this session" in second.message  # the same golden: once
    assert f"recorded golden {gated.models / 'golden'}" in run.cases[MODEL].message
    # Recorded again, here, with the knob set: a new manifest, the knob in its fingerprint and
    # arrays that moved with it.
    before, after = gated.before, gated.after
    assert after["created_at"] > before["created_at"]
    assert after["fingerprint"]["env"].get(moving_knob.name) == moving_knob.value
    assert moving_knob.name not in before["fingerprint"]["env"]
    moved = [name for name, sha in before["files"].items() if after["files"].get(name) != sha]
    assert moved and after["modes"] == before["modes"]
    summary = run.summary()
    assert f"  {CANARY}::{PASSING[0]}: golden {gated.golden}: recorded" in summary


def test_a_check_that_passes_returns_and_the_summary_says_so(gated):
    run = gated.checked
    assert run.returncode == 1, run.stdout[-3000:]  # the drift and the missing golden fail
    for name in (*PASSING, MODEL):
        assert run.cases[name].outcome == "passed", (name, run.cases[name].message)
    summary = run.summary()
    for name in PASSING:
        assert f"  {CANARY}::{name}: golden {gated.golden}: identical, passed" in summary
    assert (f"  test_own_model_gate.py::{MODEL}: golden {gated.models / 'golden'}:"
            " identical, passed") in summary


def test_two_workers_check_and_the_environment_is_listed_once(gated):
    run = gated.checked
    assert sorted(run.cases[name].worker for name in PASSING) == ["gw0", "gw1"]
    summary = run.summary()
    environments = [line for line in summary if line.startswith("environment ")]
    assert environments == [f"environment {gated.after['fingerprint']['fingerprint_id']}"]
    assert any(re.fullmatch(r"  TensorFlow: \d+\.\d+.*", line) for line in summary)
    assert any(line.startswith("  CPU: ") for line in summary)
    assert sum(1 for line in summary if line.startswith("  test_")) == 5  # both workers' checks


def test_a_drift_fails_with_the_headline_and_where_it_first_diverged(gated, moving_knob):
    run = gated.checked
    case = run.cases[DRIFT]
    assert case.outcome == "failed"
    lines = case.message.removeprefix("Failed: ").splitlines()
    headline = lines[0]
    # The check's own headline, as its whole report (attached to the failure) begins, with the
    # cause and its label: the knob, confirmed by putting it back or only likely.
    assert re.match(r"(≈ Equivalent|▲ Drift|✖ Precision loss): ", headline), headline
    assert re.search(rf"; cause: env\.{moving_knob.name}: .*\((confirmed|likely[^)]*)\)\.$",
                     headline), headline
    assert headline in run.stdout.split("Captured envaudit report call", 1)[1].splitlines()
    assert lines[1] == f"golden {gated.drift_golden}: exit 1; strict=True: only identical passes"
    assert re.fullmatch(r"first divergence, eager mode: stage '\w+'", lines[2]), lines
    assert "Traceback" not in run.stdout and "pytest_gate.py" not in case.message
    summary = run.summary()
    assert any(line.startswith(f"  {CANARY}::{DRIFT}: golden ") and
               line.endswith(" (strict), failed") for line in summary), summary


def test_a_missing_golden_fails_with_one_line_that_says_how_to_record(gated):
    run = gated.checked
    case = run.cases[MISSING]
    assert case.outcome == "failed"
    message = case.message.removeprefix("Failed: ")
    assert message.startswith("envaudit: no golden bundle at ") and "\n" not in message
    assert message.endswith("run pytest once with --envaudit-record"), message
    assert "During handling" not in run.stdout


def test_the_plugin_imports_nothing_heavy_and_a_session_without_it_sees_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import json, sys, envaudit.pytest_plugin;"
         " print(json.dumps(sorted(sys.modules)))"],
        env=cli_env(), capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(proc.stdout))
    assert not loaded & {"numpy", "tensorflow", "rich", "envaudit.pytest_gate", "envaudit.store"}
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly"
                                         " -p no:cacheprovider\n")
    (tmp_path / "test_plain.py").write_text(
        "import sys\n\n"
        "def test_plain(request):\n"
        "    assert request.config.pluginmanager.has_plugin('envaudit')\n"
        "    assert 'envaudit.pytest_gate' not in sys.modules\n")
    session = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=tmp_path,
                             env=cli_env(PYTHONDONTWRITEBYTECODE="1"), capture_output=True,
                             text=True, timeout=120, check=False)
    assert session.returncode == 0, session.stdout
    assert "envaudit" not in session.stdout + session.stderr


def test_a_golden_folder_is_locked_while_it_is_recorded_and_nothing_is_left(tmp_path):
    """Two xdist workers recording into one folder take turns: another process cannot lock the
    folder while one records there."""
    from envaudit.pytest_gate import _folder_locked

    folder = tmp_path / "goldens"
    probe = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY);"
             " fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)")

    def another_process_locks() -> bool:
        return subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True,
                              timeout=60, check=False).returncode == 0

    with _folder_locked(folder / "canary"):
        assert not another_process_locks()
    assert another_process_locks()
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("data", [
    None, [], "identical", {"outcome": "passed"}, {"outcome": "identical", "test": 3},
    {"outcome": "identical", "environment": [["TensorFlow"]]},
    {"outcome": "identical", "environment": [["TensorFlow", 2]]},
], ids=str)
def test_what_a_worker_sends_is_refused_unless_it_is_an_entry(data):
    from envaudit.pytest_gate import GateEntry

    assert GateEntry.from_dict(data) is None


def test_an_entry_is_the_same_after_the_trip_from_a_worker():
    from envaudit.pytest_gate import GateEntry

    entry = GateEntry("t.py::test_x", "/goldens/canary", "equivalent", False, True,
                      fingerprint_id="fp-1", environment=(("TensorFlow", "2.21.0"),))
    assert GateEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry


def test_the_session_golden_is_the_option_else_the_ini_else_the_configuration(tmp_path):
    """Where envaudit_check() looks, by precedence; each golden is missing, so each session fails
    in milliseconds (before TensorFlow), naming the golden it looked for."""
    (tmp_path / "pyproject.toml").write_text('[tool.envaudit]\ngolden = "from-config"\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly -p no:cacheprovider\n")
    (tmp_path / "test_gate.py").write_text("def test_gate(envaudit_check):\n"
                                           "    envaudit_check()\n")
    sessions = {"from-config": (), "from-ini": ("-o", "envaudit_golden=from-ini"),
                "from-option": ("-o", "envaudit_golden=from-ini",
                                f"--envaudit-golden={tmp_path / 'from-option'}")}
    for expected, args in sessions.items():
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=tmp_path,
                              env=cli_env(PYTHONDONTWRITEBYTECODE="1"), capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 1, proc.stdout
        assert f"envaudit: no golden bundle at {tmp_path / expected};" in proc.stdout, proc.stdout


def test_a_drift_verdict_fails_the_default_gate_with_its_headline(tmp_path, golden_bundle):
    """Where no setting makes the canary drift on this CPU (the knob moves it by rounding, so the
    gate above is strict), the default gate's decision is tested on a drift result: the check
    itself is stood in for by a finished result with changed detections, nothing else is."""
    tests = Path(__file__).resolve().parent
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly"
                                         " -p no:cacheprovider\n")
    (tmp_path / "conftest.py").write_text(
        "import envaudit\n"
        "from test_render_check import make_result\n\n"
        "envaudit.check = lambda **_: make_result(changed_detections=True)\n")
    (tmp_path / "test_gate.py").write_text("def test_gate(envaudit_check):\n"
                                           "    envaudit_check()\n")
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--envaudit-golden={golden_bundle}"],
        cwd=tmp_path, env=cli_env(PYTHONPATH=str(tests), PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True, text=True, timeout=120, check=False)
    assert session.returncode == 1, session.stdout + session.stderr
    failure = [line for line in session.stdout.split("_ test_gate _", 1)[1].splitlines()[1:]
               if line]
    assert failure[0].startswith("▲ Drift: "), session.stdout
    assert failure[0].endswith("; cause: env.TF_ENABLE_ONEDNN_OPTS: unset -> '0' (confirmed).")
    assert failure[1].endswith(": exit 1")
    assert "test_gate.py::test_gate: golden " in session.stdout  # the session's summary
    assert session.stdout.count(": drift, failed") == 1
