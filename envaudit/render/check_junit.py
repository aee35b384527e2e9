"""``envaudit check --format junit``: JUnit XML for CI dashboards (Jenkins, GitLab, GitHub).

One ``<testsuite name="envaudit">`` with one ``<testcase>`` per stage (classname
``envaudit.stages``, pipeline order; for a user's model one per array, inputs then layers then
outputs), one per training step and mode (classname ``envaudit.training.MODE``, name ``stepK``: a
step's arrays pass or fail together), one per converted mode's conversion gap
(``envaudit.conversion``) and one per runtime record (``envaudit.runtimes``), which always pass
and say what they found in ``<system-out>`` (a finding, not a gate: the converted mode's own
arrays gate), one for the detections (none for a user model without detection outputs), one for
the probes and, for a user's model, one for the precision witness (``envaudit.precision``).
Failures mirror the exit code, so a dashboard and the pipeline gate never disagree, and they point
at what is wrong rather than at everything that is not bit-identical. What fails is not decided
here: it is ``fails_gate`` of each array and of the detections (``compare/types.py``), the rule
the verdict and so the exit code are built on:
- a stage (or the probes) fails when its status (decided in ``compare/``) is changed, not run
  or lost precision, and, with ``--strict``, whenever it is not bit-identical. A difference at the
  noise floor, or within the tolerance the user gave for an output, passes, with a
  ``<system-out>`` saying it is not bit-identical. So a drift verdict that comes only from changed
  detections fails the detections case, not the stages that merely rounded differently; every
  drift or precision_loss verdict has at least one failure, because ``classify`` calls drift only
  when an array is beyond noise or the detections changed;
- the detections fail when a box was added, removed or changed class, or, with ``--strict``, when
  any score or box moved;
- the precision witness fails when probes lost precision here (which makes the verdict
  precision_loss); fp32 merely not shown at full precision (no probe measured, or the golden was
  no better) is said in its ``<system-out>``, as it does not change the exit code.
The verdict, exit code and fingerprint ids (and a user model's identity, how it ran and what the
verdict rests on) are ``<properties>`` of the suite; a golden recorded on another machine or build
is said in the property ``recorded_elsewhere`` and the suite's ``<system-out>``. Built with
``xml.etree`` (which escapes markup: a stranger's ``<img>`` or ``]]>`` stays text), and every
character XML cannot carry, or a terminal would act on, is replaced (``escape.for_xml``), so the
output is always well-formed.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from envaudit.compare.types import ArrayStatus, DetectionChange, TensorComparison
from envaudit.render.escape import for_xml
from envaudit.render.formatting import (
    class_label,
    class_names,
    growth,
    model_identity,
    model_outputs,
    model_run,
    number,
    percent,
    witness_sentence,
)
from envaudit.result import CheckResult

# The failure type of each status a check does not accept (every status outside
# ``compare.types.ACCEPTED_STATUSES``; the status is decided in compare/).
FAILURE_TYPE: dict[ArrayStatus, str] = {
    "precision_loss": "precision_loss", "changed": "drift", "not_run": "not_run"}
# The moved arrays a training step's case lists (in computing order); a step of a large model
# moves hundreds, and 100 steps of them would bury the dashboard.
STEP_DETAIL = 10


def render(result: CheckResult) -> str:
    """The check result as a JUnit XML document (UTF-8 declaration, ends in a newline)."""
    suite = ET.Element("testsuite", name="envaudit")
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", result.verdict), ("exit_code", str(result.exit_code)),
                        ("strict", str(result.strict).lower()), ("headline", result.headline),
                        ("golden", result.golden_path),
                        ("golden_fingerprint_id", result.golden_fingerprint_id),
                        ("current_fingerprint_id", result.current_fingerprint_id)):
        ET.SubElement(props, "property", name=name, value=value)
    if result.recorded_elsewhere is not None:
        ET.SubElement(props, "property", name="recorded_elsewhere",
                      value=result.recorded_elsewhere.line)
    if result.offline is not None:
        for name, value in (("compared_with", result.offline.current_path),
                            ("compared_offline", "; ".join(result.offline.said))):
            ET.SubElement(props, "property", name=name, value=value)
    m = result.subject.model
    if m is not None:
        for name, value in (("workload", result.subject.kind), ("model", model_identity(m)),
                            ("model_run", model_run(m)), ("model_outputs", model_outputs(m)),
                            ("basis", result.subject.basis)):
            ET.SubElement(props, "property", name=name, value=value)
    noun = "stage" if m is None else "array"
    _digest_cases(suite, result)
    for stage in result.pipeline_stages:
        _stage_case(suite, stage, result.strict, bool(result.modes), noun)
    _training_cases(suite, result)
    _conversion_cases(suite, result)
    if not result.digests_only:  # two check JSONs hold no detections or probes by value
        if m is None or m.detections is not None:
            _detections_case(suite, result)
        _probes_case(suite, result)
    _causes_case(suite, result)
    _witness_case(suite, result)
    if result.recorded_elsewhere is not None:  # after the cases, where the schema puts it
        ET.SubElement(suite, "system-out").text = result.recorded_elsewhere.line
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", _seconds(result.timings.get("total", 0.0)))
    ET.indent(suite)
    # Control characters from a path or an environment value, and lone surrogates (a non-UTF-8
    # byte in a path), cannot be XML: replaced in the serialized document, where nothing is missed.
    body = for_xml(ET.tostring(suite, encoding="unicode"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _digest_cases(suite: ET.Element, result: CheckResult) -> None:
    """Two check JSONs: one case per mode and one for the probes (classname
    ``envaudit.digests``), failing where arrays differ and the comparison fails its gate
    (``DigestComparison.fails_gate``); a digest has no size, so the message says only how many
    differ and which first."""
    digests = result.offline.digests if result.offline else None
    if digests is None:
        return
    for g in digests.groups:
        case = ET.SubElement(suite, "testcase", classname="envaudit.digests", name=g.name,
                             time="0")
        if not g.differing:
            continue
        what = f"{g.differing} of {g.compared} arrays differ by digest, first '{g.first}'; " + (
            f"B's own check measured them: {digests.current_verdict.replace('_', ' ')}"
            if digests.magnitude_known else "by how much needs the arrays")
        if digests.fails_gate(result.strict):
            ET.SubElement(case, "failure", message=what,
                          type="drift" if digests.fails_gate() else "not_identical").text = what
        else:
            ET.SubElement(case, "system-out").text = what


def _stage_case(suite: ET.Element, s: TensorComparison, strict: bool, modes: bool,
                noun: str = "stage") -> None:
    classname = f"envaudit.stages.{s.mode}" if modes else "envaudit.stages"
    case = ET.SubElement(suite, "testcase", classname=classname, name=s.name, time="0")
    if s.status == "identical":
        return
    detail = _describe(s)
    beyond = f" beyond the tolerance you gave ({s.tolerance})" if s.tolerance else ""
    what = {"precision_loss": "lost precision", "changed": f"drifted{beyond}",
            "not_run": "was not run"}
    if s.fails_gate():
        ET.SubElement(case, "failure", message=f"{noun} '{s.name}' {what[s.status]}: {detail}",
                      type=FAILURE_TYPE[s.status]).text = detail
    elif s.fails_gate(strict):
        ET.SubElement(case, "failure", message=f"{noun} '{s.name}' is not bit-identical"
                      f" (--strict): {detail}", type="not_identical").text = detail
    elif s.status == "tolerated":
        ET.SubElement(case, "system-out").text = (
            f"not bit-identical, within the tolerance you gave: {s.tolerance}; {detail}"
        )
    else:
        ET.SubElement(case, "system-out").text = (
            f"not bit-identical, at the rounding-noise floor: {detail}"
        )


def _training_cases(suite: ET.Element, result: CheckResult) -> None:
    """One case per mode per training step (classname ``envaudit.training.MODE``, name
    ``stepK``), failing exactly when one of the step's arrays fails the gate; a mode's step
    arrays without a step table (a mode whose training could not be compared) are one case."""
    report = result.training
    steps = [a for a in result.stages if a.role == "step"]
    if report is None and not steps:
        return
    tabled = set()
    for mode in report.modes if report is not None else ():
        tabled.add(mode.mode)
        by_step = mode.step_arrays(result.stages)
        for step in mode.steps:
            arrays = by_step.get(step.step, ())
            first = f", first moved {step.first_moved} ({step.first_moved_part})" \
                if step.first_moved else ""
            summary = (f"training step {step.step} ({mode.mode} mode): {step.moved} of"
                       f" {step.arrays} arrays moved{first}")
            _step_case(suite, f"envaudit.training.{mode.mode}", f"step{step.step}", arrays,
                       summary, result.strict)
    for mode in dict.fromkeys(a.mode for a in steps if a.mode not in tabled):
        arrays = tuple(a for a in steps if a.mode == mode)
        _step_case(suite, f"envaudit.training.{mode}", "steps", arrays,
                   f"training steps ({mode} mode): not compared step by step", result.strict)


def _step_case(suite: ET.Element, classname: str, name: str,
               arrays: Sequence[TensorComparison], summary: str, strict: bool) -> None:
    """A case over a step's arrays: its failure is theirs (``fails_gate``), its detail the
    arrays that moved."""
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    moved = [a for a in arrays if not a.identical]
    if not moved:
        return
    detail = "\n".join(f"{a.name}: {a.status}, {_describe(a)}" for a in moved[:STEP_DETAIL])
    if len(moved) > STEP_DETAIL:
        detail += f"\n... and {len(moved) - STEP_DETAIL} more arrays that moved"
    failing = [FAILURE_TYPE[a.status] for a in moved if a.fails_gate()]
    if failing:
        worst = "precision_loss" if "precision_loss" in failing else failing[0]
        ET.SubElement(case, "failure", message=summary, type=worst).text = detail
    elif any(a.fails_gate(strict) for a in moved):
        ET.SubElement(case, "failure", message=summary + " (--strict)",
                      type="not_identical").text = detail
    else:
        ET.SubElement(case, "system-out").text = (
            f"{summary}; all at the rounding-noise floor\n{detail}")


def _conversion_cases(suite: ET.Element, result: CheckResult) -> None:
    """One passing case per converted mode's conversion gap (classname ``envaudit.conversion``)
    and per runtime record (``envaudit.runtimes``), said in ``<system-out>``: the gap is a
    finding about the converted model, not a gate, and the converted mode's own arrays already
    have their cases, which fail as the exit code does."""
    for gap in result.subject.conversion:
        case = ET.SubElement(suite, "testcase", classname="envaudit.conversion", name=gap.mode,
                             time="0")
        moved = [a for a in gap.arrays if not a.identical]
        detail = [f"{a.name}: {a.status}, {_describe(a)}" for a in moved[:STEP_DETAIL]]
        if len(moved) > STEP_DETAIL:
            detail.append(f"... and {len(moved) - STEP_DETAIL} more arrays that differ")
        ET.SubElement(case, "system-out").text = "\n".join([gap.words, *detail])
    for check in result.subject.runtimes:
        case = ET.SubElement(suite, "testcase", classname="envaudit.runtimes", name=check.mode,
                             time="0")
        ET.SubElement(case, "system-out").text = check.line


def _detections_case(suite: ET.Element, result: CheckResult) -> None:
    d = result.detections
    case = ET.SubElement(suite, "testcase", classname="envaudit.detections", name="detections",
                         time="0")
    summary = (f"golden {d.golden}, current {d.current}, matched {d.matched}, added {d.added}, "
               f"removed {d.removed}, class changed {d.class_changed}, max score delta "
               f"{_num(d.max_score_delta)}, min IoU {_num(d.min_iou)}")
    names = class_names(result.subject.model)
    lines = [summary] + [_change_line(c, names) for c in d.changes if c.kind != "matched"]
    if d.fails_gate():
        fragile = sum(1 for c in d.changes if c.expected_fragility)
        message = (f"detections changed: {d.added} added, {d.removed} removed, "
                   f"{d.class_changed} changed class ({fragile} expected fragility)")
        ET.SubElement(case, "failure", message=message, type="detections").text = "\n".join(lines)
    elif d.fails_gate(result.strict):
        ET.SubElement(case, "failure", message="detections moved (--strict): " + summary,
                      type="detections").text = summary
    else:
        ET.SubElement(case, "system-out").text = "\n".join(lines)


def _probes_case(suite: ET.Element, result: CheckResult) -> None:
    case = ET.SubElement(suite, "testcase", classname="envaudit.probes", name="probes", time="0")
    changed = [p for p in result.probes if not p.identical]
    if not changed:
        ET.SubElement(case, "system-out").text = (
            f"all {len(result.probes)} probes bit-identical" if result.probes
            else "no probes recorded"
        )
        return
    families = ", ".join(result.changed_probe_families) or ", ".join(
        sorted({p.family for p in changed}))
    detail = "\n".join(f"{p.name} ({p.family}): {_describe(p)}" for p in changed)
    message = f"{len(changed)} of {len(result.probes)} probes differ; families: {families}"
    failing = [FAILURE_TYPE[p.status] for p in changed if p.fails_gate()]
    if failing:
        worst = "precision_loss" if "precision_loss" in failing else failing[0]
        ET.SubElement(case, "failure", message=message, type=worst).text = detail
    elif any(p.fails_gate(result.strict) for p in changed):
        ET.SubElement(case, "failure", message=message + " (--strict)",
                      type="not_identical").text = detail
    else:
        ET.SubElement(case, "system-out").text = (
            f"{message}; all at the rounding-noise floor\n{detail}"
        )


def _witness_case(suite: ET.Element, result: CheckResult) -> None:
    """Whether fp32 ran at full precision here: what a user model's precision verdict rests on."""
    w = result.subject.witness
    if w is None:
        return
    case = ET.SubElement(suite, "testcase", classname="envaudit.precision", name="witness",
                         time="0")
    sentence = witness_sentence(w)
    if not w.full_precision and w.lossy:
        ET.SubElement(case, "failure", message=sentence, type="precision_loss").text = sentence
    else:
        ET.SubElement(case, "system-out").text = sentence


def _causes_case(suite: ET.Element, result: CheckResult) -> None:
    """The ranked causes (and what cannot affect the results) as the output of one passing
    case: a cause explains a finding, the array cases already fail for it."""
    if not result.causes and not result.cannot_affect and result.bisection is None:
        return
    case = ET.SubElement(suite, "testcase", classname="envaudit.causes", name="causes", time="0")
    lines = []
    for i, cause in enumerate(result.causes, 1):
        lines.append(f"{i}. [{cause.label}] {cause.change}")
        lines += [f"   - {e}" for e in cause.evidence]
    lines += [f"cannot affect: {u.change} ({u.reason})" for u in result.cannot_affect]
    if result.bisection is not None:
        lines += [f"bisection: {t.label} [{t.outcome}]: {', '.join(t.pins)}: {t.detail}"
                  for t in result.bisection.trials]
    ET.SubElement(case, "system-out").text = "\n".join(lines)


def _change_line(c: DetectionChange, names: Sequence[str]) -> str:
    if c.kind == "class_changed":
        what = f"{class_label(c.golden_class, names)} -> {class_label(c.current_class, names)}"
    else:
        what = class_label(c.golden_class if c.golden_class is not None else c.current_class,
                           names)
    score = c.golden_score if c.golden_score is not None else c.current_score
    fragile = ", expected fragility" if c.expected_fragility else ""
    return (f"{c.kind.replace('_', ' ')}: image {c.image}, {what}, score {score:.4f} "
            f"(margin {_num(c.margin)}{fragile})")


def _describe(c: TensorComparison) -> str:
    text = (f"max_abs {_num(c.max_abs)}, max_rel {_num(c.max_rel)} of scale, "
            f"{percent(c.mismatch_fraction)} of elements differ")
    if c.golden_error is not None or c.current_error is not None:
        text += (f", error vs float64 {_num(c.golden_error)} -> {_num(c.current_error)}")
        if c.growth_shown is not None:
            text += f" ({growth(c.growth_shown)})"
    return text


def _seconds(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "0"


def _num(value: float | None) -> str:
    return number(value, 2, missing="n/a")
