"""Environment bisection's logic, with environments that are functions of their package set.

``build`` and ``run`` stand in for uv and the workload child: the arrays an environment computes
depend only on which versions it pins, as they do for real (``test_bisect_release.py`` runs the
real thing). What is checked here: which environments are tried, in which order, and what each
group becomes: confirmed, ruled out, or left as it was with the reason.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from envaudit.attribute.bisect import apply_bisection, bisect
from envaudit.attribute.confirm import NO_RERUN_PACKAGE
from envaudit.attribute.types import Cause, kind_of
from envaudit.environments.packages import PackageSet
from envaudit.environments.uv import EnvBuildError
from envaudit.fingerprint import Fingerprint

GOLDEN = {"tensorflow-cpu": "2.20.0", "tensorboard": "2.20.0", "numpy": "2.3.5",
          "keras": "3.15.1", "scipy": "1.15.0", "jax": "0.6.0", "rich": "14.0.0"}
CURRENT = {"tensorflow": "2.21.0", "tensorboard": "2.21.0", "numpy": "2.4.6",
           "keras": "3.15.1", "scipy": "1.16.0", "jax": "0.7.0", "rich": "15.0.0"}
GOLDEN_BITS = {"probe/exp": np.array([1.0, 2.0], np.float32)}
CURRENT_BITS = {"probe/exp": np.array([1.0, 2.5], np.float32)}


def fingerprint(packages: dict[str, str]) -> Fingerprint:
    return Fingerprint({"schema": "envaudit.fingerprint/1", "fingerprint_id": "fp-test",
                        "packages": {n: {"version": v} for n, v in packages.items()}})


class Lab:
    """Environments whose bits are golden when ``golden_when`` holds for their pins."""

    def __init__(self, golden_when, fails: str | None = None, rebuilt_differs: bool = False):
        self.golden_when, self.fails, self.rebuilt_differs = golden_when, fails, rebuilt_differs
        self.built: list[dict[str, str]] = []

    def build(self, pins: PackageSet):
        if self.fails:
            raise EnvBuildError(self.fails)
        self.built.append(pins.as_dict())
        return pins

    def run(self, pins, _out):
        pinned = pins.as_dict()
        if self.golden_when(pinned):
            return GOLDEN_BITS
        if self.rebuilt_differs:  # a rebuild computes other bits of its own
            return {"probe/exp": np.array([1.0, 2.25], np.float32)}
        return CURRENT_BITS


def run(lab: Lab, golden=GOLDEN, current=CURRENT, **kw):
    return bisect(fingerprint(golden), fingerprint(current), GOLDEN_BITS, CURRENT_BITS,
                  run=lab.run, build=lab.build, **kw)


def test_the_tensorflow_release_is_confirmed_and_the_rest_ruled_out():
    lab = Lab(lambda p: p.get("tensorflow-cpu") == "2.20.0")
    result = run(lab)
    assert result.confirmed == ("tensorflow",)
    assert set(result.ruled_out) == {"numpy", "jax", "scipy"}
    assert result.trials[0].label == "the whole golden package set"
    assert result.trials[0].outcome == "reproduced"
    whole = lab.built[0]
    assert whole["tensorflow-cpu"] == "2.20.0" and "tensorflow" not in whole
    assert whole["numpy"] == "2.3.5" and "rich" not in whole  # rich moves no number
    # Four groups: halves first (tensorflow+numpy reproduced: jax and scipy ruled out at once),
    # then the two left one by one; five environments in all, not 1 + 4.
    assert [t.label for t in result.trials] == [
        "the whole golden package set", "tensorflow and numpy restored", "tensorflow restored",
        "numpy restored"]
    assert [t.outcome for t in result.trials] == ["reproduced", "reproduced", "reproduced",
                                                  "unchanged"]


def test_a_half_of_one_group_is_judged_by_its_own_trial_never_tried_twice():
    """Three groups (an extra runtime installed beside, as the onnx extra's onnxruntime): the
    first half is TensorFlow alone; its trial gave the golden bits back, so it is confirmed by
    that trial and the other half ruled out, with no second environment for TensorFlow alone."""
    golden = {k: v for k, v in GOLDEN.items() if k not in ("scipy", "jax")}
    current = {k: v for k, v in CURRENT.items() if k not in ("scipy", "jax")}
    lab = Lab(lambda p: p.get("tensorflow-cpu") == "2.20.0")
    result = run(lab, golden=golden, current={**current, "onnxruntime": "1.32.0"})
    assert [t.label for t in result.trials] == ["the whole golden package set",
                                                "tensorflow restored"]
    assert result.confirmed == ("tensorflow",)
    assert set(result.ruled_out) == {"numpy", "onnxruntime"}
    assert len(lab.built) == 2


def test_restoring_everything_changes_nothing_rules_every_group_out_at_once():
    lab = Lab(lambda p: False)
    result = run(lab)
    assert result.confirmed == () and set(result.ruled_out) == {"tensorflow", "numpy", "jax",
                                                                "scipy"}
    assert len(result.trials) == 1


def test_one_group_is_judged_by_the_whole_set():
    golden = {**CURRENT, "numpy": "2.3.5"}
    result = run(Lab(lambda p: p["numpy"] == "2.3.5"), golden=golden)
    assert result.confirmed == ("numpy",) and len(result.trials) == 1


def test_a_failed_build_is_a_finding_not_a_crash():
    result = run(Lab(lambda p: True, fails="failed to fetch https://x: connection refused"))
    assert result.confirmed == () and result.ruled_out == ()
    assert result.failure == ("the environment could not be built: failed to fetch https://x:"
                              " connection refused")
    assert result.trials[0].outcome == "failed"


def test_a_rebuild_that_computes_bits_of_its_own_is_judged_against_a_control():
    lab = Lab(lambda p: p.get("tensorflow-cpu") == "2.20.0" and p["numpy"] == "2.3.5",
              rebuilt_differs=True)
    golden = {**GOLDEN, "scipy": CURRENT["scipy"], "jax": CURRENT["jax"]}
    result = run(lab, golden=golden)
    labels = [t.label for t in result.trials]
    assert "control: this environment's own versions, rebuilt" in labels
    control = next(t for t in result.trials if t.label.startswith("control"))
    assert "results are judged against this control" in control.detail
    # Only both together give the golden bits: neither alone is confirmed, and neither is ruled
    # out although each alone changed nothing against the control; the pair is confirmed.
    assert result.confirmed == () and result.ruled_out == ()
    assert result.together == ("tensorflow", "numpy")
    [pair] = [c for c in apply_bisection([], result)]
    assert pair.change == "tensorflow + numpy restored together"
    assert pair.confidence == "confirmed"


def test_a_hostile_golden_version_is_never_installed():
    golden = {**CURRENT, "numpy": "2.3.5; rm -rf /"}
    lab = Lab(lambda p: True)
    result = run(lab, golden=golden)
    assert lab.built == [] and result.trials == ()
    assert "numpy" in result.refused and "not a plain public release" in result.refused["numpy"]
    assert result.failure.startswith("no package change can be restored")


def test_results_are_cached_by_environment_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    golden = {**CURRENT, "numpy": "2.3.5"}

    def build(pins):
        folder = tmp_path / "envaudit" / "envs" / pins.key()
        folder.mkdir(parents=True, exist_ok=True)  # as ensure_env leaves a built environment
        return pins

    calls = []

    def counted(pins, out):
        calls.append(pins)
        return GOLDEN_BITS

    first = bisect(fingerprint(golden), fingerprint(CURRENT), GOLDEN_BITS, CURRENT_BITS,
                   run=counted, build=build, result_key="k1")
    again = bisect(fingerprint(golden), fingerprint(CURRENT), GOLDEN_BITS, CURRENT_BITS,
                   run=counted, build=build, result_key="k1")
    assert len(calls) == 1 and first.confirmed == again.confirmed == ("numpy",)
    assert again.trials[0].cached and not first.trials[0].cached
    bisect(fingerprint(golden), fingerprint(CURRENT), GOLDEN_BITS, CURRENT_BITS,
           run=counted, build=build, result_key="another machine")
    assert len(calls) == 2


def test_causes_take_what_the_bisection_showed():
    result = run(Lab(lambda p: p.get("tensorflow-cpu") == "2.20.0"))
    causes = [Cause("tensorflow.version: '2.20.0' -> '2.21.0'", "likely", ("release",),
                    "tensorflow.version", ("packages.tensorflow-cpu.version",)),
              Cause("packages.numpy.version: '2.3.5' -> '2.4.6'", "likely", ("numpy",),
                    "packages.numpy.version"),
              Cause("env.X: unset -> '1'", "possible", ("x",), "env.X")]
    updated = apply_bisection(causes, result)
    by_path = {c.path: c for c in updated}
    assert by_path["tensorflow.version"].confidence == "confirmed"
    assert by_path["packages.numpy.version"].confidence == "ruled_out"
    assert by_path["env.X"].confidence == "possible"
    assert updated[0].path == "tensorflow.version" and updated[-1].confidence == "ruled_out"
    tf_evidence = by_path["tensorflow.version"].evidence
    assert any("tensorflow-cpu==2.20.0" in e and "reproduced the golden bits" in e
               for e in tf_evidence)
    assert "ruled out by environment bisection: restoring it changes nothing" in \
        by_path["packages.numpy.version"].evidence
    # Groups without a ranked cause of their own (jax, scipy here) join as causes.
    assert {c.change.split(":")[0] for c in updated if c.path is None} >= {"jax", "scipy"}


def test_the_no_rerun_placeholder_goes_by_its_kind_not_by_its_words():
    """What no re-run could do, the bisection did: the placeholder saying so is dropped because
    its kind says it is one; the same words as a plain finding are kept."""
    result = run(Lab(lambda p: p.get("tensorflow-cpu") == "2.20.0"))
    quoted = str(NO_RERUN_PACKAGE)  # the same sentence, held as a finding
    assert (kind_of(NO_RERUN_PACKAGE), kind_of(quoted)) == ("no_rerun", "finding")
    cause = Cause("tensorflow.version: '2.20.0' -> '2.21.0'", "likely",
                  ("release", NO_RERUN_PACKAGE, quoted), "tensorflow.version",
                  ("packages.tensorflow-cpu.version",))
    [updated] = [c for c in apply_bisection([cause], result) if c.path == "tensorflow.version"]
    assert updated.confidence == "confirmed"
    assert updated.evidence[:2] == ("release", quoted)
    assert sum(e == NO_RERUN_PACKAGE for e in updated.evidence) == 1


@pytest.mark.parametrize("section", [{"available": False, "reason": "x"}, "garbage", None])
def test_an_unreadable_packages_section_bisects_nothing(section):
    golden = copy.deepcopy(fingerprint(GOLDEN).data)
    golden["packages"] = section
    result = bisect(Fingerprint(golden), fingerprint(CURRENT), GOLDEN_BITS, CURRENT_BITS,
                    run=Lab(lambda p: True).run, build=Lab(lambda p: True).build)
    assert result.trials == () and result.failure is None


def test_every_format_shows_the_package_sets_tried_and_what_cannot_affect():
    import dataclasses
    import io
    import json
    import xml.etree.ElementTree as ET

    from rich.console import Console
    from test_render_check import make_result

    from envaudit.attribute.types import Unreachable
    from envaudit.render import check_json, check_junit, check_md
    from envaudit.render.check_text import render

    bisection = run(Lab(lambda p: p.get("tensorflow-cpu") == "2.20.0"))
    result = dataclasses.replace(
        make_result(), bisection=bisection,
        causes=tuple(apply_bisection(list(make_result().causes), bisection)),
        cannot_affect=(Unreachable("tensorflow.build_info.cuda_version: unset -> '12.5.1'",
                                   "tensorflow.build_info.cuda_version",
                                   "cannot affect: ran on CPU (...)"),))
    console = Console(width=200, no_color=True, record=True, file=io.StringIO())
    console.print(render(result))
    text = console.export_text()
    assert "Environment bisection (uv):" in text
    assert "the whole golden package set [reproduced]:" in text and "numpy==2.3.5" in text
    assert "[ruled_out]" in text and "Cannot affect these results (not ranked):" in text
    md = check_md.render(result)
    assert "**Environment bisection (uv)**" in md and "| the whole golden package set |" in md
    report = json.loads(check_json.render(result))
    assert report["bisection"]["confirmed"] == ["tensorflow"]
    assert "tensorflow-cpu==2.20.0" in report["bisection"]["trials"][0]["pins"]
    assert "changes" not in report["bisection"]  # the groups' detail stays out of the JSON
    assert report["cannot_affect"][0]["path"] == "tensorflow.build_info.cuda_version"
    junit = ET.fromstring(check_junit.render(result).encode())
    causes = next(c for c in junit.iter("testcase") if c.get("name") == "causes")
    out = causes.find("system-out").text
    assert "bisection: the whole golden package set [reproduced]" in out
    assert "cannot affect: tensorflow.build_info.cuda_version" in out
