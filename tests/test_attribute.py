"""Attribution: ranking from evidence, planning re-runs, and the rule that only a re-run that
reproduces the golden bits may say "confirmed"."""

from __future__ import annotations

import pytest

from envaudit.attribute.confirm import (
    Experiment,
    Outcome,
    apply_outcomes,
    limits,
    max_isa,
    plan,
    run_experiments,
)
from envaudit.attribute.rank import rank_causes
from envaudit.fingerprint.types import SCHEMA, Change, Fingerprint
from envaudit.store import load_bundle

AVX512_CPU = ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx512vl",
              "fma", "sse4_1", "sse4_2"]
AVX2_CPU = ["avx", "avx2", "fma", "sse4_1", "sse4_2"]


def fingerprint(flags: list[str], cores: int = 2) -> Fingerprint:
    return Fingerprint({"schema": SCHEMA, "fingerprint_id": "fp-test",
                        "cpu": {"flags": flags, "usable_cores": cores}})


ONEDNN = Change("env.TF_ENABLE_ONEDNN_OPTS", None, "0", "numerics-env", True)
TF_VERSION = Change("tensorflow.version", "2.20.0", "2.21.0", "tensorflow", True)
TF_PACKAGE = Change("packages.tensorflow.version", "2.20.0", "2.21.0", "packages", True)
TF_COMPILER = Change("tensorflow.build_info.cpu_compiler", "clang 18", "clang", "tensorflow", True)
HOST = Change("os.hostname", "a", "b", "info", False)


def test_a_variable_that_moves_the_changed_kernels_ranks_first():
    causes = rank_causes([HOST, TF_COMPILER, ONEDNN], ["conv", "matmul"], "stem", ["stem"], False)
    assert causes[0].path == "env.TF_ENABLE_ONEDNN_OPTS"
    assert causes[0].confidence == "likely"
    assert all(c.confidence != "confirmed" for c in causes)  # nothing was re-run
    assert all(c.path != "os.hostname" for c in causes)  # not numerics-relevant


def test_one_upgrade_is_one_cause_led_by_its_version():
    causes = rank_causes([TF_COMPILER, TF_PACKAGE, TF_VERSION], ["transcendental"], None, [],
                         False)
    assert len(causes) == 1
    assert causes[0].path == "tensorflow.version"
    assert set(causes[0].related) == {TF_PACKAGE.path, TF_COMPILER.path}


def test_a_change_that_cannot_explain_the_pattern_is_only_possible():
    python = Change("python.version", "3.11.6", "3.11.7", "python", True)
    causes = rank_causes([python], ["conv"], "stem", ["stem"], False)
    assert causes[0].confidence == "possible"


def test_no_recorded_change_still_gives_an_honest_possibility():
    causes = rank_causes([HOST], ["conv"], "stem", ["stem"], False)
    assert len(causes) == 1 and causes[0].confidence == "possible"
    assert "does not record" in causes[0].change


def test_precision_loss_without_a_visible_knob_is_named():
    causes = rank_causes([], ["matmul"], "stem", ["stem"], True)
    assert "reduced-precision" in causes[0].change


def test_a_visible_precision_knob_is_not_doubled_by_an_invisible_one():
    """The ranking once searched evidence prose for "precision": TF32's evidence says "TF32
    math", so a second cause claimed reduced precision was "not visible in the fingerprint"."""
    tf32 = Change("env.NVIDIA_TF32_OVERRIDE", None, "1", "numerics-env", True)
    causes = rank_causes([tf32], ["matmul", "conv"], "stem", ["stem"], True)
    assert [(c.path, c.confidence) for c in causes] == [("env.NVIDIA_TF32_OVERRIDE", "likely")]


def test_plan_puts_back_each_variable_and_all_together():
    second = Change("env.OMP_NUM_THREADS", "1", None, "numerics-env", True)
    experiments = plan([ONEDNN, second, TF_VERSION], fingerprint(AVX512_CPU),
                       fingerprint(AVX512_CPU))
    labels = {e.label: dict(e.env) for e in experiments}
    assert labels["TF_ENABLE_ONEDNN_OPTS restored to unset"] == {"TF_ENABLE_ONEDNN_OPTS": None}
    assert labels["OMP_NUM_THREADS restored to '1'"] == {"OMP_NUM_THREADS": "1"}
    assert "all numerics variables restored together" in labels
    assert len(experiments) == 3  # a TensorFlow version cannot be put back from here


def test_plan_emulates_a_lesser_golden_cpu_through_the_isa_cap():
    flags = [Change(f"cpu.flags.{f}", None, f, "cpu", True)
             for f in sorted(set(AVX512_CPU) - set(AVX2_CPU))]
    experiments = plan(flags, fingerprint(AVX2_CPU), fingerprint(AVX512_CPU))
    assert [dict(e.env) for e in experiments] == [{"ONEDNN_MAX_CPU_ISA": "AVX2"}]
    # the other way round (golden had more) cannot be emulated: no experiment, and the cause
    # says why it stays unconfirmed
    assert plan(flags, fingerprint(AVX512_CPU), fingerprint(AVX2_CPU)) == []
    notes = limits(flags, fingerprint(AVX512_CPU), fingerprint(AVX2_CPU))
    causes = apply_outcomes(rank_causes(flags, ["matmul"], "stem", ["stem"], False), [], 1, notes)
    assert causes[0].confidence == "likely"
    assert any("cannot be emulated" in line for line in causes[0].evidence)
    assert max_isa(AVX512_CPU) == "AVX512_CORE_BF16"


def test_plan_pins_cores_when_the_golden_machine_had_fewer():
    cores = Change("cpu.usable_cores", 1, 2, "cpu", True)
    experiments = plan([cores], fingerprint(AVX2_CPU, 1), fingerprint(AVX2_CPU, 2))
    assert experiments[0].cores == 1


def test_confirmed_only_by_a_reproducing_rerun_of_that_change_alone():
    second = Change("env.OMP_NUM_THREADS", "1", None, "numerics-env", True)
    causes = rank_causes([ONEDNN, second], ["conv"], "stem", ["stem"], False)
    alone_a = Experiment("a", {"TF_ENABLE_ONEDNN_OPTS": None}, (ONEDNN.path,))
    alone_b = Experiment("b", {"OMP_NUM_THREADS": "1"}, (second.path,))
    together = Experiment("both", {}, (ONEDNN.path, second.path))
    # neither alone restores the bits, both together do: a combined cause is confirmed, and
    # neither variable is called confirmed on its own
    outcomes = [Outcome(alone_a, False, ("stage/stem",)), Outcome(alone_b, False, ("stage/stem",)),
                Outcome(together, True, ())]
    updated = apply_outcomes(causes, outcomes, differing_now=1)
    assert updated[0].confidence == "confirmed" and updated[0].path is None
    assert {c.path: c.confidence for c in updated[1:]} == {
        ONEDNN.path: "possible", second.path: "possible"}
    # one alone restores: that one is confirmed
    outcomes = [Outcome(alone_a, True, ()), Outcome(alone_b, False, ("stage/stem",))]
    updated = apply_outcomes(causes, outcomes, differing_now=1)
    assert updated[0].path == ONEDNN.path and updated[0].confidence == "confirmed"
    assert any("reproduced the golden bits" in e for e in updated[0].evidence)
    # a failed re-run is reported, never counted as confirmation
    outcomes = [Outcome(alone_a, False, (), "re-run failed (exit 2): boom")]
    updated = apply_outcomes(causes, outcomes, differing_now=1)
    assert all(c.confidence != "confirmed" for c in updated)
    assert any("boom" in e for c in updated for e in c.evidence)


@pytest.mark.slow
def test_real_reruns_in_parallel(golden_bundle):
    """Two real child processes: one in the recording environment reproduces the golden bits; one
    with oneDNN capped below this CPU's instruction set runs other kernels. On AVX-512 machines
    (where this was measured) the cap to AVX2 changes the matmul probes."""
    bundle = load_bundle(golden_bundle)
    golden = {**{f"stage/eager/{k}": v for k, v in bundle.stages.items()},
              **{f"probe/{k}": v for k, v in bundle.probes.items()}}
    here = max_isa(bundle.fingerprint.get("cpu.flags") or [])
    avx512 = bool(here) and here.startswith("AVX512")
    same = Experiment("nothing changed", {}, ("env.NONE",))
    capped = Experiment("capped", {"ONEDNN_MAX_CPU_ISA": "AVX2" if avx512 else "SSE41"},
                        ("cpu.flags",))
    by_label = {o.experiment.label: o for o in run_experiments([same, capped], golden)}
    assert by_label["nothing changed"].error is None
    assert by_label["nothing changed"].identical
    assert by_label["capped"].error is None
    assert by_label["capped"].identical == (by_label["capped"].differing == ())
    assert all(name in golden for name in by_label["capped"].differing)
    if avx512:
        assert any(name.startswith("probe/matmul") for name in by_label["capped"].differing)


def test_which_modes_a_change_can_reach():
    from envaudit import modes
    from envaudit.attribute.rank import mode_reach

    every = sorted(modes.names())  # a thread count, an unknown variable, a release: every mode
    reach = {path: sorted(mode_reach(Change(path, None, "1", "numerics-env", True)))
             for path in ("env.TF_ENABLE_ONEDNN_OPTS", "env.ONEDNN_MAX_CPU_ISA", "env.XLA_FLAGS",
                          "env.TF_XLA_FLAGS", "env.OMP_NUM_THREADS", "env.ONEDNNX")}
    assert reach == {
        "env.TF_ENABLE_ONEDNN_OPTS": ["eager", "graph"],
        "env.ONEDNN_MAX_CPU_ISA": ["eager", "graph"],
        "env.XLA_FLAGS": ["xla"], "env.TF_XLA_FLAGS": ["graph", "xla"],
        "env.OMP_NUM_THREADS": every, "env.ONEDNNX": every}
    assert sorted(mode_reach(TF_VERSION)) == every


def test_the_pattern_of_moved_modes_is_evidence():
    from envaudit.attribute.rank import mode_pattern

    modes = ("eager", "graph", "xla")
    assert mode_pattern(["xla"], modes) == ("only xla moved: XLA code generation changed (an XLA"
                                           " or TensorFlow release, XLA_FLAGS) (identical: eager,"
                                           " graph)")
    assert mode_pattern(["eager", "graph", "xla"], modes) == \
        "every mode moved: the kernels themselves changed"
    assert mode_pattern(["eager", "xla"], modes) == \
        "modes that moved: eager, xla (identical: graph)"
    assert mode_pattern(["eager"], ("eager",)) is None  # one mode checked: no pattern
    # xla not checked: nothing said of it
    assert mode_pattern(["eager", "graph"], ("eager", "graph")) == \
        "every mode moved: the kernels themselves changed"


def test_a_change_that_reaches_none_of_the_moved_modes_is_only_possible():
    xla_flags = Change("env.XLA_FLAGS", None, "--xla_cpu_enable_fast_math=true", "numerics-env",
                       True)
    moved_eager = rank_causes([xla_flags], ["matmul"], "stem", ["stem"], False,
                              moved_modes=["eager"], checked_modes=["eager", "graph", "xla"])
    assert moved_eager[0].confidence == "possible"
    assert moved_eager[0].evidence[3:5] == (
        "modes that moved: eager (identical: graph, xla)",
        "it cannot reach the modes that moved (it reaches xla)")
    moved_xla = rank_causes([xla_flags], ["matmul"], "stem", ["stem"], False,
                            moved_modes=["xla"], checked_modes=["eager", "graph", "xla"])
    assert moved_xla[0].confidence == "likely"
