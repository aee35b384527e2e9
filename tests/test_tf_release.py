"""A golden recorded under another TensorFlow release, checked under this one: the modes that
moved are named and each is localized to its first divergent stage.

The test builds a virtual environment with TensorFlow 2.20 (``tensorflow-cpu``) from the package
index, installs this checkout into it without dependencies, records a golden there, and checks it
here. It needs the package index: where the environment cannot be built (no network, no wheel
for this platform) it is skipped with the reason, never silently; CI has the index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, run_cli

OTHER_RELEASE = "tensorflow-cpu==2.20.0"
RUNTIME = ("psutil", "py-cpuinfo", "nvidia-ml-py", "rich")


def build_other_release(venv: Path) -> str | None:
    """Create ``venv`` with the other TensorFlow release and this checkout; why not, or None."""
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", OTHER_RELEASE, *RUNTIME],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "--no-deps", "-e", str(ROOT)],
    ]
    for step in steps:
        try:
            proc = subprocess.run(step, env=cli_env(), capture_output=True, text=True,
                                  timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot build an environment with {OTHER_RELEASE}: {exc}"
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return f"cannot build an environment with {OTHER_RELEASE} (package index?): {last}"
    return None


@pytest.fixture(scope="module")
def other_release_golden(tmp_path_factory) -> Path:
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


@pytest.mark.slow
def test_an_upgrade_names_the_modes_that_moved_and_where(other_release_golden):
    proc = run_cli("check", "--golden", str(other_release_golden), "--format", "json",
                   "--no-confirm")
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    versions = {c["path"]: (c["golden"], c["current"]) for c in report["fingerprint_changes"]}
    assert versions["tensorflow.version"][0] == "2.20.0"
    assert versions["tensorflow.version"][1] != "2.20.0"
    assert report["verdict"] != "identical"
    moved = report["moved_modes"]
    assert moved, "an upgrade between TensorFlow releases moved no mode"
    by_mode = {m["mode"]: m for m in report["modes"]}
    for mode in moved:  # each moved mode is localized to the stage where it starts
        stages = [s for s in report["stages"] if s["mode"] == mode and not s["identical"]]
        assert by_mode[mode]["first_divergence"]["stage"] == stages[0]["name"], mode
    for mode in set(by_mode) - set(moved):
        assert by_mode[mode]["first_divergence"] is None, mode
    assert f"moved in {moved[0]}" in report["headline"]
