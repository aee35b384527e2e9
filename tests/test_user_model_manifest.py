"""A user-model manifest is someone else's data: every shape of its ``workload`` field is either
refused with a reason or describes a model that can be read. No TensorFlow here."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envaudit.usermodel.spec import ModelInfo, TensorSpec, parse_tolerances, workload_problem

WORKLOAD = {
    "id": "user-model", "version": "1", "timings": {"run_s": 0.1},
    "model": {"kind": "keras", "path": "~/models/classifier.keras", "sha256": "a" * 64,
              "files": 1, "bytes": 4096, "signature": None,
              "inputs": {"image": {"dtype": "float32", "shape": [None, 100, 100, 3]}},
              "outputs": ["embedding", "logits"], "layers": ["stem_conv", "block1_conv"],
              "detections": None, "mode": "graph"},
    "inputs": {"kind": "images", "files": ["a.png", "b.jpg"], "feed": "image", "per_image": False},
}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
FIELDS = [("model", k) for k in WORKLOAD["model"]] + [("inputs", k) for k in WORKLOAD["inputs"]]
# Bundles recorded before images could run one at a time have no ``per_image``: absent is false.
REQUIRED = [f for f in FIELDS if f != ("inputs", "per_image")]


def test_the_valid_workload_reads_back_as_the_model_it_describes():
    assert workload_problem(WORKLOAD) is None
    info = ModelInfo.from_manifest(WORKLOAD)
    assert info.inputs == {"image": TensorSpec("float32", (None, 100, 100, 3))}
    assert info.stage_names() == ("input.image", "layer.stem_conv", "layer.block1_conv",
                                  "output.embedding", "output.logits")
    model, inputs = info.to_manifest()
    assert json.loads(json.dumps({**WORKLOAD, "model": model, "inputs": inputs})) == WORKLOAD


@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_forged_field_is_refused_or_still_readable(field, value):
    forged = copy.deepcopy(WORKLOAD)
    forged[field[0]][field[1]] = value
    problem = workload_problem(forged)
    if problem is None:  # the forgery happens to be a valid description: it must read whole
        info = ModelInfo.from_manifest(forged)
        assert all(name.startswith(("input.", "layer.", "output.")) for name in
                   info.stage_names())
    else:
        assert isinstance(problem, str) and problem


@given(missing=st.sampled_from(REQUIRED))
def test_a_missing_field_is_refused(missing):
    forged = copy.deepcopy(WORKLOAD)
    del forged[missing[0]][missing[1]]
    assert workload_problem(forged)


def test_images_run_one_at_a_time_have_an_array_per_image_stage_by_stage():
    older = copy.deepcopy(WORKLOAD)
    del older["inputs"]["per_image"]  # as recorded before: a batch
    assert workload_problem(older) is None
    assert ModelInfo.from_manifest(older).per_image is False
    each = copy.deepcopy(WORKLOAD)
    each["inputs"]["per_image"] = True
    info = ModelInfo.from_manifest(each)
    assert info.stage_names()[:4] == ("input.image.0", "input.image.1", "layer.stem_conv.0",
                                      "layer.stem_conv.1")
    assert info.stage_names()[-1] == "output.logits.1"
    assert (info.output_of("output.logits.1"), info.output_of("layer.stem_conv.0")) == \
        ("logits", None)


@pytest.mark.parametrize("value", [1, 0, "true", None, [True]])
def test_a_per_image_that_is_not_true_or_false_is_refused(value):
    forged = copy.deepcopy(WORKLOAD)
    forged["inputs"]["per_image"] = value
    assert "per_image" in workload_problem(forged)


def test_arrays_never_run_one_at_a_time():
    forged = copy.deepcopy(WORKLOAD)
    forged["inputs"] = {"kind": "arrays", "files": [], "feed": None, "per_image": True}
    assert "true only for images" in workload_problem(forged)


@pytest.mark.parametrize(("texts", "default", "per_output"), [
    (["rtol:1e-5,atol:1e-6"], (1e-5, 1e-6), {}),
    (["logits=atol:0.5"], None, {"logits": (0.0, 0.5)}),
    (["rtol:1e-3", "logits=rtol:0"], (1e-3, 0.0), {"logits": (0.0, 0.0)}),
])
def test_tolerances_parse_per_output_and_default(texts, default, per_output):
    parsed = parse_tolerances(texts)
    assert (None if parsed.default is None else (parsed.default.rtol, parsed.default.atol)) \
        == default
    assert {k: (v.rtol, v.atol) for k, v in (parsed.per_output or {}).items()} == per_output


@pytest.mark.parametrize("text", ["rtol:-1", "atol:nan", "rtol:inf", "tol:1", "rtol", "",
                                  "logits=", "a b=rtol:1", "rtol:1,rtol:2"])
def test_a_malformed_tolerance_is_refused(text):
    from envaudit.errors import EnvauditError

    with pytest.raises(EnvauditError, match="--tolerance"):
        parse_tolerances([text])


@given(key=st.sampled_from(["model", "inputs", "timings", "version"]), value=JSON)
def test_a_forged_section_is_refused_or_still_readable(key, value):
    forged = {**copy.deepcopy(WORKLOAD), key: value}
    if workload_problem(forged) is None:
        ModelInfo.from_manifest(forged)
