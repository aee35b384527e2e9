"""The user's own model as a check's subject: re-run it on the recorded inputs, compare its arrays.

Opened on a user-model bundle: the manifest's model description and the golden arrays are
validated, ``--tolerance`` and ``--detections`` checked against the recorded outputs, and the model
found (``locate``) and proven to be the recorded one by its SHA-256 -- all before TensorFlow is
imported. A run loads the model and runs it the way it was recorded, in the one execution mode it
was recorded in, with the canary probes beside it: the model has no float64 twin, so its
precision is judged by the probes (the precision witness). Its outputs and layers are compared bit
for bit (the tolerances the user gives decide which differences are accepted) and its detections,
when its outputs hold detections, matched by IoU image by image. A re-run child runs this model
on these inputs from a spec file (``rerun_child``), in the recorded mode.

A model recorded in a tflite mode is converted here (``workload/user_tflite.py``; cached) and run
by LiteRT with the kernels and threads the environment sets; the first run also runs the model
natively, as it loads, so the conversion gap (``compare/conversion.py``) measures the converted
model against the native one on the same inputs in the same environment, layer by layer where
both recorded the layers, and its detections matched image by image. What converted and ran it is
compared with the golden's record (``runtimes.checks``): another flatbuffer hash is a converter
change, said as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from envaudit.compare.conversion import ConversionGap, measure
from envaudit.compare.detections import match_detections
from envaudit.compare.localize import first_divergence
from envaudit.compare.noise import EQUIVALENT_MAX_REL_ULPS
from envaudit.compare.tensors import compare_arrays, tolerated
from envaudit.compare.training import TrainingMode
from envaudit.compare.types import (
    DetectionDiff,
    ModeResult,
    PrecisionWitness,
    TensorComparison,
)
from envaudit.compare.verdict import classify, model_headline
from envaudit.compare.witness import precision_witness
from envaudit.errors import EnvauditError
from envaudit.pipeline.subject import CheckOptions, Progress, SubjectRun
from envaudit.pipeline.training import TrainingSteps, with_steps, with_training
from envaudit.provenance import RecordedElsewhere, recorded_elsewhere
from envaudit.result import EMPTY_DETECTIONS, ModelCheckInfo, SubjectInfo
from envaudit.runtimes import RuntimeCheck
from envaudit.runtimes import checks as runtime_checks
from envaudit.store import GoldenBundle
from envaudit.usermodel.detections import detections_of, shape_problem
from envaudit.usermodel.golden import locate, outputs_by_image, validated
from envaudit.usermodel.spec import CONVERTED_MODES, ModelInfo, Tolerances, require_outputs
from envaudit.usermodel.training import batch_of
from envaudit.workload.types import keyed_devices, stage_key

if TYPE_CHECKING:  # TensorFlow is imported only once a check runs the model
    from envaudit.workload.user_model import LoadedModel, RunsModel, UserModelRun
    from envaudit.workload.user_tflite import ConvertedUserModel


@dataclass(frozen=True)
class ModelRun:
    """One run of the model here (``SubjectRun.native``): in its recorded mode, and, in a
    converted mode, the model run natively beside it and what converted and ran it."""

    run: UserModelRun | None  # None: a recorded run, compared offline (``pipeline/recorded.py``)
    native: UserModelRun | None = None  # the first run of a converted mode only
    runtime: Mapping[str, Any] | None = None  # ``ConvertedModel.record()``


class OwnModel:
    """A user's model as a check's subject (``subject.Subject``)."""

    def __init__(self, bundle: GoldenBundle, options: CheckOptions) -> None:
        if options.modes is not None:
            raise EnvauditError("--modes applies to the canary workload; a user model is checked"
                                " in the mode it was recorded in")
        info = ModelInfo.from_manifest(bundle.manifest["workload"])
        golden = validated(bundle, info)
        self.tolerances = options.tolerances or Tolerances()
        require_outputs((self.tolerances.per_output or {}), info.outputs, "--tolerance")
        if options.detections is not None:
            require_outputs(options.detections.names(), info.outputs, "--detections")
            for outputs in outputs_by_image(info, golden):
                problem = shape_problem(options.detections, outputs)
                if problem:
                    raise EnvauditError(f"--detections {problem}")
            info = replace(info, detections=options.detections)
        self.bundle = bundle
        self.info = info
        self.path = self.model_path(info, options.model)
        self.feeds = _feeds(bundle, info)
        self.modes = (info.mode,)
        self.stages = golden  # the model's own arrays: inputs, layers, outputs
        self.training = (TrainingSteps(bundle, self.modes, options.growth_target, own_model=True)
                         if bundle.training_steps else None)
        self.train_data = (batch_of(bundle.training[info.mode])
                           if self.training and self.training.modes else {})
        trained = self.training.golden.get(info.mode, {}) if self.training else {}
        self.golden: Mapping[str, Mapping[str, np.ndarray]] = {info.mode: {**golden, **trained}}
        self.trained: list[TrainingMode] = []
        self.converts = info.mode in CONVERTED_MODES  # a tflite mode: converted here
        self.gaps: tuple[ConversionGap, ...] = ()
        self.runtimes: tuple[RuntimeCheck, ...] = ()

    def run(self, repeat: int, progress: Progress) -> list[SubjectRun]:
        """The model run ``repeat`` times on the recorded inputs, with the canary probes each
        time; the first run's devices for every array."""
        progress("loading the model")
        from envaudit.workload import tf_runtime

        tf_runtime.quiet()
        from envaudit.workload.assets import load_probe_jpeg
        from envaudit.workload.probes import run_probes, run_probes_on_devices
        from envaudit.workload.user_model import LoadedModel, run_model

        jpeg = load_probe_jpeg()
        mode = self.info.mode  # the probes of that mode run beside it (``modes.runs_beside``)
        runs: list[SubjectRun] = []
        # The probes' first run (their XLA compile above all) overlaps the model's loading: both
        # wait on TensorFlow more than on Python. Kernels split work by shape and thread count,
        # never by load, so running beside each other changes no bit (the repeat runs do not
        # overlap, and the tests check identical results run after run).
        with ThreadPoolExecutor(1) as pool:
            first_probes = pool.submit(run_probes_on_devices, jpeg, mode)
            loaded = LoadedModel(self.path, self.info.kind, self.info.signature)
            converted = self._converted(loaded, progress) if self.converts else None
            model: RunsModel = converted or loaded
            warmed = tf_runtime.warm_up(
                lambda: run_model(model, layers=self.info.layers, **self.feeds))
            for i in range(repeat):
                progress("running the model" + (f" ({i + 1}/{repeat})" if repeat > 1 else ""))
                done = run_model(model, layers=self.info.layers, **self.feeds)
                probes = first_probes.result()[0] if i == 0 else run_probes(jpeg, mode)
                devices = keyed_devices({self.info.mode: done.devices}, first_probes.result()[1])
                runs.append(SubjectRun(stages={self.info.mode: done.stages}, probes=probes,
                                       devices=devices, timings={
                                           "load": done.load_seconds,
                                           **({"warmup": warmed} if warmed else {})},
                                       native=self._ran(done, loaded, converted, i)))
        return self._trained(runs, repeat, progress)

    def _converted(self, loaded: LoadedModel, progress: Progress) -> ConvertedUserModel:
        """The loaded model converted for the recorded tflite mode (cached)."""
        from envaudit.workload.user_tflite import ConvertedUserModel

        progress(f"converting the model for {self.info.mode}")
        return ConvertedUserModel(loaded, self.info.mode, self.info.sha256)

    def _ran(self, done: UserModelRun, loaded: LoadedModel,
             converted: ConvertedUserModel | None, index: int) -> ModelRun:
        """Run ``index``'s record; the first run of a converted mode runs the model natively
        too (its conversion gap's reference: the same layers, the same inputs)."""
        if converted is None:
            return ModelRun(done)
        from envaudit.workload.user_model import run_model

        native = run_model(loaded, layers=self.info.layers, **self.feeds) if index == 0 \
            else None
        return ModelRun(done, native, converted.record())

    def _trained(self, runs: list[SubjectRun], repeat: int, progress: Progress
                 ) -> list[SubjectRun]:
        """``runs`` with the model's training steps beside each run's arrays, the first trained
        here, the others each in a fresh process (``TrainingSteps.run_here``)."""
        if self.training is None:
            return runs
        path, data = self.path, self.train_data

        def here(modes: Sequence[str], steps: int
                 ) -> tuple[dict[str, dict[str, np.ndarray]], Mapping[str, str]]:
            from envaudit.workload.model_training import train_model

            done = {m: train_model(path, data, steps, m) for m in modes}
            return ({m: d.arrays for m, d in done.items()},
                    {stage_key(m, n): d.device for m, d in done.items() for n in d.arrays})

        started = time.perf_counter()
        # a spec for the fresh processes of a repeat (none without one)
        with (tempfile.TemporaryDirectory(prefix="envaudit-model-") if repeat > 1
              else contextlib.nullcontext("")) as tmp:
            child = _child_spec(Path(tmp), self.path, self.info, self.feeds,
                                self._train_spec()) if tmp else ()
            trained = self.training.run_here(here, repeat, progress, child)
        seconds = time.perf_counter() - started
        return [replace(run, stages={m: {**s, **steps.get(m, {})} for m, s in run.stages.items()},
                        devices={**run.devices, **self.training.devices},
                        timings={**run.timings, "training": seconds})
                for run, steps in zip(runs, trained)]

    def _train_spec(self) -> Mapping[str, np.ndarray] | None:
        return self.train_data if self.training else None

    def compare(self, run: SubjectRun, spread: float
                ) -> tuple[tuple[TensorComparison, ...], tuple[ModeResult, ...]]:
        golden = self.stages
        current = run.stages[self.info.mode]
        stages = _compare_stages(golden, current, self.info, self.tolerances, spread)
        names = self.info.detections
        boxes = (match_detections(detections_of(names, outputs_by_image(self.info, golden)),
                                  detections_of(names, outputs_by_image(self.info, current)),
                                  noise=spread, mode=self.info.mode)
                 if names else None)
        # a model's layers are not replayed one by one: which later arrays changed by
        # themselves is not known
        mode = ModeResult(self.info.mode, classify(stages, (), boxes),
                          first_divergence(stages, golden, None), boxes or EMPTY_DETECTIONS)
        ran: ModelRun = run.native
        self.gaps = ((conversion_gap(self.info, ran.native, ran.run, ran.runtime),)
                     if ran.native is not None else ())
        self.runtimes = runtime_checks(self.bundle.runtimes,
                                       {self.info.mode: ran.runtime} if ran.runtime else {},
                                       self.modes)
        self.trained = []
        if self.training and self.info.mode in self.training.modes:
            steps, trained = self.training.compare(self.info.mode, current, spread)
            mode = with_steps(mode, stages, steps)
            stages += steps
            self.trained += [trained] if trained else []
        return stages, (mode,)

    def model_path(self, info: ModelInfo, given: str | None) -> Path:
        """The model a run loads: ``given`` or the recorded path, proven to be the recorded
        model by its SHA-256 (``usermodel.golden.locate``)."""
        return locate(info, given)

    def describe(self, probes: Sequence[TensorComparison]) -> SubjectInfo:
        witness = precision_witness(probes)
        return ModelCheckInfo(model=self.info, witness=witness,
                              basis=_basis(self.info, self.tolerances, witness),
                              training=self.training.report(self.trained) if self.training
                              else None, conversion=self.gaps, runtimes=self.runtimes)

    def headline(self, verdict: str, stages: Sequence[TensorComparison],
                 probes: Sequence[TensorComparison], modes: Sequence[ModeResult],
                 info: SubjectInfo, detections: DetectionDiff, first: str | None,
                 top_cause: str | None) -> str:
        assert isinstance(info, ModelCheckInfo)
        boxes = detections if self.info.detections is not None else None
        if info.training is None:
            return model_headline(verdict, stages, probes, boxes,  # type: ignore[arg-type]
                                  info.witness, first_divergence=first, top_cause=top_cause)
        model = [s for s in stages if s.role != "step"]
        alone = classify(model, probes, boxes)
        said = model_headline(alone, model, probes, boxes,  # type: ignore[arg-type]
                              info.witness, first_divergence=first if first in {
                                  s.name for s in model} else None)
        return with_training(said, verdict, alone, info.training, top_cause)

    def notes(self, run: SubjectRun) -> tuple[str, ...]:
        ran_in = run.native.run.mode
        if ran_in == self.info.mode:
            return ()
        return (f"the model was recorded in {self.info.mode} mode and ran in {ran_in} mode here"
                " (Keras chose otherwise); its arrays are compared all the same",)

    def provenance(self, seen: Any) -> RecordedElsewhere | None:
        return recorded_elsewhere(self.bundle.fingerprint, seen, user_model=True)

    @contextlib.contextmanager
    def rerun_child(self) -> Iterator[tuple[str, ...]]:
        """A spec and the inputs, written to a folder private to this process for as long as the
        re-runs need them."""
        with tempfile.TemporaryDirectory(prefix="envaudit-model-") as tmp:
            yield (*_child_spec(Path(tmp), self.path, self.info, self.feeds, self._train_spec()),
                   *(self.training.child_arguments(self.modes) if self.training else ()))

    def identity(self) -> str:
        inputs = hashlib.sha256()
        for name in sorted(self.bundle.inputs):
            inputs.update(name.encode() + b"\0" + self.bundle.inputs[name].tobytes())
        return json.dumps({"model": self.info.sha256, "signature": self.info.signature,
                           "mode": self.info.mode, "layers": list(self.info.layers),
                           "inputs": inputs.hexdigest(),
                           **({"training": [self.training.steps, self.training.settings]}
                              if self.training else {})})


def conversion_gap(info: ModelInfo, native: UserModelRun, converted: UserModelRun,
                   runtime: Mapping[str, Any] | None) -> ConversionGap:
    """The model converted for ``info.mode`` against the model run natively on the same inputs
    in the same process: array by array (inputs, layers, outputs), its detections matched image
    by image (``info.detections``)."""
    names = info.detections
    detections = (detections_of(names, outputs_by_image(info, native.stages)),
                  detections_of(names, outputs_by_image(info, converted.stages))
                  ) if names else None
    return measure(info.mode, native.mode, native.stages, converted.stages,
                   detections=detections, roles=info.roles(), runtime=runtime)


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
    for c in compare_arrays("stage", golden, current, spread=spread, mode=info.mode,
                            roles=info.roles()):
        name = info.output_of(c.name)
        tolerance = tolerances.for_output(name) if name else None
        if tolerance is not None:
            c = tolerated(c, golden[c.name], current.get(c.name), tolerance.rtol,
                          tolerance.atol, tolerance.describe())
        compared.append(c)
    return tuple(compared)


def _child_spec(folder: Path, path: Path, info: ModelInfo, feeds: Mapping[str, object],
                train_data: Mapping[str, np.ndarray] | None = None) -> tuple[str, ...]:
    """The extra arguments of a re-run child that runs this model on these inputs: a spec and the
    inputs, written to ``folder`` (private to this process); with ``train_data`` (the training
    file's arrays), that file too, for a child asked to train (``--training``)."""
    inputs = folder / "inputs.npz"
    if "images" in feeds:
        names, encoded = feeds["images"]  # type: ignore[misc]
        np.savez(inputs, **{f"image.{i}": np.frombuffer(e, np.uint8)
                            for i, e in enumerate(encoded)})
    else:
        np.savez(inputs, **feeds["arrays"])  # type: ignore[arg-type]
    spec = {"kind": info.kind, "path": str(path.absolute()), "sha256": info.sha256,
            "signature": info.signature, "layers": list(info.layers),
            "input_kind": info.input_kind, "files": list(info.image_files),
            "inputs": str(inputs)}
    if train_data is not None:
        np.savez(folder / "train.npz", **train_data)  # type: ignore[arg-type]
        spec["train_inputs"] = str(folder / "train.npz")
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
    if info.mode in CONVERTED_MODES:
        if info.layers:
            return (f"layers seen: {len(info.layers)} Keras layer output(s), from the layers"
                    f" converted for {info.mode} as the outputs of a second model (the outputs"
                    " are the shipped model's)")
        return (f"layers seen: none, only the converted model's outputs ({info.mode} returns the"
                " layers of a functional .keras model only, never those inside a SavedModel's"
                " graph)")
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
