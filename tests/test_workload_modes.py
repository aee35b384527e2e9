"""The three execution modes compute what a deployment computes: graph and XLA are their own
computations (they differ from eager here), each is deterministic in itself, and exposing every
stage tensor as an output of the traced function does not change what the final outputs are."""

from __future__ import annotations

import numpy as np
import pytest

from envaudit.workload import architecture as arch


@pytest.fixture(scope="module")
def all_modes():
    from envaudit.workload import run_workload

    return run_workload()  # eager, graph and xla: what a recording records unless told


def test_every_mode_records_every_stage(all_modes):
    assert tuple(all_modes.runs) == ("eager", "graph", "xla")
    assert all_modes.not_run == {}
    for run in all_modes.runs.values():
        assert tuple(run.stages) == arch.STAGES
        assert {n: (a.dtype, a.shape) for n, a in run.stages.items()} == \
            {n: (a.dtype, a.shape) for n, a in all_modes.runs["eager"].stages.items()}
        assert len(run.detections) == 23  # every mode finds the golden scenes' objects


def test_graph_and_xla_are_their_own_computations(all_modes):
    eager = all_modes.runs["eager"].stages
    for mode in ("graph", "xla"):
        stages = all_modes.runs[mode].stages
        # decoding and resizing are the same kernels; from normalize on, another computation
        assert [n for n in arch.STAGES if np.array_equal(stages[n], eager[n])][:2] == \
            ["decode", "resize"]
        assert not np.array_equal(stages["stem"], eager["stem"]), mode


def test_each_mode_repeats_its_own_bits(all_modes):
    from envaudit.workload import run_workload

    again = run_workload(modes=("graph", "xla"))
    for mode in ("graph", "xla"):
        for name in arch.STAGES:
            assert again.runs[mode].stages[name].tobytes() == \
                all_modes.runs[mode].stages[name].tobytes(), (mode, name)


def test_exposing_the_stages_does_not_change_the_final_outputs(all_modes):
    """Traced with only the final outputs, each mode gives the same bits as with every stage
    exposed: making a stage an output did not change what grappler or XLA fused."""
    import tensorflow as tf

    from envaudit.workload.assets import load_assets
    from envaudit.workload.detector import Detector, decode_images
    from envaudit.workload.modes import ModeRunner

    assets = load_assets()
    runner = ModeRunner(Detector(assets.weights))
    final_graph = tf.function(lambda e: runner._pipeline(e)["nms"], autograph=False)
    nms = final_graph(tf.constant(list(assets.encoded))).numpy()
    assert nms.tobytes() == all_modes.runs["graph"].stages["nms"].tobytes()
    final_xla = tf.function(lambda d: {k: runner._core(d)[k] for k in ("boxes", "scores")},
                            jit_compile=True, autograph=False)
    out = final_xla(decode_images(assets.encoded))
    for name in ("boxes", "scores"):
        assert out[name].numpy().tobytes() == all_modes.runs["xla"].stages[name].tobytes()


@pytest.mark.parametrize("mode", ("eager", "graph", "xla"))
def test_a_stage_replayed_alone_in_its_mode(all_modes, mode):
    """Fed its own mode's inputs, a stage replayed alone gives that mode's bits back wherever
    the mode computes stage by stage (eager); a compiled stage alone may round differently from
    the same stage fused into the whole pipeline, and that is what replay is for."""
    from envaudit.workload import replay_stages
    from envaudit.workload.assets import load_assets

    stages = all_modes.runs[mode].stages
    replayed = replay_stages(load_assets(), stages, ["scores", "nms"], mode=mode)
    assert replayed["nms"].tobytes() == stages["nms"].tobytes()  # NMS runs as eager ops
    if mode == "eager":
        assert replayed["scores"].tobytes() == stages["scores"].tobytes()
    assert replayed["scores"].shape == stages["scores"].shape


def test_an_unknown_mode_is_a_user_error():
    from envaudit.errors import EnvauditError
    from envaudit.workload import run_workload

    with pytest.raises(EnvauditError, match="unknown mode turbo; choose from eager, graph, xla"):
        run_workload(modes=("turbo",))
