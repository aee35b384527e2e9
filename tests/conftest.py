"""Shared fixtures. TensorFlow subprocesses cost seconds each, so recorded bundles and check runs
are made once per session here and shared by every test that reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli_env(**overrides: str | None) -> dict[str, str]:
    """The environment a test's envaudit subprocess sees: this one, plain output, no user data."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["NO_COLOR"] = "1"
    env["XDG_DATA_HOME"] = str(ROOT / ".pytest_cache" / "xdg-data")
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
    """A bundle recorded in this environment with default settings (one TF subprocess)."""
    path = tmp_path_factory.mktemp("golden") / "default"
    proc = run_cli("record", "--golden", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="session")
def workload_result():
    """One in-process run of the workload (TensorFlow imported into the test process)."""
    from envaudit.workload import run_workload

    return run_workload()


@pytest.fixture(scope="session")
def check_same(golden_bundle: Path) -> list[tuple[int, dict]]:
    """Two checks in the recording environment: (exit code, JSON) each."""
    runs = []
    for _ in range(2):
        proc = run_cli("check", "--golden", str(golden_bundle), "--format", "json")
        assert proc.returncode in (0, 1), proc.stderr
        runs.append((proc.returncode, json.loads(proc.stdout)))
    return runs


@pytest.fixture(scope="session")
def check_onednn_off(golden_bundle: Path) -> tuple[int, dict]:
    """A check with TF_ENABLE_ONEDNN_OPTS=0 against the default-settings bundle, confirming."""
    proc = run_cli("check", "--golden", str(golden_bundle), "--format", "json",
                   env=cli_env(TF_ENABLE_ONEDNN_OPTS="0"))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)
