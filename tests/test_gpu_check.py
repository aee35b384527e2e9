"""tools/gpu_check.sh under the lent GPU machine's constraints, on this CPU machine.

The GPU image has Python with numpy, psutil, py-cpuinfo, rich and nvidia-ml-py, and no
TensorFlow, Dask, matplotlib or uv; the repository arrives as a copy and nothing may be
installed. So the script runs here with a virtual environment holding only those five packages
(built once per session with uv; skipped, with the reason, where the package index cannot be
reached), the checkout on PYTHONPATH through the script itself, and no install step. Without a
driver every NVML step must say it is unavailable, and the fingerprint, the report and the NVML
recording must still be written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from nvml_replay import FakeNVML, nvml_error

from envaudit.fingerprint import gpu

ROOT = Path(__file__).resolve().parents[1]
GPU_IMAGE = ("numpy", "psutil", "py-cpuinfo", "rich", "nvidia-ml-py")
NOT_THERE = ("tensorflow", "dask", "matplotlib", "uv", "envaudit")
STEPS = ("python", "nvidia-smi", "fingerprint", "report", "fleet GPUs", "nvml recording",
         "nvml replay", "training")
NVML_STEPS = ("nvidia-smi", "fleet GPUs", "nvml recording")


@pytest.fixture(scope="session")
def gpu_image_python(tmp_path_factory) -> Path:
    """The python of a virtual environment holding only what the GPU image has."""
    try:
        from uv import find_uv_bin

        uv = find_uv_bin()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"uv is not usable here ({exc}): cannot build the GPU image's environment")
    folder = tmp_path_factory.mktemp("gpu-image") / "venv"
    python = folder / "bin" / "python"
    for command in ([uv, "venv", "--quiet", "--python", sys.executable, str(folder)],
                    [uv, "pip", "install", "--quiet", "--python", str(python), *GPU_IMAGE]):
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if run.returncode != 0:
            reason = (run.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"GPU image environment not built: {reason}", file=sys.stderr)
            pytest.skip(f"the GPU image's packages could not be installed here: {reason}")
    return python


def run_script(python: Path | str, out: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
           "OUT": str(out), "PYTHON": str(python), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], env=env, cwd="/",
                          capture_output=True, text=True, timeout=timeout, check=False)


def status_lines(stdout: str) -> dict[str, str]:
    """STEP -> its status ("ok", "unavailable: ...", "failed: ..."), each step exactly once."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        match = re.match(rf"^({'|'.join(STEPS)}): (ok\b.*|unavailable: .+|failed: .+)$", line)
        if match:
            assert match.group(1) not in found, f"two status lines for {match.group(1)}"
            found[match.group(1)] = match.group(2)
    return found


def test_the_environment_is_the_gpu_images(gpu_image_python):
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    run = subprocess.run([str(gpu_image_python), "-c", probe, "numpy", "psutil", "cpuinfo",
                          "rich", "pynvml", *NOT_THERE], capture_output=True, text=True,
                         timeout=60, check=True, cwd="/")
    assert run.stdout.strip() == str(["numpy", "psutil", "cpuinfo", "rich", "pynvml"])


def test_gpu_check_runs_without_tensorflow_and_says_what_is_unavailable(gpu_image_python,
                                                                        tmp_path):
    out = tmp_path / "out"
    run = run_script(gpu_image_python, out)  # its own limit is two minutes; here one

    assert run.returncode == 0, run.stdout + run.stderr
    statuses = status_lines(run.stdout)
    assert set(statuses) == set(STEPS), run.stdout
    assert not [s for s in statuses.values() if s.startswith("failed")], run.stdout
    for step in ("python", "fingerprint", "report", "nvml replay"):
        assert statuses[step].startswith("ok"), run.stdout
    assert statuses["training"] == "unavailable: TensorFlow is not installed here"
    if not gpu.nvml_library_loads():  # this machine: no driver
        for step in NVML_STEPS:
            assert statuses[step].startswith("unavailable: "), run.stdout
        assert "NVML: NVML Shared Library Not Found" in statuses["nvml recording"]
    assert re.search(r"^done in (\d+) s", run.stdout, re.M)
    assert int(re.search(r"^done in (\d+) s", run.stdout, re.M).group(1)) < 60

    assert sorted(p.name for p in out.iterdir()) == ["fingerprint.json", "nvml.json", "report.md"]
    fingerprint = json.loads((out / "fingerprint.json").read_text(encoding="utf-8"))
    assert fingerprint["tensorflow"]["available"] is False
    recording = json.loads((out / "nvml.json").read_text(encoding="utf-8"))
    if fingerprint["gpu"]["available"] is False:
        assert fingerprint["gpu"]["reason"].startswith("NVML: ")
        assert f"gpu: unavailable: {fingerprint['gpu']['reason']}" in run.stdout
        assert f"NVML: {nvml_error(recording['nvmlInit'])}" == fingerprint["gpu"]["reason"]
        # the recording replays through the tests' replayer to what the fingerprint said
        assert gpu.probe(FakeNVML(recording)) == fingerprint["gpu"]
    assert "GPU (NVML)" in (out / "report.md").read_text(encoding="utf-8")


def test_without_a_usable_python_the_script_says_so_and_fails(tmp_path):
    run = run_script(tmp_path / "no-python", tmp_path / "out", timeout=30)
    assert run.returncode == 1
    statuses = status_lines(run.stdout)
    assert list(statuses) == ["python"] and statuses["python"].startswith("failed: "), run.stdout
