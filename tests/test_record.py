"""``envaudit record``: the bundle it writes, that a second record in the same environment gives
the same bits, and that it refuses what it must not overwrite or use (existing bundles, other
folders, missing or modified workload assets) with one stderr line and exit 2.

Recording runs TensorFlow in a subprocess (seconds), so the tests share the session bundle and
add two records of their own; every refusal happens before TensorFlow is imported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, cli_env, run_cli

from envaudit import store
from envaudit.errors import EnvauditError
from envaudit.workload import WORKLOAD_ID, WORKLOAD_VERSION
from envaudit.workload.assets import GOLDEN_SCENES

ASSETS = ROOT / "golden" / "assets"
MIB = 1 << 20
IMAGES = [f"{scene}.{fmt}" for scene in GOLDEN_SCENES for fmt in ("png", "jpg")]

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_checksums() -> dict[str, str]:
    sums = {}
    for line in (ASSETS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` with its sha256 and mtime."""
    return {str(p.relative_to(folder)): (sha256(p), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_error_line(proc, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("envaudit: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


# --- the bundle -------------------------------------------------------------------------------


@pytest.mark.slow
def test_manifest_holds_schema_workload_assets_fingerprint_and_time(golden_bundle):
    manifest = json.loads((golden_bundle / store.MANIFEST).read_text())
    assert manifest["schema"] == "envaudit.golden/2"
    workload = manifest["workload"]
    assert (workload["id"], workload["version"]) == (WORKLOAD_ID, WORKLOAD_VERSION)
    shipped = shipped_checksums()
    assert set(workload["assets"]) == {"detector_weights.npz", *IMAGES}
    for name, digest in workload["assets"].items():
        assert digest == shipped[name] == sha256(ASSETS / name), name

    fingerprint = manifest["fingerprint"]
    assert fingerprint["schema"] == "envaudit.fingerprint/1"
    assert fingerprint["tensorflow"]["version"] == importlib.metadata.version("tensorflow")
    assert len(fingerprint["fingerprint_id"]) >= 8

    created = datetime.fromisoformat(manifest["created_at"])
    now = datetime.now(timezone.utc)
    assert created.tzinfo is not None
    assert now - timedelta(hours=1) < created <= now


@pytest.mark.slow
def test_manifest_lists_the_sha256_of_every_other_file(trained_bundle):
    golden_bundle = trained_bundle  # what a default recording writes, training steps included
    manifest = json.loads((golden_bundle / store.MANIFEST).read_text())
    others = {p.name for p in golden_bundle.iterdir()} - {store.MANIFEST}
    assert set(manifest["files"]) == others == {
        "stages.eager.npz", "stages.graph.npz", "stages.xla.npz", "probes.npz", "twin.npz",
        "training.eager.npz", "training.graph.npz"}
    for name in others:
        assert manifest["files"][name] == sha256(golden_bundle / name), name
    assert all((golden_bundle / name).is_file() for name in others)


@pytest.mark.slow
def test_recorded_arrays_and_sizes_fit_the_budget(golden_bundle):
    bundle = store.load_bundle(golden_bundle)
    assert len(bundle.stages) + len(bundle.probes) >= 8
    assert list(bundle.stages)[0] == "decode"
    assert bundle.modes == ("eager", "graph", "xla")
    assert bundle.manifest["not_run"] == {}
    assert set(bundle.manifest["outside_xla"]) == {"decode", "nms"}
    assert bundle.detections == {}  # schema 2 derives them from each mode's nms stage
    assert set(bundle.twin) <= set(bundle.stages) - {"decode"}
    assert len(bundle.twin) >= 3
    assert all(a.dtype == np.float64 for a in bundle.twin.values())
    bundle_bytes = sum(p.stat().st_size for p in golden_bundle.iterdir())
    assets_bytes = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert bundle_bytes <= 12 * MIB, bundle_bytes
    assert assets_bytes <= 5 * MIB, assets_bytes


# --- recording again ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_record(tmp_path_factory) -> tuple[Path, Path, str]:
    """A second record in this environment, by name into a fresh user data folder."""
    data_home = tmp_path_factory.mktemp("xdg-data")
    proc = run_cli("record", "--name", "again", env=cli_env(XDG_DATA_HOME=str(data_home)))
    assert proc.returncode == 0, proc.stderr
    return data_home, data_home / "envaudit" / "golden" / "again", proc.stderr


@pytest.mark.slow
def test_recording_twice_gives_bit_identical_arrays(trained_bundle, second_record):
    golden_bundle = trained_bundle  # both recorded with the defaults, training steps included
    _, again, _ = second_record
    for name in json.loads((golden_bundle / store.MANIFEST).read_text())["files"]:
        first, second = load_npz(golden_bundle / name), load_npz(again / name)
        assert list(first) == list(second), name
        for key, array in first.items():
            assert second[key].dtype == array.dtype, (name, key)
            assert second[key].shape == array.shape, (name, key)
            assert second[key].tobytes() == array.tobytes(), (name, key)
    assert store.load_bundle(again).array_count == store.load_bundle(golden_bundle).array_count


@pytest.mark.slow
def test_record_by_name_writes_under_xdg_data_home(second_record):
    data_home, again, stderr = second_record
    assert (again / store.MANIFEST).is_file()
    assert [p.name for p in (data_home / "envaudit" / "golden").iterdir()] == ["again"]
    assert f"recorded golden bundle {again}" in stderr
    store.load_bundle(again)


def test_default_bundle_path_follows_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert store.default_bundle_path() == tmp_path / "data" / "envaudit" / "golden" / "default"
    assert store.default_bundle_path("ci-gpu_2.1") == \
        tmp_path / "data" / "envaudit" / "golden" / "ci-gpu_2.1"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.default_bundle_path() == \
        tmp_path / "home" / ".local" / "share" / "envaudit" / "golden" / "default"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "", "/abs", "sp ace"])
def test_default_bundle_path_refuses_names_that_are_not_plain(name):
    with pytest.raises(EnvauditError, match="is not a plain name"):
        store.default_bundle_path(name)


def test_record_with_a_path_as_name_exits_2(tmp_path):
    proc = run_cli("record", "--name", "../x", env=cli_env(XDG_DATA_HOME=str(tmp_path)),
                   timeout=120)
    assert_one_error_line(proc, "'../x'", "not a plain name")
    assert list(tmp_path.iterdir()) == []


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_record_without_force_exits_2_and_leaves_the_bundle_untouched(golden_bundle):
    before = state(golden_bundle.parent)
    proc = run_cli("record", "--golden", str(golden_bundle), timeout=120)
    assert_one_error_line(proc, "--force", str(golden_bundle))
    assert state(golden_bundle.parent) == before
    assert sorted(p.name for p in golden_bundle.parent.iterdir()) == [golden_bundle.name]


@pytest.mark.slow
def test_force_replaces_an_existing_bundle_whole(golden_bundle, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(golden_bundle, target)
    proc = run_cli("record", "--golden", str(target), "--force", "--steps", "0")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no .old-/.partial- left
    replaced, original = store.load_bundle(target), store.load_bundle(golden_bundle)
    assert replaced.manifest["created_at"] >= original.manifest["created_at"]
    for name, array in original.stages.items():
        assert replaced.stages[name].tobytes() == array.tobytes(), name


def test_force_never_deletes_files_put_beside_a_bundle(golden_bundle, tmp_path):
    """Issue 7, finding 2: notes and plots kept in a bundle folder were deleted with it."""
    target = tmp_path / "bundle"
    shutil.copytree(golden_bundle, target)
    (target / "notes.txt").write_text("why we re-recorded")
    (target / "plots").mkdir()
    (target / "plots" / "error.png").write_bytes(b"\x89PNG")
    before = state(tmp_path)
    proc = run_cli("record", "--golden", str(target), "--force", timeout=120)
    assert_one_error_line(proc, "it also holds notes.txt, plots, which its manifest does not list")
    assert state(tmp_path) == before


def test_force_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    target = tmp_path / "results"
    target.mkdir()
    (target / "thesis.tex").write_text("\\chapter{Four years of work}\n")
    before = state(tmp_path)
    proc = run_cli("record", "--golden", str(target), "--force", timeout=120)
    assert_one_error_line(proc, str(target), "is not an envaudit bundle")
    assert state(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


# --- missing or modified workload assets ----------------------------------------------------------


@pytest.fixture(params=["modified weights", "missing image"])
def broken_assets(request, tmp_path) -> tuple[Path, str, str]:
    """A copy of golden/assets with one asset broken: (folder, file name, expected sha256)."""
    folder = tmp_path / "assets"
    shutil.copytree(ASSETS, folder)
    if request.param == "modified weights":
        name = "detector_weights.npz"
        data = bytearray((folder / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (folder / name).write_bytes(bytes(data))
    else:
        name = "scene1.png"
        (folder / name).unlink()
    return folder, name, shipped_checksums()[name]


def test_record_with_a_broken_asset_exits_2_naming_it_and_its_checksum(broken_assets, tmp_path):
    folder, name, expected = broken_assets
    target = tmp_path / "out" / "x"
    proc = run_cli("record", "--golden", str(target),
                   env=cli_env(ENVAUDIT_ASSETS=str(folder)), timeout=120)
    line = assert_one_error_line(proc, str(folder / name))
    assert re.search(f"expected (sha256 )?{expected}", line), line
    assert ("modified" in line) == (name == "detector_weights.npz")
    assert ("missing" in line) == (name == "scene1.png")
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


@pytest.mark.slow
def test_check_with_a_broken_asset_exits_2_naming_it_and_its_checksum(broken_assets,
                                                                      golden_bundle):
    folder, name, expected = broken_assets
    before = state(golden_bundle)
    proc = run_cli("check", "--golden", str(golden_bundle),
                   env=cli_env(ENVAUDIT_ASSETS=str(folder)), timeout=120)
    line = assert_one_error_line(proc, str(folder / name))
    assert re.search(f"expected (sha256 )?{expected}", line), line
    assert proc.stdout == ""
    assert state(golden_bundle) == before


def test_shipped_assets_match_their_checksums():
    shipped = shipped_checksums()
    listed = {p.name for p in ASSETS.iterdir()} - {"SHA256SUMS"}
    assert set(shipped) == listed
    for name, digest in shipped.items():
        assert sha256(ASSETS / name) == digest, name
    assert os.path.getsize(ASSETS / "detector_weights.npz") > 0
