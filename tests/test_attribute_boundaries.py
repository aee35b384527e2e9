"""Attribution at its edges: every threshold and comparison in ranking, planning, confirming and
the settings allowlist, tried just below, at and just above, with exact expected values.

No test here starts TensorFlow: a re-run's child process is replaced by a stub of
``subprocess.run`` that records the command and environment it was given and writes the npz the
child would have written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envaudit.attribute import confirm
from envaudit.attribute.allowlist import refusal
from envaudit.attribute.confirm import (
    Experiment,
    Outcome,
    _isa_order,
    _rerun,
    apply_outcomes,
    limits,
    max_isa,
    plan,
    run_experiments,
)
from envaudit.attribute.rank import _env_rule, describe, rank_causes
from envaudit.attribute.types import Cause
from envaudit.fingerprint.types import SCHEMA, Change, Fingerprint
from envaudit.settings import SETTINGS
from envaudit.workload.assets import asset_dir

ISOLATED = ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]  # workload/child.py


def machine(flags: list[str] | None, cores: int = 2) -> Fingerprint:
    cpu: dict = {"usable_cores": cores}
    if flags is not None:
        cpu["flags"] = flags
    return Fingerprint({"schema": SCHEMA, "fingerprint_id": "fp-test", "cpu": cpu})


def env(name: str, golden: str | None, current: str | None, numerics: bool = True) -> Change:
    return Change(f"env.{name}", golden, current, "numerics-env", numerics)


def other(path: str, category: str, golden: object = "a", current: object = "b") -> Change:
    return Change(path, golden, current, category, True)


AVX2 = ["avx", "avx2", "fma", "sse4_1"]
AVX512 = ["avx", "avx2", "avx512bw", "avx512f", "avx512vl", "fma", "sse4_1"]
NOT_ALLOWED = ("not restored: {} is not a numerics setting envaudit puts back (it may choose code,"
               " libraries, files or devices)")
NO_RERUN = ("no re-run can put this change back from here (it is not a setting of this process),"
            " so it cannot be confirmed")


# --- max_isa and the ISA order -------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [
    (["amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"], "AVX512_CORE_AMX"),
    (["amx_tile", "amx_bf16", "avx512_bf16", "avx512_vnni"], "AVX512_CORE_BF16"),  # no amx_int8
    (["avx512_bf16", "avx512_vnni"], "AVX512_CORE_BF16"),
    (["avx512_vnni", "avx512f", "avx512bw", "avx512vl"], "AVX512_CORE_VNNI"),
    (["avx512_vnni", "avx512f", "avx512bw"], None),  # one flag short of every level
    (["avx512f", "avx512bw", "avx512vl"], "AVX512_CORE"),
    (["avx_vnni", "avx2"], "AVX2_VNNI"),
    (["avx2", "fma"], "AVX2"),
    (["avx2"], None),
    (["fma"], None),
    (["avx"], "AVX"),
    (["sse4_1"], "SSE41"),
    (["sse4_2", "sse3"], None),
    ([], None),
])
def test_max_isa_needs_every_flag_of_a_level(flags, expected):
    assert max_isa(flags) == expected


@pytest.mark.parametrize(("golden", "current", "expected"), [
    (AVX2, AVX512, ("AVX2", "AVX512_CORE", -1)),  # golden lesser
    (AVX512, AVX2, ("AVX512_CORE", "AVX2", 1)),  # golden richer
    (AVX2, AVX2, ("AVX2", "AVX2", 0)),
    (["sse4_1"], ["avx"], ("SSE41", "AVX", -1)),  # adjacent levels
    (["avx"], ["sse4_1"], ("AVX", "SSE41", 1)),
    (None, AVX512, (None, "AVX512_CORE", 0)),  # unknown golden CPU
    (AVX512, None, ("AVX512_CORE", None, 0)),
    (["fma"], AVX512, (None, "AVX512_CORE", 0)),
    (AVX512, [], ("AVX512_CORE", None, 0)),
])
def test_isa_order_of_golden_against_current(golden, current, expected):
    assert _isa_order(machine(golden), machine(current)) == expected


# --- plan: which changes become experiments ------------------------------------------------------


def test_one_variable_alone_has_no_together_run():
    experiments = plan([env("TF_ENABLE_ONEDNN_OPTS", None, "0")], machine(AVX2), machine(AVX2))
    assert experiments == [Experiment("TF_ENABLE_ONEDNN_OPTS restored to unset",
                                      {"TF_ENABLE_ONEDNN_OPTS": None},
                                      ("env.TF_ENABLE_ONEDNN_OPTS",))]


def test_two_variables_add_one_run_restoring_both():
    changes = [env("TF_ENABLE_ONEDNN_OPTS", None, "0"), env("OMP_NUM_THREADS", "4", "8"),
               env("KMP_BLOCKTIME", "0", None, numerics=False),
               other("tensorflow.version", "tensorflow")]
    assert plan(changes, machine(AVX2), machine(AVX2)) == [
        Experiment("TF_ENABLE_ONEDNN_OPTS restored to unset", {"TF_ENABLE_ONEDNN_OPTS": None},
                   ("env.TF_ENABLE_ONEDNN_OPTS",)),
        Experiment("OMP_NUM_THREADS restored to '4'", {"OMP_NUM_THREADS": "4"},
                   ("env.OMP_NUM_THREADS",)),
        Experiment("all numerics variables restored together",
                   {"TF_ENABLE_ONEDNN_OPTS": None, "OMP_NUM_THREADS": "4"},
                   ("env.TF_ENABLE_ONEDNN_OPTS", "env.OMP_NUM_THREADS")),
    ]


def test_a_refused_variable_is_not_planned_and_not_counted_for_together():
    changes = [env("OMP_NUM_THREADS", "10000", "8"), env("MKL_NUM_THREADS", "64", "8")]
    assert plan(changes, machine(AVX2), machine(AVX2)) == [
        Experiment("MKL_NUM_THREADS restored to '64'", {"MKL_NUM_THREADS": "64"},
                   ("env.MKL_NUM_THREADS",))]


@pytest.mark.parametrize(("golden", "current", "pinned"), [
    (1, 2, [Experiment("pinned to 1 cores as on the golden machine", {},
                       ("cpu.usable_cores",), 1)]),
    (3, 4, [Experiment("pinned to 3 cores as on the golden machine", {},
                       ("cpu.usable_cores",), 3)]),
    (2, 2, []),
    (3, 2, []),
    ("1", 2, []),  # not a count: nothing to pin to
    (1, "2", []),
    (None, 2, []),
])
def test_core_pinning_only_when_the_golden_machine_had_fewer(golden, current, pinned):
    changes = [Change("cpu.usable_cores", golden, current, "cpu", True)]
    assert plan(changes, machine(AVX2), machine(AVX2)) == pinned


def test_cores_of_another_path_are_not_pinned():
    changes = [Change("gpu.usable_cores", 1, 2, "gpu", True)]
    assert plan(changes, machine(AVX2), machine(AVX2)) == []


def _isa_experiment(paths: tuple[str, ...], isa: str = "AVX2") -> Experiment:
    return Experiment(f"golden instruction set emulated with ONEDNN_MAX_CPU_ISA={isa}",
                      {"ONEDNN_MAX_CPU_ISA": isa}, paths)


def test_isa_emulation_covers_the_flag_changes_only():
    changes = [other("cpu.model", "cpu"), Change("cpu.flags.avx512f", None, "avx512f", "cpu", True),
               other("tensorflow.version", "tensorflow"),
               Change("cpu.flags.avx512bw", None, "avx512bw", "cpu", True)]
    assert plan(changes, machine(AVX2), machine(AVX512)) == [
        _isa_experiment(("cpu.flags.avx512f", "cpu.flags.avx512bw"))]


def test_isa_emulation_without_flag_changes_covers_the_cpu_changes():
    changes = [other("cpu.model", "cpu"), other("tensorflow.version", "tensorflow"),
               other("cpu.vendor", "cpu")]
    assert plan(changes, machine(AVX2), machine(AVX512)) == [
        _isa_experiment(("cpu.model", "cpu.vendor"))]


def test_isa_emulation_without_cpu_changes_names_the_flags():
    changes = [other("tensorflow.version", "tensorflow")]
    assert plan(changes, machine(["sse4_1"]), machine(["avx"])) == [
        _isa_experiment(("cpu.flags",), "SSE41")]


@pytest.mark.parametrize(("golden", "current"), [(AVX2, AVX2), (AVX512, AVX2), (None, AVX2)])
def test_no_isa_emulation_unless_the_golden_cpu_is_lesser(golden, current):
    changes = [Change("cpu.flags.avx512f", "avx512f", None, "cpu", True)]
    assert plan(changes, machine(golden), machine(current)) == []


def test_plan_order_is_variables_together_cores_isa():
    changes = [Change("cpu.usable_cores", 1, 2, "cpu", True),
               env("TF_CUDNN_DETERMINISTIC", "0", "1"), env("TF_DETERMINISTIC_OPS", "1", None)]
    labels = [e.label for e in plan(changes, machine(AVX2, 1), machine(AVX512))]
    assert labels == ["TF_CUDNN_DETERMINISTIC restored to '0'",
                      "TF_DETERMINISTIC_OPS restored to '1'",
                      "all numerics variables restored together",
                      "pinned to 1 cores as on the golden machine",
                      "golden instruction set emulated with ONEDNN_MAX_CPU_ISA=AVX2"]


# --- limits: what cannot be put back, and why ----------------------------------------------------


def test_limits_name_refused_variables_only():
    changes = [env("LD_PRELOAD", "/tmp/x.so", None), env("OMP_NUM_THREADS", "10000", "2"),
               env("OMP_DYNAMIC", "true", None), env("PYTHONPATH", "/x", None, numerics=False)]
    assert limits(changes, machine(AVX2), machine(AVX2)) == {
        "env.LD_PRELOAD": NOT_ALLOWED.format("LD_PRELOAD"),
        "env.OMP_NUM_THREADS": "not restored: '10000' is not a valid value of OMP_NUM_THREADS",
    }


RICHER = ("the golden CPU had a richer instruction set (AVX512_CORE) than this one (AVX2); an"
          " instruction set can be capped, not added, so it cannot be emulated here: re-check on"
          " a machine like the golden one")


def test_limits_of_a_richer_golden_cpu_cover_every_cpu_change():
    changes = [other("cpu.model", "cpu"), Change("cpu.flags.avx512f", "avx512f", None, "cpu", True),
               other("tensorflow.version", "tensorflow")]
    assert limits(changes, machine(AVX512), machine(AVX2)) == {
        "cpu.model": RICHER, "cpu.flags.avx512f": RICHER}


@pytest.mark.parametrize(("golden", "current"), [(AVX2, AVX2), (AVX2, AVX512), (AVX512, None)])
def test_no_isa_limit_unless_the_golden_cpu_is_richer(golden, current):
    changes = [other("cpu.model", "cpu")]
    assert limits(changes, machine(golden), machine(current)) == {}


@pytest.mark.parametrize(("golden", "current", "expected"), [
    (3, 2, {"cpu.usable_cores": "the golden run had 3 cores, this process may use 2; cores"
                                " cannot be added by a re-run"}),
    (5, 4, {"cpu.usable_cores": "the golden run had 5 cores, this process may use 4; cores"
                                " cannot be added by a re-run"}),
    (2, 2, {}),
    (1, 2, {}),
    ("3", 2, {}),
    (3, "2", {}),
])
def test_core_limit_only_when_the_golden_machine_had_more(golden, current, expected):
    changes = [Change("cpu.usable_cores", golden, current, "cpu", True)]
    assert limits(changes, machine(AVX2), machine(AVX2)) == expected


def test_core_limit_of_another_path_is_not_noted():
    changes = [Change("gpu.usable_cores", 3, 2, "gpu", True)]
    assert limits(changes, machine(AVX2), machine(AVX2)) == {}


# --- _rerun: the child's command and environment (stubbed child) ---------------------------------


class Child:
    """Stands in for ``subprocess.run``: records each call, writes ``arrays`` to the npz the
    command names (the last argument), and answers with ``returncode`` and ``stderr``."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None, returncode: int = 0,
                 stderr: str = "", raises: BaseException | None = None) -> None:
        self.arrays = arrays if arrays is not None else {"probe/x": np.arange(3.0)}
        self.returncode, self.stderr, self.raises = returncode, stderr, raises
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        self.calls.append((command, kwargs))
        if self.raises is not None:
            raise self.raises
        if self.returncode == 0:
            np.savez(command[-2], **self.arrays)  # OUT.npz, then the modes
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def test_rerun_sets_only_its_variables_in_this_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ENVAUDIT_TEST_KEEP", "kept")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # chooses code: never reaches the child
    monkeypatch.setenv("PYTHONHASHSEED", "7")  # a numerics setting: kept
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.delenv("TF_DETERMINISTIC_OPS", raising=False)
    child = Child({"probe/x": np.array([1.5, -0.0], np.float32)})
    monkeypatch.setattr(subprocess, "run", child)
    out = tmp_path / "out.npz"
    experiment = Experiment("x", {"TF_ENABLE_ONEDNN_OPTS": None, "TF_DETERMINISTIC_OPS": None,
                                  "OMP_NUM_THREADS": "3"}, ("env.X",))
    arrays = _rerun(experiment, out)
    assert set(arrays) == {"probe/x"}
    assert arrays["probe/x"].tobytes() == np.array([1.5, -0.0], np.float32).tobytes()
    [(command, kwargs)] = child.calls
    assert command == [sys.executable, *ISOLATED, "-m", "envaudit.workload", str(out), "eager"]
    child_env = kwargs.pop("env")
    assert kwargs == {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300,
                      "check": False}
    assert child_env["ENVAUDIT_TEST_KEEP"] == "kept"
    assert child_env["OMP_NUM_THREADS"] == "3"
    assert "TF_ENABLE_ONEDNN_OPTS" not in child_env  # removed, as the golden run had it
    assert "TF_DETERMINISTIC_OPS" not in child_env  # removing an absent variable is no error
    assert "PYTHONPATH" not in child_env and child_env["PYTHONHASHSEED"] == "7"
    expected = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"
                and (not k.startswith("PYTHON") or k == "PYTHONHASHSEED")}
    expected.setdefault("CUDA_CACHE_MAXSIZE", str(4 * 2**30))  # children's compute cache
    assert child_env == {**expected, "OMP_NUM_THREADS": "3",
                         "ENVAUDIT_ASSETS": str(asset_dir().resolve())}
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"  # this process's environment is untouched


def test_rerun_pinned_to_cores_runs_under_taskset_on_the_first_allowed_cpus(monkeypatch,
                                                                             tmp_path):
    child = Child()
    monkeypatch.setattr(subprocess, "run", child)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {7, 3, 5, 9} if pid == 0 else {1})
    out = tmp_path / "out.npz"
    _rerun(Experiment("pinned", {}, ("cpu.usable_cores",), 2), out)
    _rerun(Experiment("pinned", {}, ("cpu.usable_cores",), 3), out)
    _rerun(Experiment("free", {}, ("env.X",)), out)
    workload = [sys.executable, *ISOLATED, "-m", "envaudit.workload", str(out), "eager"]
    assert [command for command, _kwargs in child.calls] == [
        ["taskset", "-c", "3,5", *workload], ["taskset", "-c", "3,5,7", *workload], workload]


def test_rerun_refuses_a_value_without_starting_a_child(monkeypatch, tmp_path):
    child = Child()
    monkeypatch.setattr(subprocess, "run", child)
    outcome = _rerun(Experiment("x", {"TF_ENABLE_ONEDNN_OPTS": None, "OMP_NUM_THREADS": "1;id"},
                                ("env.OMP_NUM_THREADS",)), tmp_path / "out.npz")
    assert outcome == ("re-run refused: not restored: '1;id' is not a valid value of"
                       " OMP_NUM_THREADS")
    assert child.calls == []


@pytest.mark.parametrize(("child", "expected"), [
    (Child(returncode=2, stderr="Traceback\nValueError: boom\n  \n"),
     "re-run failed (exit 2): ValueError: boom"),
    (Child(returncode=1, stderr=""), "re-run failed (exit 1): no output"),
    (Child(returncode=-9, stderr=" \n\t\n"), "re-run failed (exit -9): no output"),
    (Child(raises=OSError("taskset: not found")), "re-run could not complete: taskset: not found"),
    (Child(raises=subprocess.TimeoutExpired(["python"], 300)),
     "re-run could not complete: Command '['python']' timed out after 300 seconds"),
])
def test_a_failed_child_becomes_a_sentence(monkeypatch, tmp_path, child, expected):
    monkeypatch.setattr(subprocess, "run", child)
    assert _rerun(Experiment("x", {}, ("env.X",)), tmp_path / "out.npz") == expected


# --- run_experiments: parallel re-runs compared bit for bit --------------------------------------


GOLDEN = {"stage/a": np.array([1.0, 2.0], np.float32), "stage/b": np.array([0.0], np.float32),
          "probe/c": np.array([3], np.int32)}


class FakeWorkload:
    """A child whose arrays depend on its environment: golden bits only without
    ``TF_ENABLE_ONEDNN_OPTS``; with it, stage/b flips its sign bit and probe/c is not written."""

    def __init__(self) -> None:
        self.outs: list[Path] = []

    def __call__(self, command: list[str], **kwargs: dict) -> subprocess.CompletedProcess:
        out = Path(command[-2])  # OUT.npz, then the modes
        self.outs.append(out)
        if kwargs["env"].get("OMP_NUM_THREADS") == "7":
            return subprocess.CompletedProcess(command, 3, "", "child crashed\n")
        arrays = {**GOLDEN, "extra": np.zeros(1)}
        if "TF_ENABLE_ONEDNN_OPTS" in kwargs["env"]:
            arrays["stage/b"] = np.array([-0.0], np.float32)
            del arrays["probe/c"]
        np.savez(out, **arrays)
        return subprocess.CompletedProcess(command, 0, "", "")


def test_run_experiments_compares_each_child_with_golden(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    fake = FakeWorkload()
    monkeypatch.setattr(subprocess, "run", fake)
    restored = Experiment("restored", {"TF_ENABLE_ONEDNN_OPTS": None},
                          ("env.TF_ENABLE_ONEDNN_OPTS",))
    unchanged = Experiment("unchanged", {}, ("env.NONE",))
    crashed = Experiment("crashed", {"OMP_NUM_THREADS": "7"}, ("env.OMP_NUM_THREADS",))
    messages: list[str] = []
    outcomes = run_experiments([restored, crashed, unchanged], GOLDEN, messages.append)
    assert outcomes == [
        Outcome(restored, True, ()),
        Outcome(crashed, False, (), "re-run failed (exit 3): child crashed"),
        Outcome(unchanged, False, ("stage/b", "probe/c")),
    ]
    assert messages == [
        "re-runs 1-3/3 (TF_ENABLE_ONEDNN_OPTS, OMP_NUM_THREADS, unchanged), 0 s"]
    assert sorted(out.name for out in fake.outs) == ["rerun-0.npz", "rerun-1.npz", "rerun-2.npz"]
    assert len({out.parent for out in fake.outs}) == 1
    assert fake.outs[0].parent.name.startswith("envaudit-confirm-")
    assert not fake.outs[0].parent.exists()  # the temporary folder is gone afterwards


def test_run_experiments_without_experiments_starts_nothing(monkeypatch):
    monkeypatch.setattr(subprocess, "run", Child(raises=AssertionError("a child was started")))
    messages: list[str] = []
    assert run_experiments([], GOLDEN, messages.append) == []
    assert messages == []


def test_run_experiments_default_progress_is_silent(monkeypatch):
    monkeypatch.setattr(subprocess, "run", FakeWorkload())
    experiment = Experiment("e", {}, ("env.NONE",))
    assert run_experiments([experiment], GOLDEN) == [Outcome(experiment, True, ())]


@pytest.mark.parametrize(("count", "cpus", "workers"), [
    (1, {0, 1, 2, 3}, 1), (3, {0, 1}, 2), (2, {0, 1}, 2), (2, {0, 1, 2}, 2), (2, set(), 1)])
def test_parallel_up_to_the_usable_cores(monkeypatch, count, cpus, workers):
    seen: list[int] = []

    class Pool:
        def __init__(self, max_workers: int) -> None:
            seen.append(max_workers)

        def __enter__(self) -> Pool:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def map(self, function, *iterables):
            return map(function, *iterables)

    monkeypatch.setattr(confirm, "ThreadPoolExecutor", Pool)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: cpus)
    monkeypatch.setattr(subprocess, "run", FakeWorkload())
    experiments = [Experiment(f"e{i}", {"PYTHONHASHSEED": str(i)}, ("env.NONE",))
                   for i in range(count)]
    assert len(run_experiments(experiments, GOLDEN)) == count
    assert seen == [workers]


# --- apply_outcomes: the confidence rules --------------------------------------------------------


A = Cause("env.A: unset -> '0'", "likely", ("ranked A",), "env.A")
B = Cause("env.B: '1' -> '2'", "likely", ("ranked B",), "env.B")
CPU = Cause("cpu.model: 'x' -> 'y'", "likely", ("ranked CPU",), "cpu.model",
            ("cpu.flags.avx512bw", "cpu.flags.avx512f"))
UNRECORDED = Cause("a change the fingerprint does not record", "possible", ("ranked U",))
ALONE_A = Experiment("A restored", {"A": None}, ("env.A",))
ALONE_B = Experiment("B restored", {"B": "1"}, ("env.B",))
BOTH = Experiment("both restored", {"A": None, "B": "1"}, ("env.A", "env.B"))
ISA = Experiment("ISA capped", {"ONEDNN_MAX_CPU_ISA": "AVX2"},
                 ("cpu.flags.avx512f", "cpu.flags.avx512bw"))


def test_without_reruns_a_change_says_it_cannot_be_confirmed():
    assert apply_outcomes([UNRECORDED, A], [], 3) == [
        Cause(A.change, "likely", ("ranked A", NO_RERUN), "env.A"), UNRECORDED]
    assert apply_outcomes([A], [], 3, {}) == [
        Cause(A.change, "likely", ("ranked A", NO_RERUN), "env.A")]
    assert apply_outcomes([A], [], 3, {"env.B": "B's note"}) == [
        Cause(A.change, "likely", ("ranked A", NO_RERUN), "env.A")]


def test_the_note_of_the_first_path_in_order_explains_why():
    notes = {"cpu.flags.avx512f": "note f", "cpu.flags.avx512bw": "note bw", "env.A": "note A"}
    [cpu] = apply_outcomes([CPU], [], 3, notes)
    assert cpu.evidence == ("ranked CPU", "note bw")
    [cpu] = apply_outcomes([CPU], [], 3, {"cpu.flags.avx512f": "note f"})
    assert cpu.evidence == ("ranked CPU", "note f")
    [a] = apply_outcomes([A], [], 3, notes)
    assert a.evidence == ("ranked A", "note A")


def test_a_failed_rerun_is_evidence_and_changes_no_confidence():
    outcomes = [Outcome(ALONE_A, False, (), "re-run failed (exit 2): boom")]
    assert apply_outcomes([A, B], outcomes, 3) == [
        Cause(A.change, "likely", ("ranked A", "confirmation with A restored: re-run failed"
                                               " (exit 2): boom"), "env.A"),
        Cause(B.change, "likely", ("ranked B", NO_RERUN), "env.B")]


def test_an_identical_rerun_of_that_change_alone_confirms_it():
    outcomes = [Outcome(ALONE_B, False, ("probe/x",)), Outcome(ALONE_A, True, ())]
    assert apply_outcomes([B, A], outcomes, 1) == [
        Cause(A.change, "confirmed", ("ranked A", "re-running with A restored reproduced the"
                                                  " golden bits exactly"), "env.A"),
        Cause(B.change, "possible", ("ranked B", "with B restored, 1 array(s) still differ from"
                                                 " golden (probe/x): not confirmed"), "env.B")]


def test_the_isa_emulation_confirms_the_cpu_it_was_made_for():
    [cpu] = apply_outcomes([CPU], [Outcome(ISA, True, ())], 4)
    assert (cpu.confidence, cpu.evidence) == (
        "confirmed", ("ranked CPU", "re-running with ISA capped reproduced the golden bits"
                                    " exactly"))


def test_a_later_failing_rerun_does_not_lower_a_confirmed_cause():
    again = Experiment("A again", {"A": None}, ("env.A",))
    [a] = apply_outcomes([A], [Outcome(ALONE_A, True, ()), Outcome(again, False, ("s",))], 1)
    assert a.confidence == "confirmed"
    assert a.evidence[-1] == "with A again, 1 array(s) still differ from golden (s): not confirmed"


@pytest.mark.parametrize(("still", "now", "expected"), [
    (1, 2, "likely"),  # putting it back alone helped: fewer arrays differ
    (2, 2, "possible"),  # changed nothing
    (3, 2, "possible"),
    (0, 0, "possible"),
])
def test_a_lone_rerun_that_left_as_many_differing_lowers_likely_to_possible(still, now,
                                                                              expected):
    differing = tuple(f"stage/{i}" for i in range(still))
    [a] = apply_outcomes([A], [Outcome(ALONE_A, False, differing)], now)
    assert a.confidence == expected


def test_a_possible_cause_stays_possible_after_a_useless_rerun():
    possible = Cause("env.A", "possible", (), "env.A")
    [a] = apply_outcomes([possible], [Outcome(ALONE_A, False, ("s", "t"))], 1)
    assert a.confidence == "possible"


def test_only_the_joint_restoration_reproducing_adds_one_confirmed_set():
    outcomes = [Outcome(ALONE_A, False, ("s",)), Outcome(ALONE_B, False, ("s", "t", "u")),
                Outcome(BOTH, True, ())]
    updated = apply_outcomes([A, B], outcomes, 2)
    assert updated[0] == Cause(
        "env.A + env.B", "confirmed",
        ("re-running with both restored reproduced the golden bits exactly; no single one of"
         " them did",))
    # the joint run restored more than either, so it confirms neither alone
    assert [(c.path, c.confidence) for c in updated[1:]] == [("env.A", "likely"),
                                                             ("env.B", "possible")]
    assert updated[1].evidence == (
        "ranked A", "with A restored, 1 array(s) still differ from golden (s): not confirmed",
        "re-running with both restored reproduced the golden bits exactly")


def test_a_joint_run_that_did_not_reproduce_leaves_members_as_they_were():
    [a] = apply_outcomes([A], [Outcome(BOTH, False, ("s", "t", "u"))], 1)
    assert (a.confidence, a.evidence[-1]) == (
        "likely", "with both restored, 3 array(s) still differ from golden (s, t, u): not"
                  " confirmed")


def test_a_joint_run_that_failed_confirms_nothing_whatever_it_claims():
    """A failure is evidence, never confirmation: an outcome carrying an error does not count
    as reproducing, for a single change or for the joint set."""
    outcomes = [Outcome(ALONE_A, True, (), "re-run failed (exit 1): x"),
                Outcome(BOTH, True, (), "re-run failed (exit 1): y")]
    assert [(c.path, c.confidence) for c in apply_outcomes([A, B], outcomes, 1)] == [
        ("env.A", "likely"), ("env.B", "likely")]


def test_no_joint_cause_when_a_member_is_confirmed_alone():
    outcomes = [Outcome(ALONE_A, True, ()), Outcome(BOTH, True, ())]
    assert [(c.path, c.confidence) for c in apply_outcomes([A, B], outcomes, 1)] == [
        ("env.A", "confirmed"), ("env.B", "likely")]


def test_a_reproducing_single_path_run_for_no_cause_adds_nothing():
    lone = Experiment("nothing changed", {}, ("env.NONE",))
    assert apply_outcomes([A], [Outcome(lone, True, ())], 1) == [
        Cause(A.change, "likely", ("ranked A", NO_RERUN), "env.A")]


def test_confirmed_first_then_likely_then_possible_rank_order_kept():
    p1, p2 = (Cause(f"p{i}", "possible", ()) for i in (1, 2))
    l1, l2 = (Cause(f"l{i}", "likely", ()) for i in (1, 2))
    c1 = Cause("env.A", "likely", (), "env.A")
    ordered = apply_outcomes([p1, l1, p2, c1, l2], [Outcome(ALONE_A, True, ())], 1)
    assert [c.change for c in ordered] == ["env.A", "l1", "l2", "p1", "p2"]


@pytest.mark.parametrize(("count", "shown"), [
    (6, "6 array(s) still differ from golden (a0, a1, a2, a3, a4, a5): not confirmed"),
    (7, "7 array(s) still differ from golden (a0, a1, a2, a3, a4, a5...): not confirmed"),
    (5, "5 array(s) still differ from golden (a0, a1, a2, a3, a4): not confirmed"),
])
def test_at_most_six_differing_arrays_are_named(count, shown):
    differing = tuple(f"a{i}" for i in range(count))
    [a] = apply_outcomes([A], [Outcome(ALONE_A, False, differing)], 9)
    assert a.evidence[-1] == f"with A restored, {shown}"


PATHS = ("env.A", "env.B", "env.C", "cpu.model", "cpu.flags.avx2")
path_sets = st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True)
causes_st = st.lists(
    st.builds(lambda paths, confidence: Cause(" + ".join(paths), confidence, (), paths[0],
                                              tuple(paths[1:])),
              path_sets, st.sampled_from(["likely", "possible"])),
    max_size=4, unique_by=lambda cause: cause.change)
outcomes_st = st.lists(
    st.builds(lambda paths, identical, error, differing: Outcome(
        Experiment(" & ".join(paths), {}, tuple(paths)), identical, differing, error),
        path_sets, st.booleans(), st.sampled_from([None, "re-run failed (exit 1): x"]),
        st.lists(st.sampled_from(["s", "t", "u"]), unique=True).map(tuple)), max_size=5)


@given(causes_st, outcomes_st, st.integers(0, 4))
def test_nothing_is_confirmed_without_a_reproducing_run_of_exactly_its_change(causes, outcomes,
                                                                             differing_now):
    updated = apply_outcomes(causes, outcomes, differing_now)
    reproduced = [o for o in outcomes if o.identical and o.error is None]
    for cause in updated:
        if cause.confidence != "confirmed":
            continue
        if cause.path is not None:  # one ranked change: a run that restored it and no other
            assert any(set(o.experiment.cause_paths) <= cause.paths for o in reproduced)
        else:  # the joint cause: a run restoring several variables, and no member confirmed
            assert any(" + ".join(o.experiment.cause_paths) == cause.change
                       and len(o.experiment.cause_paths) > 1 for o in reproduced)
    joint = [c for c in updated if c.path is None]
    assert len(updated) == len(causes) + len(joint)
    ranks = ["confirmed", "likely", "possible"]
    assert [ranks.index(c.confidence) for c in updated] == sorted(
        ranks.index(c.confidence) for c in updated)
    before = {c.change: c.confidence for c in causes}
    for cause in updated:  # a confidence only rises by confirmation
        if cause.path is not None and cause.confidence != "confirmed":
            assert ranks.index(cause.confidence) >= ranks.index(before[cause.change])


# --- rank_causes: weights, likelihood and evidence -----------------------------------------------


def test_ranked_evidence_of_one_variable():
    [cause] = rank_causes([env("TF_ENABLE_ONEDNN_OPTS", None, "0")], ["matmul", "conv"], "stem",
                          ["stem", "head"], False)
    assert cause == Cause(
        change="env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'", confidence="likely",
        evidence=("env.TF_ENABLE_ONEDNN_OPTS: unset -> '0' — switches TensorFlow between oneDNN"
                  " and Eigen kernels for convolutions, matmuls, softmax",
                  "the first divergent stage is stem; stages that changed by themselves: stem,"
                  " head",
                  "probe families that changed: conv, matmul",
                  "it can move the families that changed (conv, matmul)"),
        path="env.TF_ENABLE_ONEDNN_OPTS")


def test_ranked_evidence_when_nothing_diverged():
    [cause] = rank_causes([other("python.version", "python", "3.11.6", "3.11.7")], [], None,
                          ["stem"], False)
    assert cause == Cause(
        "python.version: '3.11.6' -> '3.11.7'", "possible",
        ("python.version: '3.11.6' -> '3.11.7' — the Python interpreter does not run the kernels",
         "no stage diverged", "no op probe changed",
         "it is not known to move the families that changed"),
        "python.version")


def test_a_first_stage_without_self_changed_stages():
    [cause] = rank_causes([other("weird.field", "weird", 1, 2)], ["conv"], "stem", [], False)
    assert cause == Cause(
        "weird.field: 1 -> 2", "possible",
        ("weird.field: 1 -> 2 — changed", "the first divergent stage is stem",
         "probe families that changed: conv", "it is not known to move the families that"
                                              " changed"), "weird.field")


@pytest.mark.parametrize(("change", "shown"), [
    (Change("cpu.usable_cores", 1, 2, "cpu", True), "cpu.usable_cores: 1 -> 2"),
    (Change("env.X", "1", None, "numerics-env", True), "env.X: '1' -> unset"),
    (Change("env.X", None, "", "numerics-env", True), "env.X: unset -> ''"),
    (Change("gpu.present", False, True, "gpu", True), "gpu.present: False -> True"),
])
def test_describe_shows_unset_text_and_numbers(change, shown):
    assert describe(change) == shown


@pytest.mark.parametrize(("name", "families", "why"), [
    ("OMP_NUM_THREADS", {"reduction", "matmul", "conv"},
     "changes the thread count, so the summation order"),
    ("KMP_BLOCKTIME", {"reduction", "matmul", "conv"},
     "changes the thread count, so the summation order"),
    ("TF_NUM_INTEROP_THREADS", {"reduction", "matmul", "conv"},
     "changes the thread count, so the summation order"),
    ("TF_CUDNN_USE_AUTOTUNE", {"conv"}, "selects cuDNN convolution algorithms"),
    ("XLA_FLAGS", {"conv", "matmul", "reduction", "softmax", "transcendental"},
     "changes how XLA compiles and fuses ops"),
    ("PYTHONHASHSEED", {"conv", "matmul", "reduction", "softmax"},
     "changes hash order (set iteration)"),
    ("TF_USE_DEFAULT_CONV_ALGO", {"conv"}, "selects GPU convolution algorithms"),  # never put back
    ("TF_FROM_ANOTHER_VERSION", {"conv", "matmul", "reduction", "softmax"},
     "a numerics-relevant variable changed"),  # in a golden fingerprint, with no record here
    ("OPENBLAS_VERBOSE", {"conv", "matmul", "reduction", "softmax"},
     "changes OpenBLAS (NumPy's float64 references)"),  # its family's record
])
def test_variable_families(name, families, why):
    assert _env_rule(name) == (families, why)


def test_a_variable_missing_from_the_table_does_not_alias_the_category_families():
    families, _why = _env_rule("PYTHONHASHSEED")
    families.add("decode")
    assert _env_rule("PYTHONHASHSEED")[0] == {"conv", "matmul", "reduction", "softmax"}


def _order(changes: list[Change], families: list[str], precision_lost: bool = False) -> list:
    return [c.path for c in rank_causes(changes, families, "stem", [], precision_lost)]


def test_overlap_weight_two_against_a_variable_one_family_behind():
    """os (2 families, likely: 2*2+10 = 14) under a cuDNN variable (1 family, a variable,
    likely: 2+3+10 = 15): one point apart."""
    changes = [other("os.libc", "os"), env("TF_CUDNN_USE_AUTOTUNE", None, "1")]
    assert _order(changes, ["conv", "transcendental", "decode"]) == [
        "env.TF_CUDNN_USE_AUTOTUNE", "os.libc"]


def test_variable_weight_three_against_a_change_one_family_ahead():
    """cpu (3 families, likely: 6+10 = 16) over a cuDNN variable (15): one point apart."""
    changes = [env("TF_CUDNN_USE_AUTOTUNE", None, "1"), other("cpu.model", "cpu")]
    assert _order(changes, ["conv", "matmul", "transcendental"]) == [
        "cpu.model", "env.TF_CUDNN_USE_AUTOTUNE"]


def test_likely_outranks_possible_and_ties_keep_diff_order():
    changes = [other("python.version", "python"), env("OMP_NUM_THREADS", "1", "2"),
               env("MKL_NUM_THREADS", "1", "2"), env("PYTHONHASHSEED", "1", "2")]
    # python 0 (possible); OMP, MKL 2*2+3+10 = 17; PYTHONHASHSEED 2*2+3+10 = 17: ties in order
    assert _order(changes, ["conv", "matmul"]) == [
        "env.OMP_NUM_THREADS", "env.MKL_NUM_THREADS", "env.PYTHONHASHSEED", "python.version"]
    assert _order(changes[::-1], ["conv", "matmul"]) == [
        "env.PYTHONHASHSEED", "env.MKL_NUM_THREADS", "env.OMP_NUM_THREADS", "python.version"]


def test_likely_weight_ten_lifts_a_field_over_an_unexplaining_variable():
    """os explains one family (likely: 2+10 = 12); the cuDNN variable explains none (3)."""
    changes = [env("TF_CUDNN_USE_AUTOTUNE", None, "1"), other("os.libm", "os")]
    assert _order(changes, ["transcendental"]) == ["os.libm", "env.TF_CUDNN_USE_AUTOTUNE"]


def test_precision_loss_is_an_observed_family():
    mixed = env("TF_ENABLE_AUTO_MIXED_PRECISION", None, "1")
    [amp] = rank_causes([mixed], ["decode"], "stem", [], True)
    assert (amp.confidence, amp.evidence[-1]) == (
        "likely", "it can move the families that changed (precision)")
    [amp] = rank_causes([mixed], ["decode"], "stem", [], False)
    assert (amp.confidence, amp.evidence[-1]) == (
        "possible", "it is not known to move the families that changed")


def test_an_unexplaining_variable_outranks_an_unexplaining_field():
    changes = [other("python.version", "python"), env("TF_CUDNN_USE_AUTOTUNE", None, "1")]
    assert _order(changes, ["matmul"]) == ["env.TF_CUDNN_USE_AUTOTUNE", "python.version"]


@pytest.mark.parametrize(("change", "confidence"), [
    (other("gpu.name", "gpu"), "likely"),
    (other("cuda.version", "cuda"), "likely"),
    (other("tensorflow.version", "tensorflow"), "likely"),
    (other("cpu.model", "cpu"), "likely"),
    (other("packages.numpy.version", "packages"), "possible"),
    (other("gpu.driver_version", "driver"), "possible"),
    (env("OMP_NUM_THREADS", "1", "2"), "possible"),
    (env("TF_ENABLE_AUTO_MIXED_PRECISION", "0", "1"), "likely"),
    (Change("tensorflow.tf32", "off", "on", "tf32", True), "likely"),  # envaudit's own switch
    (env("TF_ENABLE_TF32", "0", "1"), "possible"),  # current TensorFlow does not read it
    (other("python.version", "python"), "possible"),
])
def test_under_precision_loss_only_precision_or_device_changes_are_likely(change, confidence):
    causes = rank_causes([change], ["matmul"], "stem", [], True)
    assert (causes[0].path, causes[0].confidence) == (change.path, confidence)


def test_an_invisible_precision_cause_only_when_no_change_can_lower_precision():
    invisible = Cause(
        "reduced-precision math (TF32, bf16 or a fast-math mode) not visible in the fingerprint",
        "possible", ("the error against the float64 twin grew far beyond fp32 rounding",
                     "the first divergent stage is stem", "probe families that changed: matmul"))
    omp = env("OMP_NUM_THREADS", "1", "2")
    tf32 = env("NVIDIA_TF32_OVERRIDE", None, "1")
    assert rank_causes([omp], ["matmul"], "stem", [], True)[-1] == invisible
    assert [c.path for c in rank_causes([tf32, omp], ["matmul"], "stem", [], True)] == [
        "env.NVIDIA_TF32_OVERRIDE", "env.OMP_NUM_THREADS"]
    assert [c.path for c in rank_causes([omp, tf32], ["matmul"], "stem", [], False)] == [
        "env.OMP_NUM_THREADS", "env.NVIDIA_TF32_OVERRIDE"]  # 2+3+10 both: diff order
    assert rank_causes([], ["matmul"], "stem", [], True) == [invisible]


def test_nothing_to_blame_gives_one_honest_possibility():
    hostname = Change("os.hostname", "a", "b", "info", False)
    assert rank_causes([hostname], [], None, [], False) == [Cause(
        "a change the fingerprint does not record (hardware, microcode, a library loaded at run"
        " time) or nondeterminism", "possible",
        ("no numerics-relevant fingerprint field differs from the golden one", "no stage"
         " diverged", "no op probe changed", "run 'envaudit check --repeat 3' to measure"
                                             " nondeterminism"))]


def test_a_non_numerics_change_before_others_does_not_end_grouping():
    changes = [Change("os.hostname", "a", "b", "info", False), env("OMP_NUM_THREADS", "1", "2")]
    assert _order(changes, ["conv"]) == ["env.OMP_NUM_THREADS"]


def test_one_upgrade_is_led_by_its_shortest_version_field():
    changes = [other("tensorflow.build_info.cpu_compiler", "tensorflow"),
               other("packages.tensorflow.version", "packages"),
               other("tensorflow.version", "tensorflow"),
               other("tensorflow.build_info.cuda_version", "tensorflow"),
               other("tensorflow.a.b.c", "tensorflow"),
               other("tensorflow.build_info.compiler", "tensorflow")]
    [cause] = rank_causes(changes, ["conv"], "stem", [], False)
    # version fields first, then fewer dots, then by name
    assert (cause.path, cause.related) == ("tensorflow.version", (
        "packages.tensorflow.version", "tensorflow.build_info.cuda_version",
        "tensorflow.build_info.compiler", "tensorflow.build_info.cpu_compiler",
        "tensorflow.a.b.c"))
    assert cause.evidence[-1] == (
        "changed with it: packages.tensorflow.version, tensorflow.build_info.cuda_version,"
        " tensorflow.build_info.compiler, tensorflow.build_info.cpu_compiler, tensorflow.a.b.c")


def test_fields_of_one_category_group_led_by_fewest_dots_then_name():
    changes = [other("cpu.flags.avx2", "cpu"), other("cpu.vendor", "cpu"),
               other("cpu.model", "cpu")]
    [cause] = rank_causes(changes, ["conv"], "stem", [], False)
    assert (cause.path, cause.related) == ("cpu.model", ("cpu.vendor", "cpu.flags.avx2"))


@pytest.mark.parametrize(("size", "line"), [
    (2, "changed with it: cpu.flags.f1"),
    (6, "changed with it: cpu.flags.f1, cpu.flags.f2, cpu.flags.f3, cpu.flags.f4, cpu.flags.f5"),
    (7, "changed with it: cpu.flags.f1, cpu.flags.f2, cpu.flags.f3, cpu.flags.f4, cpu.flags.f5"
        " and 1 more"),
    (8, "changed with it: cpu.flags.f1, cpu.flags.f2, cpu.flags.f3, cpu.flags.f4, cpu.flags.f5"
        " and 2 more"),
])
def test_at_most_five_companions_are_named(size, line):
    changes = [other(f"cpu.flags.f{i}", "cpu") for i in range(size)]
    [cause] = rank_causes(changes, ["conv"], "stem", [], False)
    assert cause.evidence[-1] == line
    assert len(cause.related) == size - 1


def test_a_lone_change_names_no_companions():
    [cause] = rank_causes([other("cpu.model", "cpu")], ["conv"], "stem", [], False)
    assert cause.evidence[-1] == "it can move the families that changed (conv)"


# --- the Cause data ------------------------------------------------------------------------------


def test_cause_as_plain_data():
    cause = Cause("c", "likely", ("e1", "e2"), "p", ("r",))
    assert cause.to_dict() == {"change": "c", "confidence": "likely", "evidence": ["e1", "e2"],
                               "path": "p", "related": ["r"], "trial": ""}
    assert cause.paths == frozenset({"p", "r"})
    assert Cause("c", "possible", (), None, ("r", "")).paths == frozenset({"r"})


# --- allowlist.refusal: each pattern at its edges ------------------------------------------------


def invalid(value: str, name: str) -> str:
    return f"not restored: {value} is not a valid value of {name}"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("OMP_NUM_THREADS", "1", None),
    ("OMP_NUM_THREADS", "64", None),  # within the bound on any machine (its floor)
    ("OMP_NUM_THREADS", "10000", invalid("'10000'", "OMP_NUM_THREADS")),
    ("OMP_NUM_THREADS", "0", invalid("'0'", "OMP_NUM_THREADS")),
    ("OMP_NUM_THREADS", "01", invalid("'01'", "OMP_NUM_THREADS")),
    ("OMP_NUM_THREADS", "", invalid("''", "OMP_NUM_THREADS")),
    ("OMP_NUM_THREADS", "8,4,2,1", None),  # nested levels: four counts
    ("OMP_NUM_THREADS", "8,4,2,1,1", invalid("'8,4,2,1,1'", "OMP_NUM_THREADS")),
    ("OMP_NUM_THREADS", "4,", invalid("'4,'", "OMP_NUM_THREADS")),
    ("MKL_NUM_THREADS", "64", None),
    ("MKL_NUM_THREADS", "4,2", invalid("'4,2'", "MKL_NUM_THREADS")),
    ("TF_NUM_INTRAOP_THREADS", "10000", invalid("'10000'", "TF_NUM_INTRAOP_THREADS")),
    ("TF_ENABLE_ONEDNN_OPTS", "TRUE", None),
    ("TF_ENABLE_ONEDNN_OPTS", "Off", None),
    ("TF_ENABLE_ONEDNN_OPTS", "2", invalid("'2'", "TF_ENABLE_ONEDNN_OPTS")),
    ("TF_ENABLE_ONEDNN_OPTS", "", invalid("''", "TF_ENABLE_ONEDNN_OPTS")),
    ("NVIDIA_TF32_OVERRIDE", "1", None),
    ("NVIDIA_TF32_OVERRIDE", "01", invalid("'01'", "NVIDIA_TF32_OVERRIDE")),
    ("ONEDNN_MAX_CPU_ISA", "avx512_core_amx", None),
    ("ONEDNN_MAX_CPU_ISA", "AVX512", invalid("'AVX512'", "ONEDNN_MAX_CPU_ISA")),
    ("DNNL_MAX_CPU_ISA", "SSE41", None),
    ("DNNL_MAX_CPU_ISA", "SSE42", invalid("'SSE42'", "DNNL_MAX_CPU_ISA")),
    ("ONEDNN_DEFAULT_FPMATH_MODE", "bf16", None),
    ("ONEDNN_DEFAULT_FPMATH_MODE", "FP32", invalid("'FP32'", "ONEDNN_DEFAULT_FPMATH_MODE")),
    ("ONEDNN_CPU_ISA_HINTS", "prefer_ymm", None),
    ("ONEDNN_CPU_ISA_HINTS", "PREFER_ZMM", invalid("'PREFER_ZMM'", "ONEDNN_CPU_ISA_HINTS")),
    ("OMP_PROC_BIND", "spread,close,master,close", None),
    ("OMP_PROC_BIND", "spread,close,close,close,close",
     invalid("'spread,close,close,close,close'", "OMP_PROC_BIND")),
    ("OMP_PROC_BIND", "true,abcdefghi", invalid("'true,abcdefghi'", "OMP_PROC_BIND")),
    ("KMP_BLOCKTIME", "999999", None),
    ("KMP_BLOCKTIME", "1000000", invalid("'1000000'", "KMP_BLOCKTIME")),
    ("KMP_BLOCKTIME", "INFINITE", None),
    ("KMP_AFFINITY", "granularity=fine,compact,1,0", None),
    ("KMP_AFFINITY", "a" * 100, None),
    ("KMP_AFFINITY", "a" * 101, invalid(repr("a" * 40 + "..."), "KMP_AFFINITY")),
    ("TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_LEVEL", "A" * 40, None),
    ("TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_LEVEL", "A" * 41,
     invalid(repr("A" * 40 + "..."), "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_LEVEL")),
    ("OPENBLAS_L2_SIZE", "1234567890", None),
    ("OPENBLAS_L2_SIZE", "12345678901", invalid("'12345678901'", "OPENBLAS_L2_SIZE")),
    ("NPY_DISABLE_CPU_FEATURES", "", "not restored: the golden value of NPY_DISABLE_CPU_FEATURES"
                                     " is empty or blank"),
    ("NPY_DISABLE_CPU_FEATURES", "  ", "not restored: the golden value of NPY_DISABLE_CPU_FEATURES"
                                       " is empty or blank"),
    ("NPY_DISABLE_CPU_FEATURES", "AVX512F,AVX512CD", None),
    ("NPY_DISABLE_CPU_FEATURES", "AVX512F\tAVX512CD", invalid("'AVX512F\\tAVX512CD'",
                                                              "NPY_DISABLE_CPU_FEATURES")),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8", None),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8:16:8:1:1:2:2", None),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8:16:8:1:1:2:2:3:3",
     invalid("':4096:8:16:8:1:1:2:2:3:3'", "CUBLAS_WORKSPACE_CONFIG")),
    ("CUBLAS_WORKSPACE_CONFIG", ":123456789:8", invalid("':123456789:8'",
                                                        "CUBLAS_WORKSPACE_CONFIG")),
    ("PYTHONHASHSEED", "random", None),
    ("PYTHONHASHSEED", "Random", invalid("'Random'", "PYTHONHASHSEED")),
    ("PYTHONHASHSEED", "4294967295", None),
    ("PYTHONHASHSEED", "42949672950", invalid("'42949672950'", "PYTHONHASHSEED")),
    ("OMP_NUM_THREADS", None, None),
    ("XLA_FLAGS", None, None),
    ("OMP_NUM_THREADS", 4, "not restored: the golden value of OMP_NUM_THREADS is not text"),
    ("XLA_FLAGS", ["--xla_x"], "not restored: the golden value of XLA_FLAGS is not text"),
    ("LD_PRELOAD", "", NOT_ALLOWED.format("LD_PRELOAD")),
    ("OMP_NUM_THREADS ", "1", NOT_ALLOWED.format("OMP_NUM_THREADS ")),
])
def test_refusal_at_the_edges_of_each_pattern(name, value, expected):
    assert refusal(name, value) == expected


@pytest.mark.parametrize(("length", "shown"), [
    (39, repr("9" * 39)), (40, repr("9" * 40)), (41, repr("9" * 40 + "...")),
    (42, repr("9" * 40 + "..."))])
def test_a_refused_value_is_shown_up_to_forty_characters(length, shown):
    assert refusal("OMP_NUM_THREADS", "9" * length) == invalid(shown, "OMP_NUM_THREADS")


def flag(token: str, name: str = "XLA_FLAGS") -> str:
    return f"not restored: {token} in {name} is not a plain numerics flag"


def files(token: str, name: str = "XLA_FLAGS") -> str:
    return f"not restored: {token} in {name} names files or code, not arithmetic"


def unknown(token: str, name: str = "XLA_FLAGS") -> str:
    return f"not restored: {token} in {name} is not a flag envaudit knows to change arithmetic only"


def bad(argument: str, token: str, name: str = "XLA_FLAGS") -> str:
    return f"not restored: {argument} is not a valid value of {token} in {name}"


BLANK = ("not restored: the golden value of {} is empty or blank (XLA would read flags from a"
         " file of that name)")
FAST = "--xla_cpu_enable_fast_math"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("XLA_FLAGS", "", BLANK.format("XLA_FLAGS")),
    ("XLA_FLAGS", " ", BLANK.format("XLA_FLAGS")),
    ("XLA_FLAGS", " \t\r\n", BLANK.format("XLA_FLAGS")),
    ("TF_XLA_FLAGS", "\t", BLANK.format("TF_XLA_FLAGS")),
    ("XLA_FLAGS", f"{FAST}=false", None),
    ("XLA_FLAGS", FAST, None),  # a switch without a value
    ("XLA_FLAGS", f"{FAST}=TRUE", None),
    ("XLA_FLAGS", f"{FAST}=1", None),
    ("XLA_FLAGS", f"{FAST}=yes", bad("'yes'", FAST)),  # XLA's parser refuses it
    ("XLA_FLAGS", f"{FAST}=", bad("''", FAST)),
    ("XLA_FLAGS", f"  {FAST}=0\t--xla_cpu_multi_thread_eigen=false\n", None),
    ("XLA_FLAGS", f"{FAST}\x0b--xla_cpu_multi_thread_eigen", flag(repr(
        f"{FAST}\x0b--xla_cpu_mul..."))),  # XLA does not split on \v: one token
    ("XLA_FLAGS", "--xla_gpu_autotune_level=0 --xla_backend_optimization_level=3", None),
    ("XLA_FLAGS", "--xla_backend_optimization_level=4", bad("'4'",
                                                            "--xla_backend_optimization_level")),
    ("XLA_FLAGS", "--xla_backend_optimization_level",
     "not restored: --xla_backend_optimization_level in XLA_FLAGS has no value"),
    ("XLA_FLAGS", "--xla_gpu_autotune_level=5", None),
    ("XLA_FLAGS", "--xla_gpu_autotune_level=6", bad("'6'", "--xla_gpu_autotune_level")),
    ("XLA_FLAGS", "--xla_cpu_max_isa=avx2", None),
    ("XLA_FLAGS", "--xla_cpu_max_isa=AVX3", bad("'AVX3'", "--xla_cpu_max_isa")),
    ("XLA_FLAGS", "--xla_cpu_prefer_vector_width=512", None),
    ("XLA_FLAGS", "--xla_cpu_prefer_vector_width=1024",
     bad("'1024'", "--xla_cpu_prefer_vector_width")),
    # Names that read, write or load files, or are simply not known: the allowlist decides
    ("XLA_FLAGS", "--xla_dump_to=x", files("--xla_dump_to")),
    ("XLA_FLAGS", "--xla_gpu_load_autotune_results_from=x",
     files("--xla_gpu_load_autotune_results_from")),
    ("XLA_FLAGS", "--xla_gpu_dump_autotune_results_to=x",
     files("--xla_gpu_dump_autotune_results_to")),
    ("XLA_FLAGS", f"{FAST} --xla_gpu_per_fusion_autotune_cache_dir=x",
     files("--xla_gpu_per_fusion_autotune_cache_dir")),
    ("XLA_FLAGS", "--xla_gpu_cuda_data_dir=x", files("--xla_gpu_cuda_data_dir")),
    ("XLA_FLAGS", "--xla_cpu_enable_xprof_traceme", unknown("--xla_cpu_enable_xprof_traceme")),
    ("XLA_FLAGS", "--xla_gpu_to_x=1", unknown("--xla_gpu_to_x")),
    ("XLA_FLAGS", "--xla_a=1", unknown("--xla_a")),
    ("XLA_FLAGS", "--xla_" + "a" * 96, unknown("--xla_" + "a" * 96)),  # 100 characters
    ("XLA_FLAGS", "--xla_" + "a" * 97, flag(repr("--xla_" + "a" * 34 + "..."))),
    ("XLA_FLAGS", "--xla_a=" + "1" * 200, unknown("--xla_a")),
    ("XLA_FLAGS", "--xla_a=" + "1" * 201, flag(repr("--xla_a=" + "1" * 32 + "..."))),
    # Token shapes: nothing but --lowercase_name[=plain value] reaches the allowlist
    ("XLA_FLAGS", "--xla_A=1", flag("'--xla_A=1'")),
    ("XLA_FLAGS", f"{FAST} xla_b=2", flag("'xla_b=2'")),
    ("XLA_FLAGS", f"{FAST} --other=2", flag("'--other=2'")),
    ("XLA_FLAGS", f"{FAST}=/tmp", flag(f"'{FAST}=/tmp'")),
    ("XLA_FLAGS", f"{FAST}=$HOME", flag(f"'{FAST}=$HOME'")),
    ("XLA_FLAGS", f"{FAST}=1;id", flag(f"'{FAST}=1;id'")),
    ("XLA_FLAGS", f"{FAST}=`id`", flag(f"'{FAST}=`id`'")),
    ("XLA_FLAGS", f"{FAST}==1", flag(f"'{FAST}==1'")),
    ("TF_XLA_FLAGS", "--tf_xla_auto_jit=2 --tf_xla_min_cluster_size=4", None),
    ("TF_XLA_FLAGS", "--tf_xla_auto_jit=-1 --tf_xla_cpu_global_jit", None),
    ("TF_XLA_FLAGS", "--tf_xla_auto_jit=3", bad("'3'", "--tf_xla_auto_jit", "TF_XLA_FLAGS")),
    ("TF_XLA_FLAGS", "--tf_xla_ops_to_cluster=FUSIBLE,MatMul", None),
    ("TF_XLA_FLAGS", f"{FAST}=false", flag(f"'{FAST}=false'", "TF_XLA_FLAGS")),
    ("TF_XLA_FLAGS", "--tf_xla_dump=1", files("--tf_xla_dump", "TF_XLA_FLAGS")),
    ("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=x",
     files("--tf_xla_persistent_cache_directory", "TF_XLA_FLAGS")),
    ("TF_XLA_FLAGS", "--tf_xla_clustering_debug",
     unknown("--tf_xla_clustering_debug", "TF_XLA_FLAGS")),
])
def test_xla_flags_are_checked_flag_by_flag(name, value, expected):
    assert refusal(name, value) == expected


# --- numeric bounds: below, at and above, on a machine of a known size ---------------------------


def above(value: str, most: int, where: str, why: str) -> str:
    return f"not restored: {value!r} is above {most} for {where} ({why})"


THREADS = "4 per usable core, at least 64"


@pytest.mark.parametrize(("cores", "name", "value", "expected"), [
    # 2 cores: 4 * 2 = 8 is under the floor, so the limit is 64
    (2, "OMP_NUM_THREADS", "63", None),
    (2, "OMP_NUM_THREADS", "64", None),
    (2, "OMP_NUM_THREADS", "65", above("65", 64, "OMP_NUM_THREADS", THREADS)),
    (2, "OMP_NUM_THREADS", "9999", above("9999", 64, "OMP_NUM_THREADS", THREADS)),
    (2, "OMP_NUM_THREADS", "64,64", None),
    (2, "OMP_NUM_THREADS", "8,65", above("8,65", 64, "OMP_NUM_THREADS", THREADS)),
    (2, "TF_NUM_INTRAOP_THREADS", "65", above("65", 64, "TF_NUM_INTRAOP_THREADS", THREADS)),
    (2, "TF_NUM_INTEROP_THREADS", "65", above("65", 64, "TF_NUM_INTEROP_THREADS", THREADS)),
    (2, "MKL_NUM_THREADS", "65", above("65", 64, "MKL_NUM_THREADS", THREADS)),
    (2, "OPENBLAS_NUM_THREADS", "65", above("65", 64, "OPENBLAS_NUM_THREADS", THREADS)),
    # 16 cores: 4 * 16 = 64, the floor exactly
    (16, "OMP_NUM_THREADS", "64", None),
    (16, "OMP_NUM_THREADS", "65", above("65", 64, "OMP_NUM_THREADS", THREADS)),
    # 17 cores: 4 * 17 = 68 is over the floor
    (17, "OMP_NUM_THREADS", "67", None),
    (17, "OMP_NUM_THREADS", "68", None),
    (17, "OMP_NUM_THREADS", "69", above("69", 68, "OMP_NUM_THREADS", THREADS)),
    (2, "XLA_FLAGS", "--xla_force_host_platform_device_count=64", None),
    (2, "XLA_FLAGS", "--xla_force_host_platform_device_count=65",
     above("65", 64, "--xla_force_host_platform_device_count in XLA_FLAGS", THREADS)),
    (2, "XLA_FLAGS", "--xla_force_host_platform_device_count=9999",
     above("9999", 64, "--xla_force_host_platform_device_count in XLA_FLAGS", THREADS)),
    (2, "XLA_FLAGS", "--xla_force_host_platform_device_count=99999999",
     bad("'99999999'", "--xla_force_host_platform_device_count")),
    (2, "XLA_FLAGS", "--xla_force_host_platform_device_count=0",
     bad("'0'", "--xla_force_host_platform_device_count")),
])
def test_thread_and_device_counts_are_bounded_by_the_cores(monkeypatch, cores, name, value,
                                                           expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert refusal(name, value) == expected


SEED = "the largest seed Python accepts"
CLUSTER = "the largest size TensorFlow reads"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PYTHONHASHSEED", "0", None),
    ("PYTHONHASHSEED", "4294967294", None),
    ("PYTHONHASHSEED", "4294967295", None),
    ("PYTHONHASHSEED", "4294967296", above("4294967296", 4294967295, "PYTHONHASHSEED", SEED)),
    ("PYTHONHASHSEED", "9999999999", above("9999999999", 4294967295, "PYTHONHASHSEED", SEED)),
    ("TF_XLA_FLAGS", "--tf_xla_min_cluster_size=2147483647", None),
    ("TF_XLA_FLAGS", "--tf_xla_min_cluster_size=2147483648",
     above("2147483648", 2147483647, "--tf_xla_min_cluster_size in TF_XLA_FLAGS", CLUSTER)),
    ("TF_XLA_FLAGS", "--tf_xla_max_cluster_size=2147483648",
     above("2147483648", 2147483647, "--tf_xla_max_cluster_size in TF_XLA_FLAGS", CLUSTER)),
])
def test_seeds_and_sizes_are_bounded_by_what_their_reader_accepts(name, value, expected):
    assert refusal(name, value) == expected


def test_python_itself_refuses_the_seed_just_above_the_bound():
    """The bound is Python's own: one above it and the child would fail before it ran."""
    def start(seed: str) -> int:
        return subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": seed}).returncode

    assert (start("4294967295"), start("4294967296")) == (0, 1)


NAMES = [s.name for s in SETTINGS]
FLAG_NAMES = ("XLA_FLAGS", "TF_XLA_FLAGS")


@given(st.sampled_from(NAMES), st.text(max_size=30), st.sampled_from("/;$`"), st.text(max_size=30))
def test_no_value_with_a_path_or_shell_character_is_ever_accepted(name, before, bad, after):
    assert refusal(name, before + bad + after) is not None


@given(st.sampled_from([n for n in NAMES if n not in FLAG_NAMES]), st.text(max_size=30),
       st.sampled_from(" \t\n\r\x0b\x0c\xa0\u2003"), st.text(max_size=30))
def test_no_whitespace_in_a_single_value(name, before, space, after):
    """NumPy's NPY_DISABLE_CPU_FEATURES is a list that may be separated by spaces: a plain space
    is the one blank it may hold."""
    if name == "NPY_DISABLE_CPU_FEATURES" and space == " ":
        return
    assert refusal(name, before + space + after) is not None


XLA_BLANKS = " \t\r\n"  # what XLA splits a flag string on


@given(st.sampled_from(FLAG_NAMES), st.lists(st.text(min_size=1, max_size=20), max_size=4))
def test_flags_are_accepted_together_only_if_each_is_alone(name, tokens):
    value = " ".join(tokens)
    alone = [t for t in re.split(f"[{XLA_BLANKS}]+", value.strip(XLA_BLANKS)) if t]
    if refusal(name, value) is None:
        assert alone and all(refusal(name, token) is None for token in alone)
    else:
        assert not alone or any(refusal(name, token) is not None for token in alone)


@given(st.sampled_from(FLAG_NAMES), st.text(alphabet=XLA_BLANKS + "\x0b\x0c\xa0", max_size=8))
def test_a_flag_variable_that_xla_would_read_as_a_file_name_is_refused(name, blank):
    """XLA reads a value whose first non-blank character is not "-" as a file of flags."""
    assert "empty or blank" in refusal(name, blank) or "not a plain numerics flag" in refusal(
        name, blank)
