"""Folders and files strangers made: envaudit deletes nothing through them, runs nothing from them
and lends them nothing.

Each test first builds the attack as it would be found on a shared machine (a real symlink, a
folder owned by another user with mode 0777) and asserts that it is real, then shows that
envaudit leaves the stranger's target alone. Playing "another user" needs root (``chown`` to a
throwaway uid); tests run as root here and in CI.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_store import write

from envaudit import bundle_files, cli, store
from envaudit.attribute.bisect import bisect
from envaudit.environments import PackageSet, ensure_env, env_root
from envaudit.environments import cache as cachemod
from envaudit.errors import EnvauditError
from envaudit.fingerprint import Fingerprint, capture

STRANGER = 54321  # a uid no account uses
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="playing another user needs root (chown to a free uid)")


@pytest.fixture(scope="module")
def fingerprint() -> Fingerprint:
    return capture()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def give_away(path: Path) -> None:
    """Hand ``path`` and everything in it to the stranger, writable by everyone."""
    for inside, dirs, files in os.walk(path):
        for item in (inside, *(os.path.join(inside, n) for n in (*dirs, *files))):
            os.chown(item, STRANGER, STRANGER, follow_symlinks=False)
            if not os.path.islink(item):
                os.chmod(item, 0o777)


def victim_folder(tmp_path: Path) -> dict[Path, bytes]:
    """Someone's files of the names a bundle is made of, far from any bundle."""
    victim = tmp_path / "elsewhere" / "team-data"
    victim.mkdir(parents=True)
    files = {victim / "manifest.json": b'{"mine": true}', victim / "weights.npz": b"PK weights",
             victim / "notes.txt": b"notes"}
    for path, data in files.items():
        path.write_bytes(data)
    return files


# --- a set-aside bundle that is a symlink: reading a bundle deletes files elsewhere -------------


@pytest.mark.parametrize("marked", [False, True], ids=["planted", "carried-with-marker"])
def test_recovery_never_follows_a_symlinked_aside_bundle(tmp_path, fingerprint, capsys, marked):
    target = write(tmp_path / "golden" / "default", fingerprint)
    victims = victim_folder(tmp_path)
    aside = target.parent / f".default.old-{dead_pid()}-x1"
    aside.mkdir()
    (aside / "bundle").symlink_to(next(iter(victims)).parent)
    if marked:  # an archive can carry envaudit's marker as easily as the link
        (aside / bundle_files.WORK_MARKER).write_bytes(bundle_files._MARKER_TEXT)
    assert (aside / "bundle").is_symlink()
    assert (aside / "bundle" / "weights.npz").read_bytes() == b"PK weights"  # it really leads out

    assert store.load_bundle(target).array_count == 7  # check and record read it so
    assert cli.main(["diff", str(target), str(target)]) == 0
    capsys.readouterr()
    assert {path: path.read_bytes() for path in victims} == victims
    assert (aside / "bundle").is_symlink()  # nothing envaudit made, so nothing it removes


def test_recovery_never_puts_a_symlink_in_place_of_a_missing_bundle(tmp_path):
    victims = victim_folder(tmp_path)
    target = tmp_path / "golden" / "default"
    target.parent.mkdir()
    aside = target.parent / f".default.old-{dead_pid()}-x1"
    aside.mkdir()
    (aside / bundle_files.WORK_MARKER).write_bytes(bundle_files._MARKER_TEXT)
    (aside / "bundle").symlink_to(next(iter(victims)).parent)
    with pytest.raises(EnvauditError, match="no golden bundle at"):
        store.load_bundle(target)
    assert not os.path.lexists(target)
    assert {path: path.read_bytes() for path in victims} == victims


@needs_root
def test_a_strangers_folder_named_like_a_partial_write_is_left_alone(tmp_path, fingerprint):
    parent = tmp_path / "golden"
    parent.mkdir()
    planted = parent / f".default.partial-{dead_pid()}-x1"
    planted.mkdir()
    (planted / bundle_files.WORK_MARKER).write_bytes(bundle_files._MARKER_TEXT)
    (planted / "manifest.json").write_text("{}")
    give_away(planted)
    assert planted.stat().st_uid == STRANGER
    write(parent / "default", fingerprint)
    assert (planted / "manifest.json").read_text() == "{}"


# --- record into a folder a stranger made ----------------------------------------------------


@needs_root
def test_record_into_a_strangers_open_folder_uses_its_own_modes(tmp_path, fingerprint):
    target = tmp_path / "shared" / "default"
    target.mkdir(parents=True)
    give_away(target)
    assert (target.stat().st_uid, stat.S_IMODE(target.stat().st_mode)) == (STRANGER, 0o777)
    old = os.umask(0)  # the loosest umask: still nothing envaudit makes is writable by others
    try:
        write(target, fingerprint)
        deep = write(tmp_path / "new" / "deeper" / "default", fingerprint)
    finally:
        os.umask(old)
    for folder in (target, deep, deep.parent, deep.parent.parent):
        info = folder.stat()
        assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid()), folder
        assert stat.S_IMODE(info.st_mode) == 0o755, folder
    for file in [*target.iterdir(), *deep.iterdir()]:
        info = file.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o644), file
    assert store.load_bundle(target).array_count == 7


@needs_root
def test_force_over_a_strangers_bundle_keeps_nothing_writable_by_others(tmp_path, fingerprint):
    target = write(tmp_path / "default", fingerprint, seed=1)
    give_away(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777
    write(target, fingerprint, seed=2, force=True)
    assert stat.S_IMODE(target.stat().st_mode) & 0o022 == 0
    assert target.stat().st_uid == os.geteuid()


# --- cached environments a stranger planted ----------------------------------------------------


def plant_environment(folder: Path, ran: Path) -> None:
    """An environment folder with envaudit's marker whose python records that it ran and then
    claims to be the environment (what ``ensure_env`` asks a cached python)."""
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho ran >> '{ran}'\necho '{folder}'\n")
    cachemod.write_marker(folder, folder.name, [], site_packages="lib/site-packages",
                          python="3", built_at=0.0)
    give_away(folder)


@needs_root
def test_a_strangers_cached_environment_is_never_run(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    planted = env_root() / PackageSet().key()
    ran = tmp_path / "ran"
    plant_environment(planted, ran)
    assert planted.stat().st_uid == STRANGER and (planted / "envaudit-env.json").is_file()
    assert subprocess.run([planted / "bin" / "python"], check=False).returncode == 0
    assert ran.read_text() == "ran\n"  # it is a live program
    ran.unlink()

    messages: list[str] = []
    python = ensure_env(PackageSet(), messages.append)
    assert not ran.exists()
    assert planted not in python.parents and python.exists()
    note = next(m for m in messages if m.startswith("not using the cached environment"))
    assert f"belongs to uid {STRANGER}" in note and "building a private one" in note
    assert planted.stat().st_uid == STRANGER  # left as it was
    assert ensure_env(PackageSet()) == python  # the private one serves the rest of this run


@needs_root
def test_a_strangers_cached_results_cannot_confirm_a_bisection(tmp_path, monkeypatch):
    """Results planted in a stranger's environment folder would say that putting numpy back
    reproduced the golden bits; they are never read, so the re-run decides."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    current = {"numpy": "2.4.6", "tensorflow": "2.21.0"}
    golden = {**current, "numpy": "2.3.5"}
    golden_bits = {"probe/exp": np.array([1.0, 2.0], np.float32)}
    current_bits = {"probe/exp": np.array([1.0, 2.5], np.float32)}
    key = "result-key"
    pins = PackageSet.of(golden)
    planted = env_root() / pins.key()
    results = planted / "results"
    results.mkdir(parents=True)
    forged = results / f"{hashlib.sha256(key.encode()).hexdigest()}.npz"
    np.savez(forged, **golden_bits)
    give_away(planted)
    assert planted.stat().st_uid == STRANGER
    with np.load(forged) as npz:
        assert npz["probe/exp"].tobytes() == golden_bits["probe/exp"].tobytes()

    def fingerprint_of(packages: dict[str, str]) -> Fingerprint:
        return Fingerprint({"schema": "envaudit.fingerprint/1", "fingerprint_id": "fp",
                            "packages": {n: {"version": v} for n, v in packages.items()}})

    ran: list[PackageSet] = []
    result = bisect(fingerprint_of(golden), fingerprint_of(current), golden_bits, current_bits,
                    run=lambda p, _out: ran.append(p) or current_bits, build=lambda p: p,
                    result_key=key)
    assert ran == [pins]  # re-run for real, not read from the planted file
    assert result.confirmed == () and "numpy" in result.ruled_out
    assert not result.trials[0].cached
