"""``envaudit compare A B``: two recordings compared offline, running nothing.

Two golden bundles are compared the way ``envaudit check`` compares a run with its golden: the
bundle recorded with the moving knob set, compared with the default-settings bundle, gives the
verdict, the first divergence and the statuses that checking that change against the same golden
gave (``check_knob_moved``). It does this without TensorFlow and without replaying or re-running
anything, and every format says so. Two bundles of a user's model are compared without the model.
Two check JSONs are compared by their arrays' digests. A tampered bundle, a JSON that is not a
check's, and a bundle beside a JSON are each refused with one line.

Cost: one TensorFlow subprocess (the knob bundle, shared by the module) and two envaudit
subprocesses that import no TensorFlow; everything else runs in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from forge import forge_elsewhere, one_ulp_up
from test_store import flip_byte

from envaudit import cli, store
from envaudit.compare.tensors import digest
from envaudit.errors import EnvauditError
from envaudit.pipeline.offline import compare
from envaudit.redact_result import shareable
from envaudit.render.formats import writer
from envaudit.usermodel import WORKLOAD_ID as USER_MODEL
from envaudit.usermodel import WORKLOAD_VERSION as USER_MODEL_VERSION
from envaudit.usermodel.golden import witness_probes
from envaudit.usermodel.spec import ModelInfo, TensorSpec
from envaudit.workload.types import keyed_arrays

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def knob_bundle(tmp_path_factory: pytest.TempPathFactory, moving_knob) -> Path:
    """A bundle recorded with the moving knob set (its training steps included, like
    ``trained_bundle``): the one TensorFlow subprocess of this module."""
    path = tmp_path_factory.mktemp("offline") / "knob"
    proc = run_cli("record", "--golden", str(path), env=cli_env(**moving_knob.env))
    assert proc.returncode == 0, proc.stderr
    return path


def one_line_exit_2(code: int, out: str, err: str, phrase: str) -> None:
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("envaudit: error: "), err
    assert "internal error" not in err and phrase in err, err


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- two bundles: what check said -------------------------------------------------------------


def test_two_recorded_bundles_give_the_verdict_and_first_divergence_check_gave(
        trained_bundle, knob_bundle, check_knob_moved, moving_knob):
    code, checked = check_knob_moved
    proc = run_cli("compare", str(trained_bundle), str(knob_bundle), "--format", "json",
                   timeout=120)
    assert proc.returncode == code, proc.stderr
    compared = json.loads(proc.stdout)
    assert compared["verdict"] == checked["verdict"]
    assert compared["exit_code"] == checked["exit_code"]
    assert compared["first_divergence"]["stage"] == checked["first_divergence"]["stage"]
    assert compared["moved_modes"] == checked["moved_modes"] != []
    assert [(m["mode"], m["verdict"], (m["first_divergence"] or {}).get("stage"))
            for m in compared["modes"]] == \
        [(m["mode"], m["verdict"], (m["first_divergence"] or {}).get("stage"))
         for m in checked["modes"]]
    # every array judged alike: the same comparison functions on the same bits
    assert [(s["mode"], s["name"], s["status"]) for s in compared["stages"]] == \
        [(s["mode"], s["name"], s["status"]) for s in checked["stages"]]
    assert [(p["name"], p["status"]) for p in compared["probes"]] == \
        [(p["name"], p["status"]) for p in checked["probes"]]
    assert compared["detections"]["matched"] == checked["detections"]["matched"]
    # nothing replayed, nothing re-run: the replay is absent and no cause is confirmed
    assert compared["first_divergence"]["replay"] == []
    assert compared["first_divergence"]["changed_stages"] == []
    assert compared["reruns"] == [] and not compared["confirmation_ran"]
    assert {c["confidence"] for c in compared["causes"]} <= {"likely", "possible"}
    knob = f"env.{moving_knob.name}"
    assert knob in [c["path"] for c in compared["fingerprint_changes"]]
    assert compared["causes"][0]["change"].startswith(knob)
    assert compared["offline"]["inputs"] == "bundles"
    assert any(s.startswith("not replayed") for s in compared["offline"]["said"])
    assert any("never confirmed" in s for s in compared["offline"]["said"])


def test_compare_imports_no_tensorflow(trained_bundle, knob_bundle, tmp_path):
    out = tmp_path / "compare.json"
    script = ("import sys; from envaudit.cli import main;"
              " code = main(sys.argv[1:]);"
              " print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script, "compare", str(trained_bundle),
                           str(knob_bundle), "--format", "json", "-o", str(out)],
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    code, tensorflow, keras = proc.stdout.split()
    assert code in ("0", "1") and tensorflow == keras == "False"
    assert json.loads(out.read_text())["offline"]["inputs"] == "bundles"


def test_a_bundle_compared_with_itself_is_identical(capsys, trained_bundle):
    code, out, err = run(capsys, "compare", str(trained_bundle), str(trained_bundle))
    assert code == 0, err
    assert out.startswith("✔ Identical")
    assert "Compared offline" in out and err == ""


def test_every_format_says_what_offline_could_not_do(trained_bundle, knob_bundle):
    result = shareable(compare(str(trained_bundle), str(knob_bundle), strict=False))
    assert result.verdict != "identical" and result.first_divergence is not None
    rendered = {fmt: writer("check", fmt).render(result)
                for fmt in ("text", "json", "md", "junit", "html")}
    from rich.console import Console

    console = Console(width=200, no_color=True, record=True, file=open(os.devnull, "w"))
    console.print(rendered["text"])
    rendered["text"] = console.export_text()
    for fmt, page in rendered.items():
        assert "not replayed" in page.lower(), fmt
        assert "never confirmed" in page, fmt
        assert "envaudit check --golden A" in page.replace("&#x27;", "'"), fmt
    assert "confirmed)" not in result.headline  # the top cause reads "(likely)"
    assert "compared offline: nothing ran" in rendered["md"]
    assert "## envaudit compare:" in rendered["md"]
    assert "<h1>envaudit compare:" in rendered["html"]
    suite = ET.fromstring(rendered["junit"])
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["compared_with"] == str(knob_bundle)
    assert json.loads(rendered["json"])["offline"]["current_path"] == str(knob_bundle)


def test_a_tampered_bundle_is_refused_with_one_line(capsys, trained_bundle, knob_bundle,
                                                    tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(knob_bundle, copy)
    flip_byte(copy / "twin.npz")
    code, out, err = run(capsys, "compare", str(trained_bundle), str(copy))
    one_line_exit_2(code, out, err, "twin.npz")


def test_modes_and_training_only_one_side_recorded_are_left_out_and_said(
        trained_bundle, knob_bundle, tmp_path):
    """B without its xla mode and its training steps (a bundle of fewer modes, as 'record
    --modes eager,graph --steps 0' writes): the modes both recorded are compared, the rest said."""
    source = store.load_bundle(knob_bundle)
    fewer = store.write_bundle(
        tmp_path / "fewer", fingerprint=source.fingerprint, workload=source.manifest["workload"],
        images=tuple(source.manifest["images"]),
        stages={m: source.stages_by_mode[m] for m in ("eager", "graph")}, probes=source.probes,
        twin=source.twin, devices=source.devices)
    result = compare(str(trained_bundle), str(fewer), strict=False)
    assert [m.mode for m in result.modes] == ["eager", "graph"]
    assert result.offline.left_out == ("xla mode (only A recorded it)",
                                       "training steps (A recorded 3 steps in eager, graph, B 0"
                                       " steps)")
    assert result.training is None
    assert result.first_divergence.stage == "stem"


def test_bundles_from_two_machines_are_compared_and_said_to_be_so(golden_bundle, tmp_path):
    other = forge_elsewhere(golden_bundle, tmp_path / "elsewhere", moved=True)
    result = compare(str(golden_bundle), str(other), strict=True)
    assert result.first_divergence.stage == "stem"
    assert result.exit_code == 1  # --strict: anything not bit-identical
    assert result.recorded_elsewhere is None  # no "record your own baseline" advice offline
    assert any(s.startswith("A and B were recorded on different machines") for s in
               result.offline.said)
    assert "cpu.model_name" in [c.path for c in result.fingerprint_changes]
    assert {c.confidence for c in result.causes} <= {"likely", "possible"}


def test_bundles_of_another_workload_cannot_be_compared(trained_bundle, golden_bundle, tmp_path):
    source = store.load_bundle(golden_bundle)
    older = store.write_bundle(
        tmp_path / "older", fingerprint=source.fingerprint,
        workload={**source.manifest["workload"], "version": "0"},
        images=tuple(source.manifest["images"]), stages=source.stages_by_mode,
        probes=source.probes, twin=source.twin)
    with pytest.raises(EnvauditError, match="A and B cannot be compared: .* v0"):
        compare(str(trained_bundle), str(older), strict=False)


# A user model that exists only as its golden bundles: offline, the model is never looked for.
MODEL = ModelInfo(kind="keras", path="/models/not-on-this-machine.keras", sha256="0c" * 32,
                  files=1, size=100, signature=None, inputs={"x": TensorSpec("float32", (None, 4))},
                  outputs=("y",), layers=("dense",), detections=None, mode="graph",
                  input_kind="arrays")


def model_bundle(target: Path, canary: Path, arrays: dict, x: np.ndarray) -> Path:
    """A golden bundle of ``MODEL`` as 'envaudit record --model' writes one, its arrays given
    (the canary probes that run beside a model in graph mode taken from ``canary``)."""
    model, inputs = MODEL.to_manifest()
    source = store.load_bundle(canary)
    return store.write_bundle(
        target, fingerprint=source.fingerprint, images=(), stages={"graph": arrays},
        workload={"id": USER_MODEL, "version": USER_MODEL_VERSION, "model": model,
                  "inputs": inputs, "timings": {"load_s": 0.1, "run_s": 0.1, "total_s": 0.2}},
        probes={k: v for k, v in source.probes.items() if k in witness_probes("graph")},
        inputs={"x": x})


def test_two_bundles_of_one_model_are_compared_without_the_model(golden_bundle, tmp_path):
    rng = np.random.default_rng(7)
    layer = rng.standard_normal((2, 8)).astype(np.float32)
    output = rng.standard_normal((2, 3)).astype(np.float32)
    x = np.ones((2, 4), np.float32)
    a = model_bundle(tmp_path / "a", golden_bundle, {"layer.dense": layer, "output.y": output}, x)
    moved = {"layer.dense": layer, "output.y": one_ulp_up(output)}
    b = model_bundle(tmp_path / "b", golden_bundle, moved, x)
    result = compare(str(a), str(b), strict=False)
    assert (result.verdict, result.subject.kind) == ("equivalent", "user-model")
    assert result.first_divergence.stage == "output.y"
    assert [(s.name, s.status) for s in result.stages] == [("layer.dense", "identical"),
                                                          ("output.y", "rounding")]
    other = model_bundle(tmp_path / "other", golden_bundle, moved, np.zeros_like(x))
    with pytest.raises(EnvauditError, match="cannot be compared: A and B ran the model on other"):
        compare(str(a), str(other), strict=False)
    with pytest.raises(EnvauditError, match="A recorded a model of your own, B envaudit's"):
        compare(str(a), str(golden_bundle), strict=False)


# --- two check JSONs: by digest --------------------------------------------------------------


def write_json(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def identical_check(bundle: Path, like: dict) -> dict:
    """The JSON of a check that found ``bundle`` bit-identical, from ``like`` (a real check JSON
    of the same golden): its digests are the golden's own arrays', it changed nothing."""
    golden = store.load_bundle(bundle)
    arrays = keyed_arrays({m: {**s, **golden.training.get(m, {})}
                           for m, s in golden.stages_by_mode.items()}, golden.probes)
    return {**like, "verdict": "identical", "exit_code": 0, "fingerprint_changes": [],
            "current_fingerprint_id": golden.fingerprint.fingerprint_id,
            "array_digests": {k: digest(v) for k, v in arrays.items()}}


def test_two_check_jsons_of_one_golden_are_compared_by_digest(
        capsys, trained_bundle, check_knob_moved, moving_knob, tmp_path):
    _, knob = check_knob_moved
    before = write_json(tmp_path / "before.json", identical_check(trained_bundle, knob))
    after = write_json(tmp_path / "after.json", knob)
    code, out, err = run(capsys, "compare", before, after, "--format", "json")
    compared = json.loads(out)
    # the golden's bits against B: exactly what B's own check measured
    assert (code, compared["verdict"]) == (knob["exit_code"], knob["verdict"])
    assert compared["first_divergence"]["stage"] == knob["first_divergence"]["stage"]
    assert compared["moved_modes"] == knob["moved_modes"]
    assert compared["offline"]["digests"]["magnitude_known"] is True
    assert [c["path"] for c in compared["fingerprint_changes"]
            if c["numerics"]] == [f"env.{moving_knob.name}"]
    # the other way round, digests alone cannot say how much: a finding, said as such
    code, out, err = run(capsys, "compare", after, before, "--format", "json")
    reverse = json.loads(out)
    assert (code, reverse["verdict"]) == (1, "drift")
    assert reverse["headline"].startswith("Drift (by digest): ")
    assert any("other way round" in s for s in reverse["offline"]["said"])
    assert reverse["stages"] == [] and reverse["causes"] == []


def test_two_check_jsons_of_different_goldens_say_what_they_cannot_tell(
        capsys, check_same, check_knob_moved, tmp_path):
    """``check_same`` checked the untrained golden, ``check_knob_moved`` the trained one: the
    pipeline arrays are compared, the training steps only one computed are left out."""
    same = write_json(tmp_path / "same.json", check_same[0][1])
    knob = write_json(tmp_path / "knob.json", check_knob_moved[1])
    code, out, err = run(capsys, "compare", same, knob, "--format", "json")
    compared = json.loads(out)
    assert (code, compared["verdict"]) == (1, "drift")
    assert compared["first_divergence"]["stage"] == \
        check_knob_moved[1]["first_divergence"]["stage"]
    offline = compared["offline"]
    assert offline["fingerprints_compared"] is False and compared["fingerprint_changes"] == []
    assert any(s.startswith("A and B checked different goldens") for s in offline["said"])
    assert any("only B" in phrase for phrase in offline["left_out"])
    code, out, err = run(capsys, "compare", same,
                         write_json(tmp_path / "again.json", check_same[1][1]))
    assert code == 0 and out.startswith("✔ Identical: all "), err
    assert "Arrays by digest" in out


# --- refused inputs ----------------------------------------------------------------------------


def hostile(tmp_path: Path, check: dict, trained_bundle: Path, case: str) -> str:
    target = tmp_path / f"{case.replace(' ', '-')}.json"
    edits = {
        "digests a list": {**check, "array_digests": ["stage/eager/stem"]},
        "verdict a number": {**check, "verdict": 5},
        "digest not hex": {**check, "array_digests": {"stage/eager/stem": "<script>"}},
        "unknown mode": {**check, "array_digests": {"stage/warp/stem": "ab" * 16}},
        "compare output": {**check, "offline": {"inputs": "bundles"}},
        "fingerprint": {"schema": "envaudit.fingerprint/2", "fingerprint_id": "fp-1"},
        "a list": [check],
    }
    if case == "manifest":
        return str(trained_bundle / store.MANIFEST)
    if case == "deep":
        target.write_text("[" * 5000 + "]" * 5000)
    elif case == "huge":
        with open(target, "wb") as handle:
            handle.truncate((64 << 20) + 1)  # sparse: refused by its size, never read
    elif case == "not json":
        target.write_text("verdict: drift")
    else:
        target.write_text(json.dumps(edits[case]))
    return str(target)


@pytest.mark.parametrize("case, phrase", [
    ("manifest", "a golden bundle's manifest"), ("fingerprint", "'envaudit diff'"),
    ("compare output", "output of 'envaudit compare'"), ("deep", "nested deeper"),
    ("huge", "more than the 64 MiB"), ("not json", "not valid JSON"),
    ("a list", "not a check JSON"), ("digests a list", "array_digests is not a dict"),
    ("verdict a number", "verdict is not one of"), ("digest not hex", "not an array digest"),
    ("unknown mode", "mode 'warp'"),
])
def test_a_json_that_is_not_a_check_is_one_line(capsys, tmp_path, check_knob_moved,
                                                trained_bundle, case, phrase):
    real = write_json(tmp_path / "real.json", check_knob_moved[1])
    odd = hostile(tmp_path, check_knob_moved[1], trained_bundle, case)
    code, out, err = run(capsys, "compare", real, odd)
    one_line_exit_2(code, out, err, phrase)


def test_a_bundle_and_a_json_are_refused_together(capsys, tmp_path, trained_bundle,
                                                  check_knob_moved):
    real = write_json(tmp_path / "real.json", check_knob_moved[1])
    code, out, err = run(capsys, "compare", str(trained_bundle), real)
    one_line_exit_2(code, out, err, "or two check JSON files, never one of each")
    code, out, err = run(capsys, "compare", real, str(tmp_path / "missing"))
    one_line_exit_2(code, out, err, "does not exist")
