"""A fourth execution mode works end to end -- record, check, report -- from its registry record
and its runner alone: no other module knows it exists.

The fake mode runs the eager pipeline under another name (what a new runtime's runner would be,
minus the runtime), so its golden is recorded and checked with real TensorFlow on the CPU, and its
arrays must come back bit-identical to themselves and to eager's.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from envaudit import modes
from envaudit.settings import TF_KERNELS

FAKE = "eager_again"
NUDGE = {"scores": 1.0}  # what the fake runner multiplies the scores by (1.0: eager's bits)


def _run_eager_again(runner, encoded):
    stages = dict(runner.detector.run_tensors(encoded))
    if NUDGE["scores"] != 1.0:
        stages["scores"] = stages["scores"] * NUDGE["scores"]
    return stages


@pytest.fixture(scope="module")
def fourth_mode():
    from envaudit.workload.modes import register_runner, unregister_runner

    modes.register(modes.ExecutionMode(FAKE, "the eager pipeline again", TF_KERNELS))
    register_runner(FAKE, _run_eager_again)
    try:
        yield FAKE
    finally:
        unregister_runner(FAKE)
        modes.unregister(FAKE)


@pytest.fixture(scope="module")
def four_mode_golden(fourth_mode, tmp_path_factory):
    from envaudit.record import record

    return record(tmp_path_factory.mktemp("fourth") / "golden")


def test_a_fourth_mode_is_recorded_checked_and_reported(fourth_mode, four_mode_golden):
    from envaudit.pipeline.compose import check
    from envaudit.render import check_json, check_text

    bundle = four_mode_golden
    assert bundle.modes == ("eager", "graph", "xla", fourth_mode)
    for name, array in bundle.stages_by_mode[fourth_mode].items():
        assert np.array_equal(array, bundle.stages_by_mode["eager"][name]), name

    result = check(str(bundle.path), modes=[fourth_mode, "eager"], confirm=False)
    assert result.verdict == "identical" and result.exit_code == 0
    assert [m.mode for m in result.modes] == ["eager", fourth_mode]
    assert all(m.status == "ran" and m.verdict == "identical" for m in result.modes)
    assert {s.mode for s in result.stages} == {"eager", fourth_mode}
    assert f"in all 2 modes (eager and {fourth_mode})" in result.headline

    document = json.loads(check_json.render(result))
    assert [m["mode"] for m in document["modes"]] == ["eager", fourth_mode]
    buffer = io.StringIO()
    Console(file=buffer, width=160, no_color=True).print(check_text.render(result))
    assert fourth_mode in buffer.getvalue()


def test_a_fourth_mode_that_moved_is_localized_and_explained(fourth_mode, four_mode_golden,
                                                             monkeypatch):
    """The check composes the new mode like the others: a stage that moves in it alone is that
    mode's first divergence, the other mode stays identical, and the causes are ranked."""
    from envaudit.pipeline.compose import check

    monkeypatch.setitem(NUDGE, "scores", 1.001)
    result = check(str(four_mode_golden.path), modes=["eager", fourth_mode], confirm=False)
    by_mode = {m.mode: m for m in result.modes}
    assert by_mode["eager"].verdict == "identical"
    assert by_mode[fourth_mode].moved and result.moved_modes == (fourth_mode,)
    assert by_mode[fourth_mode].first_divergence.stage == "scores"
    # scores 0.1% off against the float64 twin: a finding, whichever it is called
    assert result.verdict in ("drift", "precision_loss") and result.exit_code == 1
    assert result.confirmation_skipped and f"moved in {fourth_mode} mode" in result.headline
