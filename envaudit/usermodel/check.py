"""A check of a user model: re-run it on the recorded inputs, compare, explain, confirm.

The model is found (``locate``), proven to be the recorded one by its SHA-256, and run the way it
was recorded; its outputs and layers are compared with the golden arrays bit for bit (tolerances,
when the user gives them, decide which differences are accepted), detections are matched by IoU
when the outputs hold detections, and the canary probes run in the same process as the precision
witness. Causes are ranked and confirmed exactly as for the canary: a confirmation re-run is a
fresh process that runs this model with one setting put back (``attribute/confirm.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from envaudit.attribute.confirm import apply_outcomes, limits, plan, run_experiments
from envaudit.attribute.model import Cause
from envaudit.attribute.rank import rank_causes
from envaudit.compare import localize
from envaudit.compare.detections import match_detections
from envaudit.compare.model import (
    DetectionDiff,
    FirstDivergence,
    ModeResult,
    PrecisionWitness,
    TensorComparison,
)
from envaudit.compare.noise import EQUIVALENT_MAX_REL_ULPS
from envaudit.compare.probes import compare_probes
from envaudit.compare.tensors import compare_arrays, tolerated
from envaudit.compare.verdict import classify, exit_code, model_headline, worst
from envaudit.compare.witness import precision_witness
from envaudit.errors import EnvauditError
from envaudit.result import CheckResult
from envaudit.store import GoldenBundle
from envaudit.usermodel.detections import detections_from_outputs, shape_problem
from envaudit.usermodel.files import location_problem, model_digest, model_kind
from envaudit.usermodel.spec import DetectionNames, ModelInfo, Tolerances, require_outputs
from envaudit.workload.spec import PROBE_SPEC
from envaudit.workload.types import keyed_arrays

EMPTY_DETECTIONS = DetectionDiff(0, 0, 0, 0, 0, 0, 0.0, None, 0.0, (), 0.0)


def locate(info: ModelInfo, given: str | None) -> Path:
    """The model to run: ``given`` (the user's choice) or the recorded path, which must not be
    writable by anyone but this user and root; either must hash to the recorded SHA-256."""
    if given is not None:
        path = Path(given)
    else:
        recorded = info.path
        path = Path(os.path.expanduser(recorded) if recorded.startswith("~/") else recorded)
        if not path.is_absolute() or not path.exists():
            raise EnvauditError(f"the recorded model {recorded} is not there (moved, or recorded"
                                " on another machine); pass --model PATH to the model")
        unsafe = location_problem(path)
        if unsafe:
            raise EnvauditError(f"the recorded model path {recorded} is not safe to load from"
                                f" ({unsafe}); pass --model PATH to name the model yourself")
    kind = model_kind(path)
    if kind != info.kind:
        raise EnvauditError(f"{path} is a {kind.replace('_', ' ')} model, the golden was recorded"
                            f" from a {info.kind.replace('_', ' ')} model; pass --model PATH to"
                            " the recorded model")
    identity = model_digest(path)
    if identity.sha256 != info.sha256:
        raise EnvauditError(f"model {path} changed since the golden was recorded (sha256"
                            f" {identity.sha256[:16]}..., recorded {info.sha256[:16]}...);"
                            " restore it, pass --model PATH to the recorded copy, or re-record"
                            " with 'envaudit record --model ... --force'")
    return path


def check_model(
    bundle: GoldenBundle,
    *,
    model: str | None = None,
    tolerances: Tolerances | None = None,
    detections: DetectionNames | None = None,
    repeat: int = 1,
    confirm: bool = True,
    strict: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
) -> CheckResult:
    started = time.perf_counter()
    info = ModelInfo.from_manifest(bundle.manifest["workload"])
    golden = _validated(bundle, info)
    tolerances = tolerances or Tolerances()
    require_outputs((tolerances.per_output or {}), info.outputs, "--tolerance")
    names = detections or info.detections
    if detections is not None:
        require_outputs(detections.names(), info.outputs, "--detections")
        problem = shape_problem(detections, _outputs(golden))
        if problem:
            raise EnvauditError(f"--detections {problem}")
    path = locate(info, model)

    progress("loading the model")
    from envaudit.fingerprint import capture, diff
    from envaudit.fingerprint.redact import like
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.user_model import LoadedModel, run_model

    loaded = LoadedModel(path, info.kind, info.signature)
    feeds = _feeds(bundle, info)
    from envaudit.workload.assets import load_assets

    jpeg = load_assets().probe_jpeg
    from envaudit.workload.probes import run_probes

    runs, probe_runs = [], []
    for i in range(repeat):
        progress("running the model" + (f" ({i + 1}/{repeat})" if repeat > 1 else ""))
        runs.append(run_model(loaded, layers=info.layers, **feeds))
        probe_runs.append(run_probes(jpeg))
    run, probes_now = runs[0], probe_runs[0]
    workload_done = time.perf_counter()
    fingerprint = capture()
    changes = diff(bundle.fingerprint, like(bundle.fingerprint, bool(bundle.manifest.get(
        "redacted")), fingerprint))

    progress("comparing")
    nondeterminism = localize.nondeterminism(
        [keyed_arrays({info.mode: r.stages}, p) for r, p in zip(runs, probe_runs)]
    ) if repeat > 1 else None
    spread = nondeterminism.max_spread if nondeterminism else 0.0
    probes = compare_probes(bundle.probes, probes_now, spread)
    stages = _compare_stages(golden, run.stages, info, tolerances, spread)
    boxes = (match_detections(detections_from_outputs(names, _outputs(golden)),
                              detections_from_outputs(names, _outputs(run.stages)), noise=spread)
             if names else None)
    first = _first_divergence(stages)
    mode_result = ModeResult(info.mode, classify(stages, (), boxes), first,
                             boxes or EMPTY_DETECTIONS)
    verdict = worst([mode_result.verdict, classify((), probes)])
    witness = precision_witness(probes)
    families = tuple(sorted({p.family for p in probes if not p.identical}))
    moved = (info.mode,) if mode_result.verdict != "identical" else ()
    compared = time.perf_counter()

    causes: list[Cause] = []
    confirmation_ran = False
    if verdict != "identical":
        causes = rank_causes(changes, families, first.stage if first else None, (),
                             verdict == "precision_loss", moved_modes=moved,
                             checked_modes=(info.mode,))
        if confirm:
            experiments = plan(changes, bundle.fingerprint, fingerprint)
            golden_arrays = keyed_arrays({info.mode: golden}, bundle.probes)
            differing_now = sum(not a.identical for a in (*stages, *probes))
            with tempfile.TemporaryDirectory(prefix="envaudit-model-") as tmp:
                child = _child_spec(Path(tmp), path, info, feeds)
                outcomes = run_experiments(experiments, golden_arrays, progress,
                                           modes=(info.mode,), child=child)
            causes = apply_outcomes(causes, outcomes, differing_now,
                                    limits(changes, bundle.fingerprint, fingerprint))
            confirmation_ran = bool(experiments)
    top = f"{causes[0].change} ({causes[0].confidence})" if causes else None
    finished = time.perf_counter()
    notes = []
    if run.mode != info.mode:
        notes.append(f"the model was recorded in {info.mode} mode and ran in {run.mode} mode here"
                     " (Keras chose otherwise); its arrays are compared all the same")
    return CheckResult(
        verdict=verdict,
        exit_code=exit_code(verdict, strict),
        headline=model_headline(verdict, stages, probes, boxes, witness,
                                first_divergence=first.stage if first else None, top_cause=top),
        golden_path=str(bundle.path),
        golden_fingerprint_id=bundle.fingerprint.fingerprint_id,
        current_fingerprint_id=fingerprint.fingerprint_id,
        fingerprint_changes=tuple(changes),
        stages=stages,
        probes=probes,
        changed_probe_families=families,
        first_divergence=first,
        detections=boxes or EMPTY_DETECTIONS,
        causes=tuple(causes),
        nondeterminism=nondeterminism,
        confirmation_ran=confirmation_ran,
        strict=strict,
        modes=(mode_result,),
        moved_modes=moved,
        golden_schema=bundle.schema,
        notes=tuple(notes),
        workload="user-model",
        model=replace(info, detections=names),
        witness=witness,
        basis=_basis(info, tolerances, witness),
        golden_fingerprint=bundle.fingerprint,
        current_fingerprint=fingerprint,
        timings={
            "load": run.load_seconds,
            "workload": workload_done - started,
            "compare": compared - workload_done,
            "confirm": finished - compared,
            "total": finished - started,
        },
    )


# --- pieces -----------------------------------------------------------------------------------


def _validated(bundle: GoldenBundle, info: ModelInfo) -> Mapping[str, np.ndarray]:
    """The golden stages of the recorded mode, refused unless they are exactly the arrays the
    manifest describes (someone else's data: checked before anything is compared)."""
    where = f"golden bundle {bundle.path}"
    if bundle.modes != (info.mode,):
        raise _unusable(where, f"it holds modes {', '.join(bundle.modes)}, its model ran in"
                        f" {info.mode}")
    stages = bundle.stages_by_mode[info.mode]
    if tuple(stages) != info.stage_names():
        raise _unusable(where, "its arrays are not the inputs, layers and outputs its manifest"
                        " lists")
    for name, array in stages.items():
        if name.startswith("input.") and (array.dtype != np.uint8 or array.ndim != 4):
            raise _unusable(where, f"{name} is {array.dtype}{list(array.shape)}, decoded images"
                            " are uint8[N, H, W, C]")
    if tuple(bundle.probes) != tuple(PROBE_SPEC):
        raise _unusable(where, "its probes are not the probes this envaudit runs")
    for name, (dtype, shape) in PROBE_SPEC.items():
        array = bundle.probes[name]
        if array.dtype != dtype or array.shape != shape:
            raise _unusable(where, f"probe {name} is {array.dtype}{list(array.shape)}, expected"
                            f" {dtype}{list(shape)}")
    expected = ([f"image.{i}" for i in range(len(info.image_files))]
                if info.input_kind == "images" else sorted(info.inputs))
    if sorted(bundle.inputs) != sorted(expected):
        raise _unusable(where, "its inputs are not the ones its manifest lists")
    if info.input_kind == "images" and any(
            a.dtype != np.uint8 or a.ndim != 1 for a in bundle.inputs.values()):
        raise _unusable(where, "its image inputs are not encoded image bytes")
    if info.detections:
        problem = shape_problem(info.detections, _outputs(stages))
        if problem:
            raise _unusable(where, f"its detection outputs do not fit: {problem}")
    return stages


def _unusable(where: str, why: str) -> EnvauditError:
    return EnvauditError(f"{where} is unusable: {why}; re-record it with 'envaudit record"
                         " --model MODEL --inputs INPUTS --golden PATH --force'")


def _outputs(stages: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k[len("output."):]: v for k, v in stages.items() if k.startswith("output.")}


def _feeds(bundle: GoldenBundle, info: ModelInfo) -> dict[str, object]:
    """``run_model``'s keyword arguments for the recorded inputs."""
    if info.input_kind == "images":
        encoded = [bundle.inputs[f"image.{i}"].tobytes() for i in range(len(info.image_files))]
        return {"images": (info.image_files, encoded)}
    return {"arrays": dict(bundle.inputs)}


def _compare_stages(golden: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray],
                    info: ModelInfo, tolerances: Tolerances,
                    spread: float) -> tuple[TensorComparison, ...]:
    compared = []
    for c in compare_arrays("stage", golden, current, spread=spread, mode=info.mode):
        name = c.name[len("output."):] if c.name.startswith("output.") else None
        tolerance = tolerances.for_output(name) if name else None
        if tolerance is not None:
            c = tolerated(c, golden[c.name], current.get(c.name), tolerance.rtol,
                          tolerance.atol, tolerance.describe())
        compared.append(c)
    return tuple(compared)


def _first_divergence(stages: Sequence[TensorComparison]) -> FirstDivergence | None:
    """The first array, inputs then layers then outputs, that is not bit-identical. A user
    model's layers are not replayed one by one, so which of the later ones changed by themselves
    is not known (``changed_stages`` is empty)."""
    differing = [s for s in stages if not s.identical]
    if not differing:
        return None
    return FirstDivergence(
        stage=differing[0].name,
        index=[s.name for s in stages].index(differing[0].name),
        replay=(),
        changed_stages=(),
    )


def _child_spec(folder: Path, path: Path, info: ModelInfo,
                feeds: Mapping[str, object]) -> tuple[str, ...]:
    """The extra arguments of a re-run child that runs this model on these inputs: a spec and the
    inputs, written to ``folder`` (private to this process)."""
    inputs = folder / "inputs.npz"
    if "images" in feeds:
        names, encoded = feeds["images"]  # type: ignore[misc]
        np.savez(inputs, **{f"image.{i}": np.frombuffer(e, np.uint8)
                            for i, e in enumerate(encoded)})
    else:
        np.savez(inputs, **feeds["arrays"])  # type: ignore[arg-type]
    spec = {"kind": info.kind, "path": str(path.absolute()), "signature": info.signature,
            "layers": list(info.layers), "input_kind": info.input_kind,
            "files": list(info.image_files), "inputs": str(inputs)}
    spec_path = folder / "model.json"
    spec_path.write_text(json.dumps(spec))
    return (str(spec_path),)


def _basis(info: ModelInfo, tolerances: Tolerances, witness: PrecisionWitness) -> str:
    what = (f"{len(info.outputs)} output(s)" + (f" and {len(info.layers)} layer(s)"
                                               if info.layers else ""))
    accepted = (f"rounding noise (within {EQUIVALENT_MAX_REL_ULPS:g} unit roundoffs of each"
                " array's scale)"
                if not (tolerances.default or tolerances.per_output)
                else "the tolerances given, and rounding noise elsewhere")
    return (f"the model's {what} compared bit for bit with the golden, accepting {accepted};"
            f" precision judged by {witness.probes} canary probes against float64, since the"
            " model has no float64 twin")
