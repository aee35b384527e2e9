"""GPU hygiene: what envaudit does so that a GPU's start-up, memory and kernel choice do not pass
for a change of numerics. No GPU here: each piece is shown with TensorFlow's GPU answers faked at
the one place they are read, and the CPU path is shown unchanged with real TensorFlow."""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from envaudit.attribute import confirm
from envaudit.attribute.confirm import Experiment, run_experiments
from envaudit.compare.types import ModeResult
from envaudit.pipeline import explain as explaining
from envaudit.pipeline.compose import Found
from envaudit.pipeline.subject import CheckOptions, SubjectRun
from envaudit.result import EMPTY_DETECTIONS
from envaudit.workload import child, tf_runtime


def _fake_tf(gpus):
    grown = []
    config = SimpleNamespace(
        list_physical_devices=lambda kind: list(gpus) if kind == "GPU" else [],
        experimental=SimpleNamespace(set_memory_growth=lambda gpu, on: grown.append((gpu, on))))
    return SimpleNamespace(config=config), grown


def test_memory_growth_is_on_for_every_gpu_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    tf, grown = _fake_tf(["GPU:0", "GPU:1"])
    tf_runtime._grow_gpu_memory(tf)
    assert grown == [("GPU:0", True), ("GPU:1", True)]
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")  # the user's own choice stands
    tf, grown = _fake_tf(["GPU:0"])
    tf_runtime._grow_gpu_memory(tf)
    assert grown == []


def test_a_warm_up_runs_only_where_a_gpu_is_seen(monkeypatch):
    calls = []
    monkeypatch.setattr(tf_runtime, "gpus_visible", lambda: False)
    assert tf_runtime.warm_up(lambda: calls.append(1)) == 0.0 and calls == []
    monkeypatch.setattr(tf_runtime, "gpus_visible", lambda: True)
    assert tf_runtime.warm_up(lambda: (calls.append(1), time.sleep(0.01))) >= 0.01
    assert calls == [1]


def test_the_workload_warms_up_on_a_gpu_and_keeps_the_same_bits(monkeypatch):
    """Real TensorFlow on the CPU, told a GPU is there: each mode runs once first, the time is
    reported, and the run kept is the one a run without warm-up gives."""
    from envaudit.workload import run_workload

    plain = run_workload(modes=["eager"])
    assert "warmup_s" not in plain.timings  # the CPU: no warm-up
    monkeypatch.setattr(tf_runtime, "gpus_visible", lambda: True)
    warmed = run_workload(modes=["eager"])
    assert warmed.timings["warmup_s"] > 0
    for name, array in plain.runs["eager"].stages.items():
        assert np.array_equal(array, warmed.runs["eager"].stages[name]), name


def _concurrency(monkeypatch, on_gpu: bool) -> int:
    running, most, timeouts = [0], [0], set()
    lock = threading.Lock()

    def rerun(experiment, out, modes, child_args, timeout):
        timeouts.add(timeout)
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return "re-run could not complete: faked"

    monkeypatch.setattr(confirm, "_rerun", rerun)
    experiments = [Experiment(f"V{i}", {f"V{i}": "0"}, (f"env.V{i}",)) for i in range(2)]
    outcomes = run_experiments(experiments, {}, on_gpu=on_gpu)
    assert len(outcomes) == 2
    assert timeouts == {confirm.GPU_RERUN_TIMEOUT_S if on_gpu else confirm.RERUN_TIMEOUT_S}
    return most[0]


def test_re_runs_beside_a_gpu_run_on_gpu(monkeypatch):
    monkeypatch.setattr(confirm.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert _concurrency(monkeypatch, on_gpu=False) == 2  # on the CPU: side by side
    assert _concurrency(monkeypatch, on_gpu=True) == 1


def test_children_get_a_compute_cache_that_holds_the_kernels(monkeypatch):
    env = child.child_environment({"PATH": "/usr/bin"})
    assert env["CUDA_CACHE_MAXSIZE"] == str(4 * 2**30)
    assert child.child_environment({"CUDA_CACHE_MAXSIZE": "1024"})["CUDA_CACHE_MAXSIZE"] == "1024"


# --- a second process, where a GPU moved in the golden's own environment ------------------------


def _found(device: str) -> Found:
    run = SubjectRun(stages={"eager": {"x": np.zeros(2)}}, probes={},
                     devices={"stage/eager/x": device})
    return Found(run, (), (), (ModeResult("eager", "drift", None, EMPTY_DETECTIONS),), "drift",
                 None)


class _Subject:
    def __init__(self, fingerprint):
        self.bundle = SimpleNamespace(fingerprint=fingerprint, probes={})
        self.modes = ("eager",)
        self.golden = {"eager": {"x": np.ones(2)}}

    def rerun_child(self):
        return contextlib.nullcontext(())

    def identity(self):
        return "fake"


@pytest.mark.parametrize("reproduced", [True, False])
def test_a_gpu_difference_in_the_same_environment_asks_a_second_process(monkeypatch, reproduced):
    from envaudit.fingerprint import capture

    asked = {}

    def fake_confirm(causes, *args, **kwargs):
        asked["on_gpu"] = kwargs["on_gpu"]
        return SimpleNamespace(causes=tuple(causes), reruns=())

    def fake_runs(experiments, golden, progress, modes, child_args, on_gpu):
        assert on_gpu
        asked["second"] = experiments[0].env
        return [confirm.Outcome(experiments[0], reproduced, () if reproduced else ("x",))]

    monkeypatch.setattr(explaining, "confirm_causes", fake_confirm)
    monkeypatch.setattr(explaining, "run_experiments", fake_runs)
    subject = _Subject(capture())
    explained = explaining.explain(subject, _found("GPU:0"), (), subject.bundle.fingerprint,
                                   CheckOptions(), lambda _m: None)
    assert asked == {"on_gpu": True, "second": {}}  # nothing put back: the same env
    assert explained.reruns == (explaining.SECOND_PROCESS,)
    assert ("reproduced the golden bits" in explained.notes[0]) is reproduced

    asked.clear()  # on the CPU, or with --no-confirm, no second process is started
    on_cpu = explaining.explain(subject, _found("CPU:0"), (), subject.bundle.fingerprint,
                                CheckOptions(), lambda _m: None)
    assert asked == {"on_gpu": False} and on_cpu.notes == ()
    explaining.explain(subject, _found("GPU:0"), (), subject.bundle.fingerprint,
                       CheckOptions(confirm=False), lambda _m: None)
    assert "second" not in asked
