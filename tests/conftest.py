"""Shared fixtures, and the hermetic environment every test runs in.

Hermetic: before any test or fixture runs (``pytest_configure``), the process environment is made
the same on every machine and under any shell: the variables envaudit records as numerics
settings are removed (``TF_*``, ``ONEDNN_*``, ``OMP_*``, ``CUDA_*``, ``XLA_FLAGS``, ...; a test
that needs one sets it), and so are Terraform's ``TF_*`` variables, envaudit's own ``ENVAUDIT_*``,
Dask's ``DASK_*`` and rich's colour forcing (``FORCE_COLOR``, ...); ``HOME`` and ``XDG_*`` point
into a fresh temporary folder, ``COLUMNS``, ``TZ`` and ``NO_COLOR`` are fixed. Two families are
kept on purpose: ``OPENBLAS_*``, which this kind of machine sets because older OpenBLAS builds
compute wrong results or crash without them, and ``LD_*``, which the interpreter itself may need
to start. Every subprocess a test starts inherits this environment.

TensorFlow subprocesses cost seconds each, so recorded bundles and check runs are made once per
session here and shared by every test that reads them. Which environment change moves the numbers
differs between CPUs (oneDNN is on by default only on some); ``moving_knob`` asks this machine
once per session (``tests/moving_knob.py``), and every test that needs "a change that moves the
numbers" uses it instead of naming one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import settings
from moving_knob import Decision, Knob
from moving_knob import probe as probe_moving_knob

ROOT = Path(__file__).resolve().parents[1]
collect_ignore = ["plugin_project"]  # a project of its own, run by test_pytest_plugin.py
KEPT = ("OPENBLAS_", "LD_")
# Removed beside the recorded variables: every TF_ and XLA_ name (Terraform's TF_CLI_CONFIG_FILE
# and TF_VAR_* share TensorFlow's prefix), envaudit's own settings (where history goes, debug
# output), Dask's configuration (the fleet tests start their own clusters), and what makes rich
# write colour and terminal codes into a pipe.
STRIPPED_PREFIXES = ("TF_", "XLA_", "ENVAUDIT_", "DASK_")
STRIPPED_NAMES = frozenset({"FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE"})
FIXED = {"COLUMNS": "120", "LINES": "50", "TZ": "UTC", "NO_COLOR": "1", "LC_ALL": "C.UTF-8"}


def ambient_strays(names: Iterable[str]) -> list[str]:
    """The variables among ``names`` that the hermetic environment removes."""
    from envaudit.fingerprint.env_vars import is_recorded

    return [name for name in names
            if (is_recorded(name) or name.startswith(STRIPPED_PREFIXES)
                or name in STRIPPED_NAMES) and not name.startswith(KEPT)]


def pytest_configure(config: pytest.Config | None) -> None:
    for name in ambient_strays(list(os.environ)):
        del os.environ[name]
    home = Path(tempfile.mkdtemp(prefix="envaudit-tests-home-"))
    os.environ["HOME"] = str(home)
    for name, folder in (("XDG_DATA_HOME", ".local/share"), ("XDG_CONFIG_HOME", ".config"),
                         ("XDG_CACHE_HOME", ".cache")):
        (home / folder).mkdir(parents=True)
        os.environ[name] = str(home / folder)
    os.environ.update(FIXED)
    if hasattr(os, "tzset"):
        os.tzset()


def pytest_unconfigure(config: pytest.Config | None) -> None:
    home = Path(os.environ.get("HOME", ""))
    if home.name.startswith("envaudit-tests-home-"):
        shutil.rmtree(home, ignore_errors=True)


# Property tests: no deadline (NumPy and the first call of a function vary in time on a loaded
# 2-core machine); 100 examples each keep the whole suite within its budget.
settings.register_profile("envaudit", deadline=None, max_examples=100)
settings.load_profile("envaudit")


def cli_env(**overrides: str | None) -> dict[str, str]:
    """The environment a test's envaudit subprocess sees: the hermetic one, plus overrides
    (``None`` removes a variable)."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envaudit", *args], env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def golden_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle recorded in this environment with default settings but no training steps (one
    TF subprocess): most checks test the inference, and each check of a bundle with steps trains
    them again for about a second."""
    path = tmp_path_factory.mktemp("golden") / "default"
    proc = run_cli("record", "--golden", str(path), "--steps", "0")
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle recorded in this environment with default settings, its three training steps
    included (what ``envaudit record`` writes): for the tests of training."""
    path = tmp_path_factory.mktemp("golden") / "trained"
    proc = run_cli("record", "--golden", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="session")
def tflite_golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A bundle with graph, tflite and tflite-float16 (no training steps), and what record said
    on stderr (the conversion gaps)."""
    path = tmp_path_factory.mktemp("tflite") / "golden"
    proc = run_cli("record", "--golden", str(path), "--modes", "graph,tflite",
                   "--tflite-optimize", "float16", "--steps", "0", "--no-history")
    assert proc.returncode == 0, proc.stderr
    return path, proc.stderr


@pytest.fixture(scope="session")
def tf32_off_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle recorded with ``--tf32 off`` in this environment (one TF subprocess)."""
    path = tmp_path_factory.mktemp("golden") / "tf32-off"
    proc = run_cli("record", "--golden", str(path), "--tf32", "off", "--steps", "0")
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="session")
def workload_result():
    """One in-process run of the workload (TensorFlow imported into the test process)."""
    from envaudit.workload import run_workload

    return run_workload()


@pytest.fixture(scope="session")
def check_same(golden_bundle: Path) -> list[tuple[int, dict]]:
    """Three checks in a row in the recording environment: (exit code, JSON) each."""
    runs = []
    for _ in range(3):
        proc = run_cli("check", "--golden", str(golden_bundle), "--format", "json")
        assert proc.returncode in (0, 1), proc.stderr
        runs.append((proc.returncode, json.loads(proc.stdout)))
    return runs


# The probe's answer, kept for the session's summary line (None: no test asked for it).
_KNOB_DECISION: list[Decision] = []


@pytest.fixture(scope="session")
def knob_decision() -> Decision:
    """What the raw-TensorFlow canary says on this machine (three subprocesses at once)."""
    decision = probe_moving_knob(cli_env())
    _KNOB_DECISION.append(decision)
    return decision


@pytest.fixture(scope="session")
def moving_knob(knob_decision: Decision) -> Knob:
    """The setting that moves TensorFlow's numbers on this machine (``TF_ENABLE_ONEDNN_OPTS=0``
    where oneDNN is on by default, ``=1`` on an AVX2-only CPU, else a fallback), probed once per
    session with raw TensorFlow; a test that needs one is skipped, with the reason, where none
    does."""
    decision = knob_decision
    if decision.knob is None:
        pytest.skip(f"no setting moves TensorFlow's numbers on this machine: {decision.reason}")
    return decision.knob


# The summary lines of the decisions made by pytest-xdist's workers, gathered on the controller.
_WORKER_KNOB_LINES: list[str] = []


def _knob_lines() -> list[str]:
    lines = []
    for decision in _KNOB_DECISION:
        knob = decision.knob
        chosen = f"{knob.name}={knob.value}" if knob else "none"
        lines.append(f"moving knob on this machine: {chosen} ({decision.reason})")
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)  # set on an xdist worker
    if workeroutput is not None:
        workeroutput["knob_lines"] = _knob_lines()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    for line in getattr(node, "workeroutput", {}).get("knob_lines", []):
        if line not in _WORKER_KNOB_LINES:
            _WORKER_KNOB_LINES.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in dict.fromkeys([*_knob_lines(), *_WORKER_KNOB_LINES]):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def check_knob_moved(trained_bundle: Path, moving_knob: Knob) -> tuple[int, dict]:
    """A check with the moving knob set against the default-settings bundle (its training steps
    included: the knob moves them too), confirming."""
    proc = run_cli("check", "--golden", str(trained_bundle), "--format", "json",
                   env=cli_env(**moving_knob.env))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


# The golden side of an upgrade: an earlier TensorFlow release (the CPU-only distribution) and an
# earlier NumPy, as a team that recorded a while ago would have them.
OTHER_RELEASE = ("tensorflow-cpu==2.20.0", "numpy==2.3.5")
RUNTIME = ("psutil", "py-cpuinfo", "nvidia-ml-py", "rich")


def build_other_release(venv: Path) -> str | None:
    """Create ``venv`` with the other releases and this checkout; why not, or None."""
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *OTHER_RELEASE, *RUNTIME],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "--no-deps", "-e", str(ROOT)],
    ]
    for step in steps:
        try:
            proc = subprocess.run(step, env=cli_env(), capture_output=True, text=True,
                                  timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot build an environment with {', '.join(OTHER_RELEASE)}: {exc}"
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return (f"cannot build an environment with {', '.join(OTHER_RELEASE)} (package"
                    f" index?): {last}")
    return None


@pytest.fixture(scope="session")
def other_release_golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A golden recorded under TensorFlow 2.20 (tensorflow-cpu) and NumPy 2.3.5; the test that
    asks for it is skipped, with the reason, where that environment cannot be built."""
    base = tmp_path_factory.mktemp("other-release")
    why = build_other_release(base / "venv")
    if why:
        pytest.skip(why)
    golden = base / "golden"
    proc = subprocess.run([str(base / "venv" / "bin" / "python"), "-m", "envaudit", "record",
                           "--golden", str(golden)], env=cli_env(), capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return golden


def real_uv_cache() -> str:
    """uv's wheel cache of the real user (the hermetic HOME is empty and deleted after the
    session): TensorFlow's wheels are downloaded once per machine, not once per test run."""
    import pwd

    return os.environ.get("UV_CACHE_DIR") or str(
        Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "uv")


# A change that moves only the xla mode: XLA's CPU compiler with fast math approximates the
# transcendental functions it compiles, and eager and graph (which XLA does not compile) stay
# bit-identical. Measured with raw envaudit on the development machine (x86-64, AVX-512).
XLA_ONLY = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}
_XLA_ONLY_CHECK = """
import sys
import envaudit
from envaudit.render import check_html, check_json
result = envaudit.check(golden=sys.argv[1], confirm=False)
open(sys.argv[2], "w", encoding="utf-8").write(check_html.render(result))
open(sys.argv[3], "w", encoding="utf-8").write(check_json.render(result))
"""


@pytest.fixture(scope="session")
def xla_only_check(golden_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[
        Path, dict]:
    """A check of the default-settings bundle with ``XLA_ONLY`` set, without confirmation
    re-runs: its HTML page (a file) and its JSON, both from one TensorFlow subprocess."""
    folder = tmp_path_factory.mktemp("xla-only")
    page, data = folder / "check.html", folder / "check.json"
    proc = subprocess.run([sys.executable, "-c", _XLA_ONLY_CHECK, str(golden_bundle), str(page),
                           str(data)], env=cli_env(**XLA_ONLY), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return page, json.loads(data.read_text(encoding="utf-8"))
