"""A golden recorded under another TensorFlow release, checked under this one: the modes that
moved are named and each is localized to its first divergent stage.

The golden is recorded in a virtual environment with TensorFlow 2.20 (``tensorflow-cpu``) and an
older NumPy, built from the package index (``conftest.other_release_golden``). Where it cannot be
built (no network, no wheel for this platform) the test is skipped with the reason, never
silently; CI has the index.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli


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
    trained = {m["mode"]: m for m in (report["training"] or {"modes": []})["modes"]}
    for mode in moved:  # each moved mode is localized to the stage where it starts
        stages = [s for s in report["stages"] if s["mode"] == mode and not s["identical"]]
        # where inference did not move, the mode's training steps did: their first moved array
        first = stages[0]["name"] if stages else trained[mode]["first_moved"]
        assert by_mode[mode]["first_divergence"]["stage"] == first, mode
    for mode in set(by_mode) - set(moved):
        assert by_mode[mode]["first_divergence"] is None, mode
    assert f"moved in {moved[0]}" in report["headline"]
