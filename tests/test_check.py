"""`envaudit check` end to end with real TensorFlow: identical, a confirmed cause, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import cli_env, run_cli

import envaudit
from envaudit.compare.tensors import compare_tensor
from envaudit.compare.verdict import classify, exit_code
from envaudit.render import check_junit, check_md, check_text
from envaudit.store import load_bundle

CHECK_KEYS = {"schema", "verdict", "exit_code", "fingerprint_changes", "stages",
              "first_divergence", "detections", "causes", "nondeterminism"}
STAGE_KEYS = {"name", "identical", "max_abs", "max_rel", "mismatch_fraction", "golden_error",
              "current_error", "error_growth", "status"}
DETECTION_KEYS = {"golden", "current", "matched", "added", "removed", "class_changed",
                  "max_score_delta", "min_iou"}


def test_same_environment_is_identical_every_time(check_same):
    assert len(check_same) == 3  # three checks in a row
    for code, report in check_same:
        assert code == 0
        assert report["verdict"] == "identical"
        assert [(m["mode"], m["verdict"]) for m in report["modes"]] == [
            ("eager", "identical"), ("graph", "identical"), ("xla", "identical")]
        assert report["exit_code"] == 0
        assert report["first_divergence"] is None
        assert report["causes"] == []
        assert all(stage["identical"] for stage in report["stages"])
        assert report["detections"]["golden"] == report["detections"]["matched"] > 0
        numerics = [c for c in report["fingerprint_changes"] if c["numerics"]]
        assert numerics == []


def test_json_carries_the_design_contract(check_same, check_knob_moved):
    for report in (check_same[0][1], check_knob_moved[1]):
        assert CHECK_KEYS <= set(report)
        assert report["schema"] == "envaudit.check/2"
        assert [s["name"] for s in report["stages"]][:3] == ["decode", "resize", "normalize"]
        for stage in report["stages"]:
            assert STAGE_KEYS <= set(stage)
        assert DETECTION_KEYS <= set(report["detections"])
        for cause in report["causes"]:
            assert cause["confidence"] in ("confirmed", "likely", "possible")


def test_the_moving_knob_is_localized_attributed_and_confirmed(check_knob_moved, moving_knob):
    """The setting that moves numbers on this machine (``TF_ENABLE_ONEDNN_OPTS=0`` where oneDNN
    is on by default, ``=1`` on an AVX2-only CPU): found, localized, confirmed."""
    code, report = check_knob_moved
    assert report["verdict"] != "identical"
    change = next(c for c in report["fingerprint_changes"] if c["path"] == moving_knob.path)
    assert (change["golden"], change["current"], change["category"]) == (
        moving_knob.default, moving_knob.value, "numerics-env")
    first = report["first_divergence"]
    differing = [(s["mode"], s["name"]) for s in report["stages"] if not s["identical"]]
    assert first["stage"] == differing[0][1]
    # decoding and resizing do not go through oneDNN's or Eigen's kernels; the convolutions do
    assert first["stage"] not in ("decode", "resize", "normalize")
    assert first["changed_stages"], "stage replay found no stage that changed by itself"
    top = report["causes"][0]
    assert top["path"] == moving_knob.path
    assert top["confidence"] == "confirmed"
    assert any("reproduced the golden bits" in line for line in top["evidence"])
    assert {"conv", "matmul"} & set(report["changed_probe_families"])
    # at fp32 rounding, same detections: equivalent, and the pipeline gate stays green
    assert report["verdict"] == "equivalent"
    assert code == 0
    # ... which the JSON says per array, so a CI consumer need not re-derive any threshold
    statuses = {(s["mode"], s["name"]): s["status"] for s in report["stages"]}
    assert {statuses[key] for key in differing} == {"rounding"}
    assert {status for key, status in statuses.items() if key not in differing} == \
        {"identical"}
    assert {p["status"] for p in report["probes"] if not p["identical"]} == {"rounding"}


def test_onednn_switch_moves_the_modes_of_tensorflows_kernels_not_xla(check_knob_moved,
                                                                      moving_knob):
    """XLA generates its own CPU code: the oneDNN switch moves eager and graph, each localized
    to its own first divergent stage, and leaves xla bit-identical; the headline names it."""
    if not moving_knob.switches_onednn:
        pytest.skip(f"the oneDNN switch moves nothing on this machine ({moving_knob.name} is the"
                    " setting that does)")
    _code, report = check_knob_moved
    by_mode = {m["mode"]: m for m in report["modes"]}
    assert [m["mode"] for m in report["modes"]] == ["eager", "graph", "xla"]
    assert (by_mode["eager"]["verdict"], by_mode["graph"]["verdict"],
            by_mode["xla"]["verdict"]) == ("equivalent", "equivalent", "identical")
    assert by_mode["eager"]["first_divergence"]["stage"] == "stem"
    assert by_mode["graph"]["first_divergence"]["stage"] == "stem"
    assert by_mode["xla"]["first_divergence"] is None
    assert report["moved_modes"] == ["eager", "graph"]
    assert "moved in eager and graph modes (xla identical)" in report["headline"]
    evidence = report["causes"][0]["evidence"]
    assert ("eager and graph moved, xla identical: TensorFlow's own kernels changed; XLA's"
            " generated code did not (identical: xla)") in evidence


def test_strict_fails_a_result_that_is_only_equivalent(golden_bundle, moving_knob):
    proc = run_cli("check", "--golden", str(golden_bundle), "--strict", "--no-confirm",
                   env=cli_env(**moving_knob.env))
    assert proc.returncode == 1, proc.stderr
    assert "Equivalent" in proc.stdout


def test_no_confirm_never_claims_confirmed(golden_bundle, moving_knob):
    proc = run_cli("check", "--golden", str(golden_bundle), "--no-confirm", "--format", "json",
                   env=cli_env(**moving_knob.env))
    report = json.loads(proc.stdout)
    assert report["confirmation_ran"] is False
    assert report["causes"][0]["path"] == moving_knob.path
    assert report["causes"][0]["confidence"] == "likely"


@pytest.fixture(scope="module")
def in_process_check(golden_bundle, workload_result):
    """The Python API in this process (TensorFlow is already loaded by ``workload_result``)."""
    return envaudit.check(golden=str(golden_bundle), repeat=2)


def test_python_api_and_repeat(in_process_check):
    result = in_process_check
    assert result.verdict == "identical" and result.exit_code == 0
    assert result.nondeterminism is not None
    assert result.nondeterminism.runs == 2
    assert result.nondeterminism.deterministic
    json.dumps(result.to_dict())  # plain data a user can serialize


def test_junit_parses_with_a_case_per_stage(in_process_check):
    root = ET.fromstring(check_junit.render(in_process_check))
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = suite.findall("testcase")
    names = [c.get("name") for c in cases]
    assert len(cases) >= len(in_process_check.pipeline_stages) + 1
    assert any("detections" in n for n in names)
    assert int(suite.get("failures")) == 0
    assert int(suite.get("tests")) == len(cases)


def test_markdown_and_text_reports(in_process_check):
    md = check_md.render(in_process_check)
    assert "identical" in md.lower() and "|" in md
    from rich.console import Console

    console = Console(record=True, width=120, no_color=True)
    console.print(check_text.render(in_process_check))
    text = console.export_text()
    assert text.startswith("✔ Identical") or "Identical" in text.splitlines()[0]


def test_precision_loss_classified_on_real_pipeline_arrays(golden_bundle):
    """Real stage outputs of the detector, rounded through bf16 as reduced-precision kernels
    would store them: precision_loss and exit 1, even though nothing else changed."""
    bundle = load_bundle(golden_bundle)

    def bf16(x: np.ndarray) -> np.ndarray:
        bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        return rounded.astype(np.uint32).view(np.float32)

    stages = []
    for name, golden in bundle.stages.items():
        current = golden if golden.dtype != np.float32 or name in ("resize", "normalize", "nms") \
            else bf16(golden)
        stages.append(compare_tensor(name, "stage", name, golden, current,
                                     reference=bundle.twin.get(name),
                                     golden_reference=bundle.twin.get(name)))
    from envaudit.compare.detections import match_detections
    from envaudit.workload import detections_from_nms

    same = detections_from_nms(bundle.stages["nms"])
    verdict = classify(stages, [], match_detections(same, same))
    assert verdict == "precision_loss"
    assert exit_code(verdict, strict=False) == 1
    grown = [s for s in stages if s.current_error and s.golden_error]
    assert max(s.current_error / s.golden_error for s in grown) > 100


@pytest.mark.parametrize("variant", ["missing", "not-a-bundle"])
def test_unusable_golden_is_one_line_exit_2(tmp_path, variant):
    target = tmp_path / "nothing-here"
    if variant == "not-a-bundle":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    proc = run_cli("check", "--golden", str(target))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert str(target) in proc.stderr


def test_changed_decoding_gets_its_own_float64_reference(golden_bundle, workload_result):
    """When decoded pixels differ (another JPEG library), the twin is re-run on the current pixels:
    the current run's error is measured against exact math for its own input."""
    from envaudit.pipeline.canary import current_twin as _current_twin
    from envaudit.workload.assets import load_assets

    bundle = load_bundle(golden_bundle)
    assets = load_assets()
    assert _current_twin(bundle, assets, workload_result.stages["decode"]) is bundle.twin
    pixels = workload_result.stages["decode"].copy()
    pixels[0, 10, 10, 0] ^= 1
    twin = _current_twin(bundle, assets, pixels)
    assert twin is not bundle.twin
    assert not np.array_equal(twin["resize"], bundle.twin["resize"])
    assert np.array_equal(twin["resize"][1:], bundle.twin["resize"][1:])


def test_repeats_that_differ_are_reported_with_their_spread(workload_result):
    from envaudit.compare.localize import nondeterminism
    from envaudit.workload.types import keyed_arrays

    run = keyed_arrays({"eager": workload_result.stages}, workload_result.probes)
    assert nondeterminism([run, run]).deterministic
    scores = workload_result.stages["scores"].copy()
    scores[0, 0, 0] += np.float32(1e-6)
    other = {**run, "stage/eager/scores": scores}
    found = nondeterminism([run, run, other])
    assert not found.deterministic and found.runs == 3
    assert found.differing_arrays == ("stage/eager/scores",)
    assert 5e-7 < found.max_spread < 2e-6


def test_the_public_check_function_survives_importing_its_module():
    """Importing a submodule sets an attribute of the package: a module named like the public
    function would replace ``envaudit.check`` with a module whenever something imported it."""
    import importlib

    import envaudit

    importlib.import_module("envaudit.pipeline.compose")
    importlib.import_module("envaudit.result")
    assert callable(envaudit.check) and envaudit.check.__module__ == "envaudit"


def test_the_check_json_carries_a_digest_of_every_array_it_computed(in_process_check,
                                                                   workload_result):
    from envaudit.compare.tensors import digest
    from envaudit.workload.types import keyed_arrays

    # (the training steps' digests: tests/test_training.py, on a golden that recorded them)
    arrays = keyed_arrays({m: r.stages for m, r in workload_result.runs.items()},
                          workload_result.probes)
    assert set(in_process_check.array_digests) == set(arrays)
    # Same environment, same bits: the digests agree with an independent run's arrays.
    assert {k: in_process_check.array_digests[k] for k in arrays} == \
        {k: digest(v) for k, v in arrays.items()}
    assert digest(np.zeros(3, np.float32)) != digest(np.zeros(3, np.float64))
    assert digest(np.zeros((3, 1), np.float32)) != digest(np.zeros((1, 3), np.float32))
