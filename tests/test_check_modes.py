"""Checks per execution mode: a schema-1 golden checks in eager mode only and says so, --modes
selects, and a mode that cannot run here is reported as not run with its reason, never as
identical."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from forge import write_v1

from envaudit.store import load_bundle


@pytest.fixture(scope="module")
def v1_bundle(golden_bundle, tmp_path_factory):
    return write_v1(golden_bundle, tmp_path_factory.mktemp("v1") / "bundle")


@pytest.mark.slow
def test_a_schema_1_golden_checks_in_eager_mode_and_says_so(v1_bundle):
    proc = run_cli("check", "--golden", str(v1_bundle), "--format", "json", "--no-confirm")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"envaudit: note: golden bundle {v1_bundle} has schema envaudit.golden/1 (envaudit"
        " 0.1): checked in eager mode only; re-record it with 'envaudit record --golden PATH"
        " --force' to check graph and xla modes too"]
    report = json.loads(proc.stdout)
    assert report["verdict"] == "identical"
    assert [m["mode"] for m in report["modes"]] == ["eager"]
    assert {s["mode"] for s in report["stages"]} == {"eager"}
    assert len(report["stages"]) == 13


def test_a_schema_1_golden_has_no_other_mode_to_select(v1_bundle, capsys):
    from envaudit import cli

    code = cli.main(["check", "--golden", str(v1_bundle), "--modes", "xla"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"envaudit: error: golden bundle {v1_bundle} did not record mode xla (it has"
                   " schema 1, eager mode only: re-record it with 'envaudit record --golden PATH"
                   " --force' to record every mode); choose from eager\n")


def test_modes_must_be_known(golden_bundle, capsys):
    from envaudit import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "--golden", str(golden_bundle), "--modes", "eager,turbo"])
    assert exit_.value.code == 2
    assert "'eager,turbo' is not a list of modes from eager, graph, xla" in capsys.readouterr().err


@pytest.mark.slow
def test_modes_select_what_is_checked(golden_bundle):
    proc = run_cli("check", "--golden", str(golden_bundle), "--format", "json", "--no-confirm",
                   "--modes", "xla,eager")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [m["mode"] for m in report["modes"]] == ["eager", "xla"]  # mode order, not typed
    assert len(report["stages"]) == 26


def test_a_mode_that_cannot_run_is_not_run_never_identical(golden_bundle, workload_result,
                                                           monkeypatch):
    """As in a TensorFlow build without XLA: the xla mode fails to compile."""
    import envaudit
    from envaudit.workload import modes

    real = modes.ModeRunner.run_on_devices

    def no_xla(self, mode, encoded):
        if mode == "xla":
            raise modes.ModeUnavailable("xla mode cannot run here: XLA is not built in")
        return real(self, mode, encoded)

    monkeypatch.setattr(modes.ModeRunner, "run_on_devices", no_xla)
    result = envaudit.check(golden=str(golden_bundle), confirm=False)
    by_mode = {m.mode: m for m in result.modes}
    assert (by_mode["eager"].verdict, by_mode["graph"].verdict) == ("identical", "identical")
    assert by_mode["xla"].status == "not_run" and by_mode["xla"].verdict is None
    assert result.to_dict()["modes"][2]["verdict"] == "not_run"  # as the JSON spells it
    assert by_mode["xla"].not_run == "xla mode cannot run here: XLA is not built in"
    assert {s.status for s in result.stages if s.mode == "xla"} == {"not_run"}
    assert result.verdict == "drift" and result.exit_code == 1
    assert "xla mode could not run here" in result.headline
    assert load_bundle(golden_bundle).modes == ("eager", "graph", "xla")


@pytest.mark.slow
def test_an_xla_only_setting_moves_xla_alone_and_is_confirmed(golden_bundle):
    """XLA's CPU fast-math option changes what XLA generates and nothing else: detected in the
    xla mode alone, eager and graph bit-identical, the cause confirmed by a re-run without it."""
    from conftest import cli_env

    proc = run_cli("check", "--golden", str(golden_bundle), "--format", "json",
                   env=cli_env(XLA_FLAGS="--xla_cpu_enable_fast_math=true"))
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert [(m["mode"], m["verdict"] != "identical") for m in report["modes"]] == [
        ("eager", False), ("graph", False), ("xla", True)]
    assert report["moved_modes"] == ["xla"]
    xla = next(m for m in report["modes"] if m["mode"] == "xla")
    assert xla["first_divergence"]["stage"] not in ("decode", "resize")
    assert "moved in xla mode (eager and graph identical)" in report["headline"]
    top = report["causes"][0]
    assert (top["path"], top["confidence"]) == ("env.XLA_FLAGS", "confirmed")
    assert ("only xla moved: XLA code generation changed (an XLA or TensorFlow release,"
            " XLA_FLAGS) (identical: eager, graph)") in top["evidence"]
