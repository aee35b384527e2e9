"""The golden store: a bundle round-trips, a tampered one is refused, and a write is atomic even
when the writing process is killed half-way.

These tests write small bundles in-process (no TensorFlow); the CLI tests at the end read a copy
of the session bundle and fail before TensorFlow is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, cli_env, run_cli

from envaudit import store
from envaudit.errors import EnvauditError
from envaudit.fingerprint import Fingerprint, capture


@pytest.fixture(scope="module")
def fingerprint() -> Fingerprint:
    return capture()


def arrays(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Small arrays of several dtypes, names deliberately out of alphabetical order."""
    rng = np.random.default_rng(seed)
    return {
        "stages": {
            "zeta": rng.standard_normal((2, 3, 4)).astype(np.float32),
            "alpha": rng.standard_normal(5).astype(np.float32),
            "mid": rng.integers(0, 255, (2, 4, 4, 3)).astype(np.uint8),
        },
        "probes": {
            "tanh": np.tanh(rng.standard_normal(7).astype(np.float32)),
            "exp": np.exp(rng.standard_normal(3).astype(np.float32)),
        },
        "twin": {"zeta": rng.standard_normal((2, 3, 4)), "alpha": rng.standard_normal(5)},
    }


def write(target: Path, fingerprint: Fingerprint, seed: int = 0, force: bool = False) -> Path:
    a = arrays(seed)
    return store.write_bundle(
        target,
        fingerprint=fingerprint,
        workload={"id": "test.workload", "version": "1", "assets": {"w.npz": "0" * 64},
                  "timings": {}},
        images=("a.png", "b.jpg"),
        force=force,
        stages={"eager": a["stages"]},
        probes=a["probes"],
        twin=a["twin"],
    )


FILES = ("stages.eager.npz", "probes.npz", "twin.npz")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_manifest(bundle: Path, **fields: Any) -> None:
    manifest = json.loads((bundle / store.MANIFEST).read_text())
    manifest.update(fields)
    (bundle / store.MANIFEST).write_text(json.dumps(manifest, indent=2))


# --- round trip ---------------------------------------------------------------------------------


def test_write_then_load_round_trips_every_array_in_order(tmp_path, fingerprint):
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    assert target == (tmp_path / "bundle").absolute()
    bundle = store.load_bundle(target)
    expected = arrays(1)
    for group in ("stages", "probes", "twin"):
        loaded = getattr(bundle, group)
        assert list(loaded) == list(expected[group]), group
        for name, array in expected[group].items():
            assert loaded[name].dtype == array.dtype, (group, name)
            assert loaded[name].shape == array.shape, (group, name)
            assert loaded[name].tobytes() == array.tobytes(), (group, name)
    assert bundle.array_count == 3 + 2 + 2
    assert bundle.modes == ("eager",)
    assert bundle.fingerprint.fingerprint_id == fingerprint.fingerprint_id
    assert bundle.manifest["schema"] == store.SCHEMA
    assert bundle.manifest["images"] == ["a.png", "b.jpg"]
    assert sorted(p.name for p in target.iterdir()) == sorted([*FILES, store.MANIFEST])
    assert leftovers(tmp_path) == []


def test_manifest_lists_the_sha256_of_every_array_file(tmp_path, fingerprint):
    target = write(tmp_path / "bundle", fingerprint)
    manifest = json.loads((target / store.MANIFEST).read_text())
    assert manifest["files"] == {
        name: hashlib.sha256((target / name).read_bytes()).hexdigest()
        for name in FILES
    }


# --- refusing tampered or foreign bundles ---------------------------------------------------------


@pytest.fixture
def bundle(tmp_path, fingerprint) -> Path:
    return write(tmp_path / "bundle", fingerprint)


def test_one_changed_byte_in_an_array_file_is_refused(bundle):
    flip_byte(bundle / "stages.eager.npz")
    with pytest.raises(EnvauditError, match="stages.eager.npz") as error:
        store.load_bundle(bundle)
    assert "corrupt or was modified" in str(error.value)
    assert "--force" in str(error.value)


def test_a_missing_array_file_is_refused(bundle):
    (bundle / "twin.npz").unlink()
    with pytest.raises(EnvauditError, match=r"twin\.npz is missing"):
        store.load_bundle(bundle)


def test_an_edited_manifest_is_refused_by_its_own_checksum(bundle):
    rewrite_manifest(bundle, created_at="2001-01-01T00:00:00+00:00")
    with pytest.raises(EnvauditError, match="was modified") as error:
        store.load_bundle(bundle)
    assert store.MANIFEST in str(error.value)


def test_an_edited_file_checksum_in_the_manifest_is_refused(bundle):
    # Replacing an array and its listed checksum together still breaks the manifest checksum.
    manifest = json.loads((bundle / store.MANIFEST).read_text())
    shutil.copy(bundle / "probes.npz", bundle / "stages.eager.npz")
    files = dict(manifest["files"], **{"stages.eager.npz": manifest["files"]["probes.npz"]})
    rewrite_manifest(bundle, files=files)
    with pytest.raises(EnvauditError, match="was modified"):
        store.load_bundle(bundle)


def test_another_schema_is_refused_with_how_to_re_record(bundle):
    rewrite_manifest(bundle, schema="envaudit.golden/99")
    with pytest.raises(EnvauditError) as error:
        store.load_bundle(bundle)
    message = str(error.value)
    assert "'envaudit.golden/99'" in message
    assert store.SCHEMA in message
    assert "envaudit record --golden PATH --force" in message


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(EnvauditError, match="no golden bundle at") as error:
        store.load_bundle(tmp_path / "nowhere")
    assert "envaudit record --golden" in str(error.value)


def test_a_folder_without_manifest_is_refused(tmp_path):
    (tmp_path / "stages.eager.npz").write_bytes(b"not a bundle")
    with pytest.raises(EnvauditError, match=f"not a golden bundle \\(no {store.MANIFEST}\\)"):
        store.load_bundle(tmp_path)


def test_a_manifest_that_is_not_json_is_refused(bundle):
    text = (bundle / store.MANIFEST).read_text()
    (bundle / store.MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(EnvauditError, match="is not valid JSON"):
        store.load_bundle(bundle)


def test_a_json_file_of_another_kind_is_refused(bundle, fingerprint):
    (bundle / store.MANIFEST).write_text(fingerprint.to_json())
    with pytest.raises(EnvauditError, match="not an envaudit golden manifest"):
        store.load_bundle(bundle)


# --- atomic writes --------------------------------------------------------------------------------

# A child process that writes a bundle, pausing for a minute after the first file is on disk.
WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from envaudit import store
from envaudit.fingerprint import capture
from test_store import write
real = store._write_synced
def write_then_stall(path, data):
    real(path, data)
    time.sleep(60)
store._write_synced = write_then_stall
write(Path(sys.argv[1]), capture())
"""


def wait_for_partial(parent: Path, name: str, child: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for entry in parent.glob(f".{name}.partial-{child.pid}-*"):
            if (entry / "stages.eager.npz").is_file():
                return entry
        assert child.poll() is None, child.communicate()[1]
        time.sleep(0.02)
    raise AssertionError(f"no partial bundle appeared in {parent}")


def test_a_write_killed_half_way_leaves_no_bundle_and_no_trap(tmp_path, fingerprint):
    target = tmp_path / "bundle"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ROOT / "tests")],
                             cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        partial = wait_for_partial(tmp_path, "bundle", child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)  # reaped: its pid is gone, as after a real kill
    assert child.returncode == -signal.SIGKILL

    assert not target.exists()
    assert partial.is_dir()  # the debris a killed record leaves
    assert not (partial / store.MANIFEST).exists()
    with pytest.raises(EnvauditError, match="no golden bundle at"):
        store.load_bundle(target)

    write(target, fingerprint, seed=3)
    assert not partial.exists()
    assert leftovers(tmp_path) == []
    assert store.load_bundle(target).stages["zeta"].tobytes() == \
        arrays(3)["stages"]["zeta"].tobytes()


def test_a_partial_folder_of_a_live_writer_is_not_removed(tmp_path, fingerprint):
    # Another record still running beside us (this very process) keeps its partial folder.
    live = tmp_path / f".bundle.partial-{os.getpid()}-inprogress"
    live.mkdir()
    write(tmp_path / "bundle", fingerprint)
    assert live.is_dir()


def test_an_exception_mid_write_leaves_nothing(tmp_path, fingerprint, monkeypatch):
    real = store._write_synced
    written: list[str] = []

    def write_one_then_fail(path: Path, data: bytes) -> None:
        if written:
            raise OSError(28, "No space left on device")
        real(path, data)
        written.append(path.name)

    monkeypatch.setattr(store, "_write_synced", write_one_then_fail)
    with pytest.raises(EnvauditError, match="No space left on device; free space or choose"):
        write(tmp_path / "bundle", fingerprint)
    assert written == ["stages.eager.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_interrupt_mid_write_leaves_nothing(tmp_path, fingerprint, monkeypatch):
    def interrupted(path: Path, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_write_synced", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "bundle", fingerprint)
    assert list(tmp_path.iterdir()) == []


# --- replacing ------------------------------------------------------------------------------------


def test_force_replaces_a_bundle_whole(tmp_path, fingerprint):
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    write(target, fingerprint, seed=2, force=True)
    bundle = store.load_bundle(target)
    for name, array in arrays(2)["stages"].items():
        assert bundle.stages[name].tobytes() == array.tobytes()
    assert arrays(1)["stages"]["zeta"].tobytes() != bundle.stages["zeta"].tobytes()
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_without_force_an_existing_bundle_is_refused_and_kept(tmp_path, fingerprint):
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(EnvauditError, match="already exists; pass --force"):
        write(target, fingerprint, seed=2)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_an_empty_folder_is_written_into_without_force(tmp_path, fingerprint):
    (tmp_path / "bundle").mkdir()
    write(tmp_path / "bundle", fingerprint)
    assert store.load_bundle(tmp_path / "bundle").array_count == 7


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_is_not_a_bundle_is_never_replaced(tmp_path, fingerprint, force):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    with pytest.raises(EnvauditError, match="is not an envaudit bundle"):
        write(target, fingerprint, force=force)
    assert [p.name for p in target.iterdir()] == ["holiday.jpg"]
    assert (target / "holiday.jpg").read_bytes() == b"\xff\xd8 precious"
    assert leftovers(tmp_path) == []


def test_a_file_in_the_way_is_never_replaced(tmp_path, fingerprint):
    (tmp_path / "bundle").write_text("notes")
    with pytest.raises(EnvauditError, match="is not an envaudit bundle"):
        write(tmp_path / "bundle", fingerprint, force=True)
    assert (tmp_path / "bundle").read_text() == "notes"


# --- the CLI on a tampered copy of a recorded bundle ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("tamper", ["array byte", "manifest edit", "schema", "manifest gone"])
def test_check_refuses_a_tampered_recorded_bundle(golden_bundle, tmp_path, tamper):
    copy = tmp_path / "copy"
    shutil.copytree(golden_bundle, copy)
    expected = {
        "array byte": "twin.npz",
        "manifest edit": "was modified",
        "schema": "'envaudit.golden/3'",
        "manifest gone": "not a golden bundle",
    }[tamper]
    if tamper == "array byte":
        flip_byte(copy / "twin.npz")
    elif tamper == "manifest edit":
        manifest = json.loads((copy / store.MANIFEST).read_text())
        manifest["fingerprint"]["env"]["TF_ENABLE_ONEDNN_OPTS"] = "0"
        (copy / store.MANIFEST).write_text(json.dumps(manifest))
    elif tamper == "schema":
        rewrite_manifest(copy, schema="envaudit.golden/3")
    else:
        (copy / store.MANIFEST).unlink()
    proc = run_cli("check", "--golden", str(copy), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("envaudit: error: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_bundle_with_a_corrupt_manifest_is_not_replaced_even_with_force(tmp_path, fingerprint):
    """A manifest that cannot be read cannot prove envaudit wrote the folder: refused, kept."""
    target = write(tmp_path / "bundle", fingerprint)
    manifest = target / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(EnvauditError, match="--force"):
        store.load_bundle(target)
    with pytest.raises(EnvauditError, match="manifest.json is unreadable, so envaudit cannot tell"):
        write(target, fingerprint, seed=3, force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_bundles_are_readable_by_others_as_the_umask_allows(tmp_path, fingerprint):
    old = os.umask(0o022)
    try:
        target = write(tmp_path / "bundle", fingerprint)
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o755


# A child process that replaces the bundle with --force where the file system cannot exchange two
# folders, and dies between setting the old bundle aside and renaming the new one in.
KILLED_SWAP = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from envaudit import bundle_files
from envaudit.fingerprint import capture
from test_store import write
target = Path(sys.argv[1])
bundle_files._exchange = lambda a, b: False
real = os.rename
def rename(src, dst, **kwargs):
    if Path(dst) == target and ".partial-" in str(src) and not os.path.lexists(dst):
        os._exit(9)
    return real(src, dst, **kwargs)
os.rename = rename
write(target, capture(), seed=2, force=True)
"""


def kill_mid_swap(target: Path) -> Path:
    """Leave what a --force killed half-way leaves; the folder the old bundle was set aside in."""
    proc = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(target), str(ROOT / "tests")],
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 9, proc.stderr
    assert not os.path.lexists(target)
    [aside] = target.parent.glob(f".{target.name}.old-*")
    return aside


def test_a_swap_killed_half_way_gives_the_previous_bundle_back(tmp_path, fingerprint):
    """--force sets the old bundle aside, then renames the new one in; if the process dies in
    between, the next write puts the old bundle back before it does anything else."""
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    before = (target / "stages.eager.npz").read_bytes()
    aside = kill_mid_swap(target)
    assert (aside / "bundle" / "stages.eager.npz").read_bytes() == before
    with pytest.raises(EnvauditError, match="already exists"):
        write(target, fingerprint, seed=2)  # restores first, then refuses without --force
    assert (target / "stages.eager.npz").read_bytes() == before
    assert leftovers(tmp_path) == []
