"""A check of a user model: re-run it on the recorded inputs, compare, explain, confirm.

The model is found (``locate``), proven to be the recorded one by its SHA-256, and run the way it
was recorded; its outputs and layers are compared with the golden arrays bit for bit (tolerances,
when the user gives them, decide which differences are accepted), detections are matched by IoU
when the outputs hold detections, and the canary probes run in the same process as the precision
witness. Causes are ranked and confirmed exactly as for the canary: a confirmation re-run is a
fresh process that runs this model with one setting put back (``attribute/confirm.py``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envaudit.attribute import reach
from envaudit.attribute.bisect import Bisection, apply_bisection, bisection_note, run_bisection
from envaudit.attribute.confirm import apply_outcomes, limits, plan, run_experiments
from envaudit.attribute.rank import rank_causes
from envaudit.attribute.types import Cause, Unreachable
from envaudit.compare import localize
from envaudit.compare.detections import match_detections
from envaudit.compare.noise import EQUIVALENT_MAX_REL_ULPS
from envaudit.compare.probes import compare_probes
from envaudit.compare.tensors import compare_arrays, digest, placed, tolerated
from envaudit.compare.types import (
    DetectionDiff,
    FirstDivergence,
    ModeResult,
    Nondeterminism,
    PrecisionWitness,
    TensorComparison,
)
from envaudit.compare.verdict import Verdict, classify, exit_code, model_headline, worst
from envaudit.compare.witness import precision_witness
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.result import CheckResult
from envaudit.store import GoldenBundle
from envaudit.usermodel.detections import detections_of, shape_problem
from envaudit.usermodel.golden import locate, outputs_by_image, validated
from envaudit.usermodel.spec import DetectionNames, ModelInfo, Tolerances, require_outputs
from envaudit.workload.types import keyed_arrays, keyed_devices

if TYPE_CHECKING:
    from envaudit.workload.user_model import UserModelRun

EMPTY_DETECTIONS = DetectionDiff(0, 0, 0, 0, 0, 0, 0.0, None, 0.0, (), 0.0)


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
    bisect: bool = False,
) -> CheckResult:
    """Check the model a user-model ``bundle`` recorded (``model``: where it is now), every bad
    input refused before TensorFlow is imported; ``bisect``: rebuild environments to confirm or
    rule out package changes."""
    started = time.perf_counter()
    info = ModelInfo.from_manifest(bundle.manifest["workload"])
    golden = validated(bundle, info)
    tolerances = tolerances or Tolerances()
    require_outputs((tolerances.per_output or {}), info.outputs, "--tolerance")
    if detections is not None:
        require_outputs(detections.names(), info.outputs, "--detections")
        for outputs in outputs_by_image(info, golden):
            problem = shape_problem(detections, outputs)
            if problem:
                raise EnvauditError(f"--detections {problem}")
        info = replace(info, detections=detections)
    path = locate(info, model)
    feeds = _feeds(bundle, info)

    runs, probe_runs, devices_now = _run(path, info, feeds, repeat, progress)
    workload_done = time.perf_counter()
    from envaudit.fingerprint import capture, diff
    from envaudit.fingerprint.redact import like

    with ThreadPoolExecutor(1) as pool:
        # Captured after every TensorFlow run (so the libraries it loaded are listed), while
        # the arrays are compared.
        captured = pool.submit(capture)
        progress("comparing")
        found = _compare(bundle, info, golden, runs, probe_runs, tolerances, devices_now)
        fingerprint = captured.result()
    changes = diff(bundle.fingerprint, like(bundle.fingerprint, bool(bundle.manifest.get(
        "redacted")), fingerprint))
    compared = time.perf_counter()

    causes: list[Cause] = []
    cannot_affect: list[Unreachable] = []
    bisection: Bisection | None = None
    confirmation_ran = False
    if found.verdict != "identical":
        first = found.mode.first_divergence
        devices = reach.evidence([a for a in (*found.stages, *found.probes) if not a.identical],
                                 bundle.fingerprint)
        cannot_affect = reach.unreachable(changes, devices)
        causes = rank_causes(changes, found.families, first.stage if first else None, (),
                             found.verdict == "precision_loss",
                             moved_modes=(info.mode,) if found.moved else (),
                             checked_modes=(info.mode,), devices=devices)
        golden_arrays = keyed_arrays({info.mode: golden}, bundle.probes)
        with tempfile.TemporaryDirectory(prefix="envaudit-model-") as tmp:
            child = _child_spec(Path(tmp), path, info, feeds)
            if confirm:
                experiments = plan(changes, bundle.fingerprint, fingerprint)
                differing_now = sum(not a.identical for a in (*found.stages, *found.probes))
                outcomes = run_experiments(experiments, golden_arrays, progress,
                                           modes=(info.mode,), child=child)
                causes = apply_outcomes(causes, outcomes, differing_now,
                                        limits(changes, bundle.fingerprint, fingerprint))
                confirmation_ran = bool(experiments)
            if bisect:
                bisection = run_bisection(
                    bundle.fingerprint, fingerprint, golden_arrays,
                    keyed_arrays({info.mode: runs[0].stages}, probe_runs[0]), (info.mode,),
                    extra=child, identity=_identity(info, bundle), progress=progress)
                causes = apply_bisection(causes, bisection)
    finished = time.perf_counter()
    confirmation_skipped = not confirm and found.verdict != "identical"
    return _result(bundle, info, found, causes, cannot_affect, changes, fingerprint, tolerances,
                   strict, (confirmation_ran, confirmation_skipped), bisection,
                   {k: digest(v) for k, v in keyed_arrays(
                       {info.mode: runs[0].stages}, probe_runs[0]).items()},
                   ran_in=runs[0].mode, timings={
                       "load": runs[0].load_seconds,
                       "workload": workload_done - started,
                       "compare": compared - workload_done,
                       "confirm": finished - compared,
                       "total": finished - started,
                   })


@dataclass(frozen=True)
class _Found:
    """What the comparison found, before any cause is ranked."""

    stages: tuple[TensorComparison, ...]
    probes: tuple[TensorComparison, ...]
    mode: ModeResult
    verdict: Verdict
    witness: PrecisionWitness
    families: tuple[str, ...]  # probe families that are not bit-identical
    nondeterminism: Nondeterminism | None

    @property
    def moved(self) -> bool:
        return self.mode.verdict != "identical"


def _run(path: Path, info: ModelInfo, feeds: Mapping[str, object], repeat: int,
         progress: Callable[[str], None]
         ) -> tuple[list[UserModelRun], list[dict], dict[str, str]]:
    """The model run ``repeat`` times on the recorded inputs, with the canary probes each time,
    and the device of every array of the first run (``keyed_arrays`` keys)."""
    progress("loading the model")
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.assets import load_probe_jpeg
    from envaudit.workload.probes import run_probes, run_probes_on_devices
    from envaudit.workload.user_model import LoadedModel, run_model

    jpeg = load_probe_jpeg()
    xla = info.mode == "xla"  # the xla.* probes witness XLA's code generation only
    runs, probe_runs = [], []
    # The probes' first run (their XLA compile above all) overlaps the model's loading: both
    # wait on TensorFlow more than on Python. Kernels split work by shape and thread count,
    # never by load, so running beside each other changes no bit (the repeat runs do not
    # overlap, and the tests check identical results run after run).
    with ThreadPoolExecutor(1) as pool:
        first_probes = pool.submit(run_probes_on_devices, jpeg, xla)
        loaded = LoadedModel(path, info.kind, info.signature)
        for i in range(repeat):
            progress("running the model" + (f" ({i + 1}/{repeat})" if repeat > 1 else ""))
            runs.append(run_model(loaded, layers=info.layers, **feeds))
            probe_runs.append(first_probes.result()[0] if i == 0 else run_probes(jpeg, xla))
    devices = keyed_devices({info.mode: runs[0].devices}, first_probes.result()[1])
    return runs, probe_runs, devices


def _compare(bundle: GoldenBundle, info: ModelInfo, golden: Mapping[str, np.ndarray],
             runs: Sequence[UserModelRun], probe_runs: Sequence[Mapping[str, np.ndarray]],
             tolerances: Tolerances, devices: Mapping[str, str]) -> _Found:
    nondeterminism = localize.nondeterminism(
        [keyed_arrays({info.mode: r.stages}, p) for r, p in zip(runs, probe_runs)]
    ) if len(runs) > 1 else None
    spread = nondeterminism.max_spread if nondeterminism else 0.0
    probes = placed(compare_probes(bundle.probes, probe_runs[0], spread), bundle.devices,
                    devices)
    current = runs[0].stages
    stages = placed(_compare_stages(golden, current, info, tolerances, spread), bundle.devices,
                    devices)
    names = info.detections
    boxes = (match_detections(detections_of(names, outputs_by_image(info, golden)),
                              detections_of(names, outputs_by_image(info, current)),
                              noise=spread)
             if names else None)
    mode = ModeResult(info.mode, classify(stages, (), boxes), _first_divergence(stages),
                      boxes or EMPTY_DETECTIONS)
    return _Found(
        stages=stages, probes=probes, mode=mode,
        verdict=worst([mode.verdict, classify((), probes)]),
        witness=precision_witness(probes),
        families=tuple(sorted({p.family for p in probes if not p.identical})),
        nondeterminism=nondeterminism)


def _result(bundle: GoldenBundle, info: ModelInfo, found: _Found, causes: Sequence[Cause],
            cannot_affect: Sequence[Unreachable], changes: Sequence[Change],
            fingerprint: Fingerprint, tolerances: Tolerances,
            strict: bool, confirmation: tuple[bool, bool], bisection: Bisection | None,
            digests: Mapping[str, str], ran_in: str,
            timings: Mapping[str, float]) -> CheckResult:
    first = found.mode.first_divergence
    top = f"{causes[0].change} ({causes[0].confidence})" if causes else None
    notes = list(filter(None, [bisection_note(bisection)]))
    if ran_in != info.mode:
        notes.append(f"the model was recorded in {info.mode} mode and ran in {ran_in} mode here"
                     " (Keras chose otherwise); its arrays are compared all the same")
    has_boxes = info.detections is not None
    return CheckResult(
        verdict=found.verdict,
        exit_code=exit_code(found.verdict, strict),
        headline=model_headline(found.verdict, found.stages, found.probes,
                                found.mode.detections if has_boxes else None, found.witness,
                                first_divergence=first.stage if first else None, top_cause=top),
        golden_path=str(bundle.path),
        golden_sha256=str(bundle.manifest["manifest_sha256"]),
        golden_fingerprint_id=bundle.fingerprint.fingerprint_id,
        current_fingerprint_id=fingerprint.fingerprint_id,
        fingerprint_changes=tuple(changes),
        stages=found.stages,
        probes=found.probes,
        changed_probe_families=found.families,
        first_divergence=first,
        detections=found.mode.detections or EMPTY_DETECTIONS,
        causes=tuple(causes),
        cannot_affect=tuple(cannot_affect),
        bisection=bisection,
        array_digests=dict(digests),
        nondeterminism=found.nondeterminism,
        confirmation_ran=confirmation[0],
        confirmation_skipped=confirmation[1],
        strict=strict,
        modes=(found.mode,),
        moved_modes=(info.mode,) if found.moved else (),
        golden_schema=bundle.schema,
        notes=tuple(notes),
        workload="user-model",
        model=info,
        witness=found.witness,
        basis=_basis(info, tolerances, found.witness),
        golden_fingerprint=bundle.fingerprint,
        current_fingerprint=fingerprint,
        timings=dict(timings),
    )


# --- pieces -----------------------------------------------------------------------------------


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
        name = info.output_of(c.name)
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


def _identity(info: ModelInfo, bundle: GoldenBundle) -> str:
    """What a re-run of this model computes on, for the bisection's result cache."""
    inputs = hashlib.sha256()
    for name in sorted(bundle.inputs):
        inputs.update(name.encode() + b"\0" + bundle.inputs[name].tobytes())
    return json.dumps({"model": info.sha256, "signature": info.signature, "mode": info.mode,
                       "layers": list(info.layers), "inputs": inputs.hexdigest()})


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
    if info.per_image:
        what += f", image by image ({len(info.image_files)} images of different sizes)"
    accepted = (f"rounding noise (within {EQUIVALENT_MAX_REL_ULPS:g} unit roundoffs of each"
                " array's scale)"
                if not (tolerances.default or tolerances.per_output)
                else "the tolerances given, and rounding noise elsewhere")
    return (f"the model's {what} compared bit for bit with the golden, accepting {accepted};"
            f" precision judged by {witness.probes} canary probes against float64, since the"
            f" model has no float64 twin; {layer_sight(info)}")


def layer_sight(info: ModelInfo) -> str:
    """Which layers a check of this golden sees, and how to see more."""
    if info.kind == "keras":
        return (f"layers seen: {len(info.layers)} Keras layer output(s)" if info.layers else
                "layers seen: none (the model has no named layer with one output of its own:"
                " build it as a functional model to compare its layers)")
    if info.layers:
        return (f"layers seen: {len(info.layers)} convolution and matrix-product output(s)"
                " inside the signature's graph, fetched in a second run (there grappler cannot"
                " fuse them, so they locate a change; the outputs are the served ones)")
    return ("layers seen: none, only the signature's outputs (this golden holds no layer"
            " outputs: 'envaudit record' keeps the convolution and matrix-product outputs inside"
            " the graph where TensorFlow can freeze it, and says why when it cannot; a .keras"
            " file gives Keras layers)")
