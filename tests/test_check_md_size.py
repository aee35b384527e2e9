"""The check's Markdown fits a pull-request comment (GitHub refuses a body over 65,536
characters): a table of many arrays is folded, a report too long for a comment lists only what
differs with a line counting the rest, and what is still too long is cut with a line saying so and
where the whole report is. The results are built in Python (``make_result`` of the canary and of
a user's model, with real comparisons of real arrays), grown to sizes a real check reaches.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from test_render_check import make_result as canary_result
from test_render_user_model import _array
from test_render_user_model import make_result as model_result

from envaudit.attribute.types import Cause
from envaudit.compare.types import FirstDivergence, ModeResult
from envaudit.fingerprint import Fingerprint, capture
from envaudit.fingerprint.types import Change
from envaudit.redact_result import shareable
from envaudit.render import check_md
from envaudit.render.comment_size import COMMENT_LIMIT, TARGET, cut

MODES = ("eager", "graph", "xla")
FULL = "`envaudit check --format json` (or `--format html`)"


@pytest.fixture(scope="module")
def here() -> Fingerprint:
    return capture()


def balanced(md: str) -> bool:
    return md.count("<details>") == md.count("</details>")


def drifted_canary(arrays_per_mode: int, here: Fingerprint, changes: int = 500):
    """A drifted canary check whose every mode has ``arrays_per_mode`` differing arrays, with
    ``changes`` package changes."""
    base = canary_result()
    moved = base.stages[2]  # "hidden": rounding noise, really measured
    stages = tuple(dataclasses.replace(moved, name=f"{mode}_stage_{i:04d}", mode=mode)
                   for mode in MODES for i in range(arrays_per_mode))
    first = {m: FirstDivergence(f"{m}_stage_0000", 0, (), ()) for m in MODES}
    packages = tuple(Change(f"packages.lib-{i:04d}", "1.0", "1.1", "packages", False)
                     for i in range(changes))
    return dataclasses.replace(
        base, stages=stages, first_divergence=first["eager"],
        modes=tuple(ModeResult(m, "drift", first[m], base.detections) for m in MODES),
        fingerprint_changes=base.fingerprint_changes + packages, current_fingerprint=here)


def test_a_check_of_a_few_arrays_is_whole_and_unfolded(here):
    result = dataclasses.replace(canary_result(), current_fingerprint=here)
    md = check_md.render(result)
    assert "`hidden`" in md and "`logits`" in md and "`decode`" in md  # every stage listed
    assert "arrays, " not in md and "not listed" not in md and "Cut here" not in md


def test_a_drifted_canary_with_many_differing_arrays_fits_a_comment(here):
    result = drifted_canary(300, here)
    whole = check_md._document(result, compact=False)
    assert len(whole) > COMMENT_LIMIT  # too long as it was
    md = check_md.render(result)
    assert len(md) <= TARGET < COMMENT_LIMIT and balanced(md)
    assert result.headline in md and "### Causes" in md and "Cut here" not in md
    for mode in MODES:
        assert "<details><summary>300 arrays, 300 not bit-identical</summary>" in md
        assert f"`{mode}_stage_0039`" in md and f"`{mode}_stage_0040`" not in md
    assert md.count(f"_260 more arrays that differ not listed here; all of them: {FULL}._") == 3
    assert f"_463 more changes not listed here; all of them: {FULL}._" in md
    # the summary of this environment comes with it
    assert "- **Devices TensorFlow would use:**" in md


def test_what_even_a_compact_report_cannot_hold_is_cut_with_a_line_saying_so(here):
    evidence = tuple(f"re-run {i} of a long series put the setting back" * 4 for i in range(3))
    causes = tuple(Cause(f"env.OMP_VAR_{i}: unset -> '{i}'", "possible", evidence)
                   for i in range(400))
    result = dataclasses.replace(drifted_canary(100, here, changes=10), causes=causes)
    md = check_md.render(result)
    assert len(md) <= TARGET and balanced(md)
    assert result.headline in md and "- **CPU kernels:**" in md  # the top is kept
    last = md.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"_Cut here: this report has [\d,]+ characters, more than a pull-request"
                        r" comment holds \(65,536\); the rest from within “Causes” on is left"
                        rf" out\. The whole report: {re.escape(FULL)}\._", last), last
    assert "env.OMP_VAR_399" not in md


def test_a_user_model_with_many_layers_fits_a_comment():
    layers = tuple(_array(f"layer.block{i:04d}", "rounding" if i % 500 == 7 else "identical",
                          7.4e-7 if i % 500 == 7 else 0.0, role="layer") for i in range(3000))
    base = model_result()
    stages = (base.stages[0], *layers, *base.stages[-2:])
    md = check_md.render(dataclasses.replace(base, stages=stages))
    assert len(md) <= TARGET and balanced(md)
    assert "<details><summary>3003 arrays, 8 not bit-identical</summary>" in md
    assert "_2995 bit-identical arrays not listed._" in md
    listed = re.findall(r"`(layer\.block\d+)`", md)
    assert listed == [f"layer.block{i:04d}" for i in range(7, 3000, 500)]
    assert "| within tolerance |" in md  # the status words every format uses


def test_a_user_model_of_some_layers_is_folded_but_whole():
    layers = tuple(_array(f"layer.l{i:02d}", role="layer") for i in range(20))
    base = model_result()
    md = check_md.render(dataclasses.replace(base, stages=(*base.stages, *layers)))
    assert "<details><summary>25 arrays, 3 not bit-identical</summary>" in md
    assert all(f"`layer.l{i:02d}`" in md for i in range(20)) and "not listed" not in md


def test_the_summary_in_the_check_is_redacted_with_the_result(here):
    data = {**here.data, "env": {**here.data["env"], "NCCL_COMM_ID": "trainer-7.example.com:5555"}}
    result = dataclasses.replace(canary_result(), current_fingerprint=Fingerprint(data))
    md = check_md.render(shareable(result))
    line = next(x for x in md.splitlines() if x.startswith("- **Numerics variables set:**"))
    assert "NCCL_COMM_ID=[host]:5555" in line and "trainer-7" not in md


def test_cut_closes_what_it_opened_and_leaves_a_short_document_alone():
    short = "## a\n\ntext\n"
    assert cut(short, FULL) == short
    long = "\n".join(["## top", "", "<details><summary>rows</summary>", "",
                      *(f"| {i} | row |" for i in range(20_000)), "", "</details>", ""])
    got = cut(long, FULL, target=5_000)
    assert len(got) <= 5_000 and balanced(got)
    assert "the rest from within “top” on is left out" in got
