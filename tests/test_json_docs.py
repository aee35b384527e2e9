"""The JSON schemas are documented once (docs/json.md) and checked against the code: every key the
check JSON and the fleet JSON write is named in its section there, so a field added to a result
cannot reach users undocumented."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from test_render_check import make_result
from test_render_user_model import make_result as model_result

from envaudit.compare.training import (
    Determinism,
    Growth,
    OpDeterminism,
    StepResult,
    TrainingMode,
    TrainingReport,
)
from envaudit.fingerprint.types import Change
from envaudit.fleet.report import FleetGroup, FleetNode, FleetReport, NodeCause, SuspectedFault
from envaudit.render import check_json, fleet_json
from envaudit.result import CanaryInfo

DOCS = Path(__file__).resolve().parents[1] / "docs" / "json.md"
# Maps whose keys are data (array names, a model's input names, the training's settings), not
# schema.
FREE_MAPS = {"array_digests", "inputs", "settings"}


def section(title: str) -> str:
    """The text of docs/json.md's section whose heading starts with ``title``."""
    text = DOCS.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def keys(node: object, parent: str = "") -> set[tuple[str, str]]:
    """Every (parent key, key) of a JSON document, but inside ``FREE_MAPS``."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add((parent, key))
            if key not in FREE_MAPS:
                found |= keys(value, key)
    elif isinstance(node, list):
        for value in node:
            found |= keys(value, parent)
    return found


def undocumented(document: object, text: str) -> list[tuple[str, str]]:
    return sorted((parent, key) for parent, key in keys(document)
                  if not re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", text))


def test_every_key_of_the_check_json_is_documented():
    canary = json.loads(check_json.render(make_result()))
    model = json.loads(check_json.render(model_result()))
    assert canary["nondeterminism"] and canary["first_divergence"]  # the nested records are there
    assert model["model"] and model["witness"]
    text = section("Check JSON")
    assert undocumented(canary, text) == []
    assert undocumented(model, text) == []


def _training_report() -> TrainingReport:
    """Every nested record of the "training" key filled (growth, determinism, op determinism)."""
    step = StepResult(1, "equivalent", "step1.grad.stem.conv", 8, 64, "step1.grad.stem.conv",
                      1.7e-6)
    growth = Growth((1, 2, 3), (6e-10, 1e-9, 1.4e-9), 1.8, 1e-3, 39.0, False)
    determinism = Determinism(3, 12.5, False, 1, "stage/eager/step1.batch", 40,
                              OpDeterminism(True, ("Random ops require a seed",), 3),
                              ("the input pipeline",))
    return TrainingReport(3, {"optimizer": "SGD"},
                          (TrainingMode.of("eager", (step,), growth, "CPU:0"),), determinism)


def test_every_key_of_the_training_json_is_documented():
    result = replace(make_result(), subject=CanaryInfo(training=_training_report()))
    document = json.loads(check_json.render(result))
    training = document["training"]
    assert training["modes"][0]["growth"] and training["determinism"]["op_determinism"]
    assert undocumented(document, section("Check JSON")) == []


def _fleet_report() -> FleetReport:
    cause = NodeCause("env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'", "confirmed",
                      "env.TF_ENABLE_ONEDNN_OPTS", "tested")
    node = FleetNode("gpu-a", "tcp://10.0.0.2:4000", "0", 12.5, None, "fp-1", "drift",
                     "Drift: ...", "backbone", (cause,),
                     SuspectedFault(("stage/eager/scores",), (True,), (), "persistent"))
    change = Change("env.TF_ENABLE_ONEDNN_OPTS", None, "0", "numerics-env", True)
    group = FleetGroup("fp-1", (node.label,), "drift", (cause,), (change,), False, (node.label,))
    return FleetReport("check", "golden", "fp-0", (node,), (group,), ("drift",), 1,
                       "1 of 1 nodes drifted", 1, 14.0)


def test_every_key_of_the_fleet_json_is_documented():
    document = json.loads(fleet_json.render(_fleet_report()))
    assert document["nodes"][0]["suspect"] and document["groups"][0]["changes"]
    assert undocumented(document, section("Fleet JSON")) == []


def test_an_undocumented_key_is_seen():
    assert undocumented({"verdict": 1, "brand_new_key": {"nested_one": 2}},
                        "`verdict` is documented") == [("", "brand_new_key"),
                                                       ("brand_new_key", "nested_one")]
