"""Children run nothing from the working folder, and a re-run never hands XLA a file name.

envaudit runs in pull-request checkouts. Each test first builds the attack for real and shows
that it works on the unprotected path (a plain ``python -m`` in the checkout imports the
checkout's ``envaudit/``, ``numpy/`` and ``tensorflow/``; TensorFlow given ``XLA_FLAGS=" "`` reads
flags from a file named ``" "`` in the working folder), then that envaudit's own path does not
fall for it. Real subprocesses, real TensorFlow on the CPU: three TensorFlow starts in all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envaudit.attribute.allowlist import refusal
from envaudit.attribute.confirm import Experiment, _rerun, limits, plan
from envaudit.environments import PackageSet, ensure_env, run_workload
from envaudit.fingerprint.types import SCHEMA, Change, Fingerprint
from envaudit.workload.architecture import STAGES

SHADOWED = ("envaudit", "numpy", "tensorflow")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> None:
    """A private XDG cache, so that the environment built here is this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def checkout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A stranger's checkout whose ``envaudit``, ``numpy`` and ``tensorflow`` packages each leave
    a marker when imported; a folder with a ``sitecustomize`` that does the same, for
    ``PYTHONPATH``; the folder the markers go to."""
    folder, site, markers = tmp_path / "checkout", tmp_path / "site", tmp_path / "markers"
    markers.mkdir()
    for name in SHADOWED:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"open({str(markers / name)!r}, 'w').close()\n")
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"open({str(markers / 'sitecustomize')!r}, 'w').close()\n")
    return folder, site, markers


def marked(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def clear(markers: Path) -> None:
    for marker in markers.iterdir():
        marker.unlink()


def test_a_rerun_child_imports_nothing_from_the_working_folder_or_pythonpath(tmp_path,
                                                                            monkeypatch):
    folder, site, markers = checkout(tmp_path)
    # The attack, unprotected: a plain child started in the checkout imports the checkout's code.
    plain = subprocess.run([sys.executable, "-m", "envaudit.workload", str(tmp_path / "x.npz")],
                           cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert plain.returncode != 0 and {"envaudit", "numpy"} <= set(marked(markers))
    subprocess.run([sys.executable, "-c", "import numpy, tensorflow"], cwd=folder, check=True,
                   timeout=120, env={**os.environ, "PYTHONPATH": str(site)})
    assert marked(markers) == ["envaudit", "numpy", "sitecustomize", "tensorflow"]
    clear(markers)

    # envaudit's re-run from the same folder, with the same PYTHONPATH: the real packages run.
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PYTHONSTARTUP", str(site / "sitecustomize.py"))
    private = tmp_path / "private"
    private.mkdir()
    arrays = _rerun(Experiment("nothing put back", {}, ("env.NONE",)), private / "out.npz")
    assert not isinstance(arrays, str), arrays
    assert marked(markers) == []
    assert {f"stage/eager/{name}" for name in STAGES} <= set(arrays)
    assert any(key.startswith("probe/") for key in arrays)


def test_an_environment_child_imports_nothing_from_the_working_folder(cache, tmp_path,
                                                                      monkeypatch):
    folder, site, markers = checkout(tmp_path)
    python = ensure_env(PackageSet())  # a bare environment: no NumPy, no TensorFlow
    subprocess.run([str(python), "-c", "import numpy"], cwd=folder, check=True, timeout=60)
    assert marked(markers) == ["numpy"]  # the attack works on the environment's python too
    clear(markers)

    monkeypatch.chdir(folder)
    monkeypatch.setenv("PYTHONPATH", str(site))
    private = tmp_path / "private"
    private.mkdir()
    reason = run_workload(python, private / "out.npz", ["eager"])
    # The environment's own copy of envaudit ran and found no NumPy: the checkout's was not used.
    assert isinstance(reason, str) and "No module named 'numpy'" in reason
    assert marked(markers) == []


JIT = ("import tensorflow as tf; tf.function(jit_compile=True)(lambda x: x + 1)"
       "(tf.constant(1.0)).numpy()")


def test_a_blank_xla_flags_makes_xla_read_a_file_and_is_never_put_back(tmp_path, monkeypatch):
    folder, dump = tmp_path / "checkout", tmp_path / "dump"
    folder.mkdir()
    (folder / " ").write_text(f"--xla_dump_to={dump}\n")  # a file named by the value " "
    # The attack with plain TensorFlow: XLA reads its flags from that file and dumps.
    subprocess.run([sys.executable, "-c", JIT], cwd=folder, check=True, capture_output=True,
                   timeout=300, env={**os.environ, "XLA_FLAGS": " ", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert dump.is_dir() and len(list(dump.iterdir())) > 0

    why = refusal("XLA_FLAGS", " ")
    assert why is not None and "empty or blank" in why
    golden = Fingerprint({"schema": SCHEMA, "fingerprint_id": "g", "cpu": {}})
    changes = [Change("env.XLA_FLAGS", " ", None, "numerics-env", True)]
    assert plan(changes, golden, golden) == []  # no re-run is planned with it
    assert "empty or blank" in limits(changes, golden, golden)["env.XLA_FLAGS"]

    def no_child(*args, **kwargs):
        pytest.fail("a child was started with a refused XLA_FLAGS")

    monkeypatch.setattr(subprocess, "run", no_child)
    assert _rerun(Experiment("x", {"XLA_FLAGS": " "}, ("env.XLA_FLAGS",)),
                  tmp_path / "out.npz") == f"re-run refused: {why}"
