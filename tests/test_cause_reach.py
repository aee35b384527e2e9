"""Causes that reach what moved, one ranking, and confirmation only where a re-run can decide.

A golden recorded on another machine carries that machine's stray variables and CPU. The stray
OpenBLAS variables reach only NumPy's float64 references, never the arrays TensorFlow computed;
another CPU cannot be put back by a re-run; a setting the user changed can. The end-to-end tests
forge such a golden from one recorded here (its arrays this machine's, or moved by one unit of
least precision in every mode) and run the real CLI: the headline names the same cause with and
without --no-confirm, and no child starts for what cannot be put back.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from forge import RICHER, STRAYS, elsewhere, forge_elsewhere

from envaudit import store
from envaudit.attribute import confirm, reach
from envaudit.attribute.allowlist import refusal
from envaudit.attribute.rank import rank_causes
from envaudit.attribute.trials import confirm_causes
from envaudit.attribute.types import Cause
from envaudit.fingerprint import Fingerprint, diff
from envaudit.fingerprint.types import Change

MODES = ("eager", "graph", "xla")


def check_json(golden: Path, *args: str, env: dict[str, str] | None = None
               ) -> tuple[int, dict, float]:
    started = time.perf_counter()
    proc = run_cli("check", "--golden", str(golden), "--format", "json", "--no-history", *args,
                   env=env)
    seconds = time.perf_counter() - started
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout), seconds


def cause_of(headline: str) -> str:
    return headline.split("; cause: ", 1)[1]


# --- what a change reaches --------------------------------------------------------------------


def test_stray_openblas_variables_never_explain_a_tensorflow_array():
    reference = store.load_bundle(store.REFERENCE_BUNDLE).fingerprint
    changes = diff(elsewhere(reference), reference)
    strays = [c for c in changes if c.path in {f"env.{n}" for n in STRAYS}]
    # The setup: both variables are numerics changes of the diff, as on a real machine.
    assert [(c.path, c.numerics) for c in strays] == [
        ("env.OPENBLAS_CORETYPE", True), ("env.OPENBLAS_L2_SIZE", True)]
    causes = rank_causes(changes, ["matmul", "conv"], "stem", ["stem"], False,
                         moved_modes=MODES, checked_modes=MODES)
    assert not any(c.path.startswith("env.OPENBLAS") for c in causes)
    assert causes[0].path.startswith("cpu.")
    left_out = {u.path: u.reason for u in reach.unreachable(changes, None)}
    assert "float64 references" in left_out["env.OPENBLAS_CORETYPE"]
    assert set(left_out) == {"env.OPENBLAS_CORETYPE", "env.OPENBLAS_L2_SIZE"}


def test_no_child_is_planned_for_a_float64_only_setting():
    changes = [Change("env.OPENBLAS_CORETYPE", "Haswell", None, "numerics-env", True),
               Change("env.NPY_DISABLE_CPU_FEATURES", "AVX512F", None, "numerics-env", True),
               Change("env.OMP_NUM_THREADS", "4", None, "numerics-env", True)]
    here = store.load_bundle(store.REFERENCE_BUNDLE).fingerprint
    assert all(refusal(c.path[4:], c.golden) is None for c in changes)  # each could be put back
    assert [e.label for e in confirm.plan(changes, here, here)] == [
        "OMP_NUM_THREADS restored to '4'"]


def test_numpys_openblas_is_apart_from_numpys_version():
    changes = [Change("numerics_libs.openblas_runtime.corename", "Haswell", "SkylakeX",
                      "packages", True),
               Change("packages.numpy.version", "2.3.5", "2.4.6", "packages", True)]
    [cause] = rank_causes(changes, ["matmul"], "stem", [], False)
    assert (cause.path, cause.related) == ("packages.numpy.version", ())
    assert [u.path for u in reach.unreachable(changes, None)] == [
        "numerics_libs.openblas_runtime.corename"]


def flags(names: tuple[str, ...]) -> list[Change]:
    return [Change(f"cpu.flags.{n}", n, None, "cpu", True) for n in names]


def test_an_instruction_set_change_heads_when_every_mode_moved():
    changes = [*flags(("avx512f", "avx512bw")), Change("env.PYTHONHASHSEED", None, "0",
                                                       "numerics-env", True)]
    every = rank_causes(changes, ["conv", "matmul"], "stem", [], False, moved_modes=MODES,
                        checked_modes=MODES)
    assert [c.path for c in every] == ["cpu.flags.avx512bw", "env.PYTHONHASHSEED"]
    assert any("every mode moved: each mode runs" in e for e in every[0].evidence)
    some = rank_causes(changes, ["conv", "matmul"], "stem", [], False,
                       moved_modes=("eager", "graph"), checked_modes=MODES)
    assert [c.path for c in some] == ["env.PYTHONHASHSEED", "cpu.flags.avx512bw"]


def test_only_probes_moved_is_said_as_such():
    from envaudit.attribute.rank import mode_pattern

    # Against the shipped reference on another CPU only one XLA probe moved: no mode's stages.
    assert mode_pattern([], MODES) == "no mode's stages moved: only op probes did"


def test_a_setting_that_fits_the_moved_modes_heads_another_cpu():
    onednn = Change("env.TF_ENABLE_ONEDNN_OPTS", None, "0", "numerics-env", True)
    changes = [*flags(RICHER), Change("cpu.model", "Xeon", "EPYC", "cpu", True), onednn]
    causes = rank_causes(changes, ["conv", "matmul", "softmax"], "stem", [], False,
                         moved_modes=("eager", "graph"), checked_modes=MODES)
    assert [(c.path, c.confidence) for c in causes] == [
        ("env.TF_ENABLE_ONEDNN_OPTS", "likely"), ("cpu.model", "likely")]
    assert "it reaches exactly the modes that moved" in causes[0].evidence


# --- the plan: which children start -----------------------------------------------------------


GOLDEN = {"stage/eager/stem": np.array([1.0, 2.0], np.float32)}


class Workload:
    """A child that gives the golden bits only with ``OMP_NUM_THREADS`` put back to '4'."""

    def __init__(self) -> None:
        self.envs: list[dict[str, str]] = []

    def __call__(self, command: list[str], **kwargs: dict) -> subprocess.CompletedProcess:
        self.envs.append(dict(kwargs["env"]))
        golden = kwargs["env"].get("OMP_NUM_THREADS") == "4"
        np.savez(Path(command[-2]), **{
            name: array if golden else -array for name, array in GOLDEN.items()})
        return subprocess.CompletedProcess(command, 0, "", "")


def machine(flags_: list[str]) -> Fingerprint:
    return Fingerprint({"schema": "envaudit.fingerprint/1", "fingerprint_id": "fp-x",
                        "cpu": {"flags": flags_}})


AVX2 = ["avx", "avx2", "fma", "sse4_1"]
THREADS = [Change("env.OMP_NUM_THREADS", "4", "8", "numerics-env", True),
           Change("env.MKL_NUM_THREADS", "4", "8", "numerics-env", True), *flags(RICHER)]


@pytest.mark.parametrize(("cpus", "started", "first_line"), [
    ({0}, ["OMP_NUM_THREADS"], "re-run 1/3 (OMP_NUM_THREADS), 0 s"),
    ({0, 1}, ["OMP_NUM_THREADS", "MKL_NUM_THREADS"],
     "re-runs 1-2/3 (OMP_NUM_THREADS, MKL_NUM_THREADS), 0 s"),
])
def test_confirmation_stops_at_the_first_change_that_gives_the_golden_bits(
        monkeypatch, cpus, started, first_line):
    monkeypatch.setattr(subprocess, "run", workload := Workload())
    monkeypatch.setattr(confirm.os, "sched_getaffinity", lambda _pid: cpus)
    monkeypatch.setattr(confirm, "PROGRESS_EVERY_S", 60.0)
    ranked = rank_causes(THREADS, ["matmul"], "stem", [], False)
    assert [c.path for c in ranked][:2] == ["env.OMP_NUM_THREADS", "env.MKL_NUM_THREADS"]
    said: list[str] = []
    done = confirm_causes(ranked, THREADS, machine(list(RICHER)), machine(AVX2), GOLDEN, 1,
                          progress=said.append)
    # In rank order, as many at once as there are cores; never the run with both put back,
    # since the first-ranked one alone gave the golden bits; never one for the richer CPU.
    assert list(done.reruns) == started and len(workload.envs) == len(started)
    assert said == [first_line]
    by_path = {c.path: c for c in done.causes}
    assert (by_path["env.OMP_NUM_THREADS"].confidence, by_path["env.OMP_NUM_THREADS"].trial) == (
        "confirmed", "tested")
    mkl = by_path["env.MKL_NUM_THREADS"]
    if len(started) == 1:
        assert mkl.label == "likely, not re-run"
        assert "already reproduced the golden bits" in mkl.evidence[-1]
    else:  # it ran beside it and changed nothing
        assert (mkl.confidence, mkl.trial) == ("possible", "tested")
    cpu = next(c for c in done.causes if c.path and c.path.startswith("cpu."))
    assert cpu.label == "likely, cannot be confirmed here"
    assert "richer instruction set" in cpu.evidence[-1]


def test_without_confirmation_the_plan_only_marks(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a child was started"))
    changes = [Change("env.OMP_NUM_THREADS", "4", "8", "numerics-env", True), *flags(RICHER)]
    ranked = rank_causes(changes, ["matmul"], "stem", [], False)
    done = confirm_causes(ranked, changes, machine(list(RICHER)), machine(AVX2), GOLDEN, 1,
                          run=False)
    assert done.reruns == ()
    assert [c.label for c in done.causes] == ["likely, not yet confirmed",
                                              "likely, cannot be confirmed here"]
    assert "richer instruction set" in done.causes[1].evidence[-1]


def test_the_settings_table_names_code_the_modes_run():
    """A setting names the code it reaches, a mode the code it runs: every code a setting names
    is run by some registered mode, so no setting reaches nothing by a misspelling."""
    from typing import get_args

    from envaudit import modes, settings

    run = {code for name in modes.names() for code in modes.get(name).codes}
    named = {code for s in settings.SETTINGS if s.codes is not None for code in s.codes}
    assert named <= run == set(get_args(settings.Code))


def test_a_confirmed_label_has_no_qualifier():
    assert Cause("c", "confirmed", (), "p", trial="tested").label == "confirmed"
    assert Cause("c", "likely", (), "p", trial="untested").label == "likely, not yet confirmed"


# --- end to end, on a golden recorded elsewhere -----------------------------------------------


def test_another_cpu_gets_no_rerun_and_the_same_headline(golden_bundle, tmp_path):
    forged = forge_elsewhere(golden_bundle, tmp_path / "elsewhere", moved=True)
    recorded = store.load_bundle(forged).fingerprint
    # The setup: the golden carries the strays and CPU flags this one lacks (none it has not).
    here = store.load_bundle(golden_bundle).fingerprint
    assert {k: recorded.get(f"env.{k}") for k in STRAYS} == STRAYS
    assert set(recorded.get("cpu.flags")) > set(here.get("cpu.flags"))
    assert confirm._isa_order(recorded, here)[2] >= 0  # not a lesser CPU: nothing to emulate
    _, confirming, confirm_s = check_json(forged)
    assert {"env.OPENBLAS_CORETYPE", "env.OPENBLAS_L2_SIZE"} <= {
        c["path"] for c in confirming["fingerprint_changes"]}
    assert set(confirming["moved_modes"]) == set(MODES)
    _, plain, plain_s = check_json(forged, "--no-confirm")
    print(f"check {confirm_s:.1f} s, check --no-confirm {plain_s:.1f} s")  # for the report
    assert (confirming["reruns"], confirming["confirmation_ran"]) == ([], False)
    assert cause_of(confirming["headline"]) == cause_of(plain["headline"])
    top = confirming["causes"][0]
    assert top["path"].startswith("cpu.") and top["trial"] == "untestable"
    assert cause_of(plain["headline"]).endswith("(likely, cannot be confirmed here).")
    for result in (confirming, plain):
        assert not any(c["path"] and c["path"].startswith("env.OPENBLAS")
                       for c in result["causes"])
        assert {u["path"] for u in result["cannot_affect"]} >= {"env.OPENBLAS_CORETYPE",
                                                                "env.OPENBLAS_L2_SIZE"}


def test_the_users_setting_heads_and_is_confirmed(golden_bundle, tmp_path, moving_knob):
    forged = forge_elsewhere(golden_bundle, tmp_path / "elsewhere", moved=False)
    env = cli_env(**moving_knob.env)
    _, confirming, _ = check_json(forged, env=env)
    # The setup: the knob moved numbers here, beside the golden's strays and richer CPU.
    assert confirming["verdict"] != "identical"
    assert moving_knob.path in {c["path"] for c in confirming["fingerprint_changes"]}
    top = confirming["causes"][0]
    assert (top["path"], top["confidence"]) == (moving_knob.path, "confirmed")
    assert confirming["reruns"] == [moving_knob.name]
    _, plain, _ = check_json(forged, "--no-confirm", env=env)
    assert plain["causes"][0]["path"] == moving_knob.path
    assert cause_of(plain["headline"]) == f"{moving_knob.change} (likely, not yet confirmed)."
    assert cause_of(confirming["headline"]) == f"{moving_knob.change} (confirmed)."
