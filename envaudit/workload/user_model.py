"""Run a user's model on the user's inputs, the way it is deployed, and capture every output.

- A SavedModel runs through its serving signature (``loaded.signatures[NAME]``), as TF Serving runs
  it: one concrete function, grappler-optimized: the ``graph`` mode. Its layers are the conv and
  matmul outputs inside that graph, fetched by a second run (``graph_layers.py``), where TensorFlow
  can freeze the graph; where it cannot, ``layer_problem`` says why and only outputs are compared.
- A Keras ``.keras`` file is loaded with ``safe_mode=True`` (no deserialized lambdas) and run with
  ``model.predict``, XLA included when Keras compiles it: the mode is what ``predict`` used
  (``xla`` when ``model.jit_compile`` is on, else ``graph``; ``eager`` when ``run_eagerly``).
- A Keras functional model's named layers are recorded too: one extra model over the same inputs
  whose outputs are those layers' outputs, called as one traced function with the same
  ``jit_compile``, so a check can name the first layer that diverged. A layer shared between calls
  has no single output and is left out.
- Layers are recorded in model order until ``LAYER_BYTES``.

Batches: an input whose first dimension is fixed (the Object Detection API exports batch one) is fed
in batches of exactly that size; a last batch that comes out short is filled up by repeating its
last example, and the rows computed for the filling are dropped from every array (each array must
then have one row per example). Images of different sizes run one at a time where the model takes
any size (``UserModelRun.per_image``: each image its own arrays, ``spec.per_image_name``).

Inputs are checked against the model's declared inputs before anything runs; a mismatch is one
line saying what the model expects. Images are decoded here (TensorFlow's decoders, which are part
of the environment under test) and recorded as the model's ``input`` arrays. A run's arrays carry
their roles (input, layer, output) as data from where they are made; their names in a bundle are
spelled from the role by ``spec.array_name`` and never parsed back.

``run_model`` runs any ``RunsModel``: the model as loaded here, or the same model converted for a
tflite mode (``user_tflite.ConvertedUserModel``), which is fed in the same batches
(``fed_in_batches``) so both give arrays of one shape under one name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from envaudit.compare.types import ArrayRole
from envaudit.errors import EnvauditError
from envaudit.usermodel.spec import (
    DEFAULT_SIGNATURE,
    PLAIN,
    ModelKind,
    TensorSpec,
    array_name,
    per_image_name,
)
from envaudit.workload import devices
from envaudit.workload.graph_layers import GraphLayers, graph_layers
from envaudit.workload.graph_layers import first_line as _first
from envaudit.workload.model_batches import ModelArrays, batches, joined, within_budget
from envaudit.workload.tf_runtime import silenced_stderr

LAYER_BYTES = 256 << 20  # intermediate outputs kept per run; the rest of the layers go unrecorded


@dataclass(frozen=True)
class UserModelRun:
    mode: str
    stages: dict[str, np.ndarray]  # input.*, layer.*, output.* (``ModelInfo.stage_names`` order)
    load_seconds: float
    run_seconds: float
    devices: dict[str, str] = field(default_factory=dict)  # stage -> "CPU:0", "GPU:0", ...
    layers: tuple[str, ...] = ()  # the layers whose outputs are in ``stages``, in model order
    outputs: tuple[str, ...] = ()  # the outputs in ``stages``, in the model's order
    per_image: bool = False  # images of different sizes, run one at a time
    roles: dict[str, ArrayRole] = field(default_factory=dict)  # stage -> input, layer, output


class LoadedModel:
    """A model loaded once; ``run`` feeds it and returns its outputs by name."""

    def __init__(self, path: Path, kind: ModelKind, signature: str | None) -> None:
        self.path = path
        self.kind = kind
        self.signature = signature if kind == "saved_model" else None
        start = time.perf_counter()
        with silenced_stderr():
            if kind == "saved_model":
                self._load_saved_model(path, signature or DEFAULT_SIGNATURE)
            else:
                self._load_keras(path)
        self.load_seconds = time.perf_counter() - start
        self.mode = "graph"
        # Keras hands outputs back as NumPy: they were computed where TensorFlow places ops.
        self.output_devices: dict[str, str] = {}

    # --- loading ---

    def _load_saved_model(self, path: Path, signature: str) -> None:
        try:
            self._loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types for a broken SavedModel
            raise EnvauditError(f"{path} could not be loaded as a SavedModel ({_first(exc)});"
                                " pass the folder tf.saved_model.save wrote") from None
        signatures = dict(getattr(self._loaded, "signatures", {}) or {})
        if signature not in signatures:
            have = ", ".join(sorted(signatures)) or "none"
            raise EnvauditError(f"SavedModel {path} has no signature {signature!r} (it has"
                                f" {have}); pass --signature NAME")
        self.signature = signature
        self._function = signatures[signature]
        _args, kwargs = self._function.structured_input_signature
        self.inputs = {name: TensorSpec(spec.dtype.name, tuple(spec.shape.as_list()))
                       for name, spec in sorted(kwargs.items())}
        self.outputs = tuple(sorted(self._function.structured_outputs))  # a signature's order
        # is not kept from one load to the next
        self._graph: GraphLayers | None = None  # frozen on first use: a check of a golden
        # recorded without layers never pays for it

    def _load_keras(self, path: Path) -> None:
        import keras

        try:
            self._model = keras.saving.load_model(str(path), safe_mode=True)
        except Exception as exc:  # Keras raises many types for a broken or unsafe file
            raise EnvauditError(f"{path} could not be loaded as a Keras model ({_first(exc)})")\
                from None
        model = self._model
        try:
            tensors = list(model.inputs)
        except (AttributeError, ValueError, TypeError):
            raise EnvauditError(f"Keras model {path} has no defined inputs (a subclassed model"
                                " that was never called); build it on an input shape and save it"
                                " again") from None
        self.inputs = {t.name: TensorSpec(str(tf.as_dtype(t.dtype).name), tuple(t.shape))
                       for t in tensors}
        self.outputs = tuple(model.output_names)
        self._layer_tensors = _layer_outputs(model)

    # --- what it offers ---

    def _graph_layers(self) -> GraphLayers:
        if self._graph is None:
            with silenced_stderr():
                self._graph = graph_layers(self._function)
        return self._graph

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers whose outputs can be recorded, in model order."""
        if self.kind == "saved_model":
            return self._graph_layers().names
        return tuple(self._layer_tensors)

    @property
    def layer_problem(self) -> str | None:
        """Why no layer output can be recorded (None: some can)."""
        if self.kind == "saved_model":
            return self._graph_layers().problem
        return None if self._layer_tensors else (
            "it has no named layer with one output of its own (a Sequential or subclassed model"
            " that was never called on an input)")

    def batch_size(self) -> int | None:
        """The batch every input is fed in, when the model fixes it (None: any)."""
        firsts = {spec.shape[0] if spec.shape else None for spec in self.inputs.values()}
        size = firsts.pop() if len(firsts) == 1 else None
        return size or None

    # --- running ---

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Refuse inputs that do not fit the model's declared inputs, saying what it expects."""
        expected = "; ".join(f"{k}: {v.describe()}" for k, v in self.inputs.items())
        if sorted(feeds) != sorted(self.inputs):
            raise EnvauditError(f"the inputs are named {', '.join(sorted(feeds))}, the model"
                                f" expects {expected}")
        batched = self.batch_size() is not None  # any count is fed in batches of that size
        for name, spec in self.inputs.items():
            array = feeds[name]
            fits = array.dtype.name == spec.dtype and array.ndim == len(spec.shape) and all(
                want is None or want == have or (batched and axis == 0)
                for axis, (want, have) in enumerate(zip(spec.shape, array.shape)))
            if not fits:
                raise EnvauditError(f"input {name} is {array.dtype.name}{list(array.shape)}, the"
                                    f" model expects {expected}")
        counts = {a.shape[0] for a in feeds.values() if a.ndim}
        if len(counts) > 1:
            raise EnvauditError(f"the inputs hold different numbers of examples"
                                f" ({', '.join(map(str, sorted(counts)))}); give each the same")

    @property
    def device(self) -> str:
        """Where the layers are computed: where TensorFlow places ops by default."""
        return devices.default()

    def run(self, feeds: Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None) -> ModelArrays:
        """The model's outputs and the outputs of ``layers`` (all that can be recorded when
        None), fed in the model's fixed batch size when it has one."""
        return fed_in_batches(self, feeds, self.layers if layers is None else tuple(layers),
                              self._call)

    def _call(self, feeds: Mapping[str, np.ndarray], layers: Sequence[str]) -> ModelArrays:
        """One batch through the model: its layers, then its outputs."""
        if self.kind == "saved_model":
            served = self._serve(feeds)
            recorded = self._graph_layers().fetch(feeds, layers) if layers else {}
            outputs = {k: served[k] for k in self.outputs}
        else:
            outputs = self._predict(self._model, feeds, self.outputs)
            self.mode = ("eager" if self._model.run_eagerly else
                         "xla" if self._model.jit_compile else "graph")
            missing = [n for n in layers if n not in self._layer_tensors]
            if missing:
                raise EnvauditError(f"the model has no layer {', '.join(missing)} whose output"
                                    " can be recorded; is this the model that was recorded?")
            recorded = self._layers(feeds, layers) if layers else {}
        return ModelArrays(layers=recorded, outputs=outputs)

    def _serve(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            result = self._function(**{k: tf.constant(v) for k, v in feeds.items()})
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise EnvauditError(f"the model failed on these inputs: {_first(exc)}") from None
        self.output_devices = {k: devices.of(v) for k, v in result.items()}
        return {k: v.numpy() for k, v in result.items()}

    @property
    def keras_model(self) -> Any:
        """The Keras model as loaded (a Keras model only)."""
        return self._model

    def layer_model(self, names: Sequence[str]) -> Any:
        """A Keras model over the same inputs whose outputs are the named layers' outputs, by
        layer name (a Keras model only)."""
        import keras

        return keras.Model(self._model.inputs, {n: self._layer_tensors[n] for n in names})

    def _layers(self, feeds: Mapping[str, np.ndarray], names: Sequence[str]
                ) -> dict[str, np.ndarray]:
        model = self._model
        probe = self.layer_model(names)
        x = (tf.constant(next(iter(feeds.values()))) if len(feeds) == 1
             else {k: tf.constant(v) for k, v in feeds.items()})
        call = (probe if model.run_eagerly else
                tf.function(probe, jit_compile=bool(model.jit_compile), autograph=False))
        try:
            result = call(x, training=False)
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise EnvauditError(f"the model's layers failed on these inputs: {_first(exc)}") \
                from None
        return {n: np.asarray(result[n]) for n in names}

    @staticmethod
    def _predict(model: Any, feeds: Mapping[str, np.ndarray],
                 names: Sequence[str]) -> dict[str, np.ndarray]:
        x = next(iter(feeds.values())) if len(feeds) == 1 else dict(feeds)
        try:
            result = model.predict(x, verbose=0)
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise EnvauditError(f"the model failed on these inputs: {_first(exc)}") from None
        if isinstance(result, dict):
            return {k: np.asarray(result[k]) for k in names if k in result}
        if isinstance(result, (list, tuple)):
            return {k: np.asarray(v) for k, v in zip(names, result)}
        return {names[0]: np.asarray(result)}


class RunsModel(Protocol):
    """What ``run_model`` runs: a model fed by input name that returns its layers and outputs
    by name (``LoadedModel``, ``user_tflite.ConvertedUserModel``)."""

    mode: str  # the execution mode its arrays were computed in
    load_seconds: float
    output_devices: dict[str, str]  # output -> device, where known
    inputs: Mapping[str, TensorSpec]

    @property
    def device(self) -> str: ...

    @property
    def layers(self) -> tuple[str, ...]: ...

    @property
    def layer_problem(self) -> str | None: ...

    def batch_size(self) -> int | None: ...

    def run(self, feeds: Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None) -> ModelArrays: ...


def fed_in_batches(model: LoadedModel, feeds: Mapping[str, np.ndarray], layers: tuple[str, ...],
                   call: Callable[[Mapping[str, np.ndarray], Sequence[str]], ModelArrays]
                   ) -> ModelArrays:
    """``call`` on ``feeds`` checked against ``model``'s inputs and cut into its fixed batch
    size when it has one, each batch's layers and outputs joined back."""
    model.check_feeds(feeds)
    size = model.batch_size()
    count = next(iter(feeds.values())).shape[0] if next(iter(feeds.values())).ndim else 1
    with silenced_stderr():
        parts = [(call(chunk, layers), real) for chunk, real in batches(feeds, size, count)]
    return joined(parts, size)


def _layer_outputs(model: Any) -> dict[str, Any]:
    """The named layers of a functional model whose single output can be recorded, in model
    order (an InputLayer, a layer reused across calls and a model output are left out)."""
    try:
        outputs = {id(t) for t in model.outputs}
    except (AttributeError, ValueError):
        return {}
    found: dict[str, Any] = {}
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer" or not PLAIN.fullmatch(layer.name):
            continue
        try:
            tensor = layer.output
        except (AttributeError, ValueError, RuntimeError):
            continue
        if isinstance(tensor, (list, tuple, dict)) or id(tensor) in outputs:
            continue
        found[layer.name] = tensor
    return found


def decode_images(encoded: Sequence[bytes], names: Sequence[str], spec: TensorSpec,
                  batch: int | None = None) -> list[np.ndarray]:
    """The images decoded by TensorFlow, each uint8 [H, W, C] fitting ``spec``'s size; images of
    different sizes only where the model can take them one at a time (any size, a batch of any
    size or of one)."""
    channels = spec.shape[-1] if spec.shape and spec.shape[-1] in (1, 3, 4) else 3
    if len(spec.shape) != 4:
        raise EnvauditError(f"the model's image input is {spec.describe()}, not a batch of"
                            " images [N, H, W, C]; pass an .npz of arrays instead")
    decoded = []
    with silenced_stderr():
        for name, data in zip(names, encoded):
            try:
                decoded.append(tf.io.decode_image(data, channels=channels,
                                                  expand_animations=False).numpy())
            except tf.errors.OpError as exc:
                raise EnvauditError(f"input image {name} cannot be decoded ({_first(exc)})") \
                    from None
    want_h, want_w = spec.shape[1], spec.shape[2]
    for name, image in zip(names, decoded):
        height, width = image.shape[:2]
        if (want_h and want_h != height) or (want_w and want_w != width):
            raise EnvauditError(f"input image {name} is {width}x{height}, the model expects"
                                f" {spec.describe()}; resize it to the model's input size")
    if len({a.shape[:2] for a in decoded}) > 1 and batch not in (None, 1):
        shown = ", ".join(f"{n} {a.shape[1]}x{a.shape[0]}" for n, a in zip(names, decoded))
        raise EnvauditError(f"the input images have different sizes ({shown}) and the model"
                            f" takes batches of exactly {batch}: give images of one size")
    return decoded


def image_feed(decoded: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Decoded pixels as the model's image input dtype (pixel values unchanged)."""
    if spec.dtype == "uint8":
        return decoded
    if spec.dtype in ("float16", "float32", "float64"):
        return decoded.astype(spec.dtype)
    raise EnvauditError(f"the model's image input is {spec.describe()}; images can be fed as"
                        " uint8 or float pixels only: pass an .npz of arrays instead")


def image_input(model: RunsModel) -> tuple[str, TensorSpec]:
    """The one input images are fed as."""
    if len(model.inputs) != 1:
        shown = "; ".join(f"{k}: {v.describe()}" for k, v in model.inputs.items())
        raise EnvauditError(f"the model has {len(model.inputs)} inputs ({shown}); a folder of"
                            " images feeds one: pass an .npz with one array per input")
    return next(iter(model.inputs.items()))


def run_model(model: RunsModel, *, images: tuple[Sequence[str], Sequence[bytes]] | None = None,
              arrays: Mapping[str, np.ndarray] | None = None,
              layers: Sequence[str] | None = None) -> UserModelRun:
    """One run on ``images`` (names, encoded bytes) or ``arrays`` (input name -> array): the
    decoded images, the recorded layers (``layers``; None: every one that fits ``LAYER_BYTES``)
    and the outputs, in localization order; images of different sizes one at a time."""
    start = time.perf_counter()
    groups: list[dict[str, np.ndarray]] = []  # one per run: the whole batch, or one image
    if images is not None:
        name, spec = image_input(model)
        decoded = decode_images(images[1], images[0], spec, model.batch_size())
        per_image = len({a.shape for a in decoded}) > 1
        for batch in ([a[None] for a in decoded] if per_image else [np.stack(decoded)]):
            groups.append({name: batch})
    else:
        per_image = False
        groups.append(dict(arrays or {}))
    results: list[dict[tuple[ArrayRole, str], np.ndarray]] = []
    for group in groups:
        feeds = {k: image_feed(v, spec) for k, v in group.items()} if images is not None \
            else group
        run = model.run(feeds, layers)
        if layers is None:  # recording: keep the layers that fit, ask the next run for those
            run = within_budget(run, LAYER_BYTES // len(groups))
            layers = tuple(run.layers)
        results.append({**{("input", k): v for k, v in group.items() if images is not None},
                        **{("layer", k): v for k, v in run.layers.items()},
                        **{("output", k): v for k, v in run.outputs.items()}})
    return _assembled(model, results, per_image, start)


def _assembled(model: RunsModel, results: Sequence[Mapping[tuple[ArrayRole, str], np.ndarray]],
               per_image: bool, start: float) -> UserModelRun:
    """The run's arrays named as a bundle stores them, with their roles and devices: one per
    array, or, images run one at a time, one per array and image (array by array)."""
    stages: dict[str, np.ndarray] = {}
    roles: dict[str, ArrayRole] = {}
    placed_on: dict[str, str] = {}
    default = model.device
    for role, name in results[0]:
        names = [array_name(role, name)] if not per_image else [
            per_image_name(array_name(role, name), i) for i in range(len(results))]
        for stage, result in zip(names, results):
            stages[stage] = result[(role, name)]
            roles[stage] = role
            placed_on[stage] = ("CPU:0" if role == "input" else  # TensorFlow's decoders: CPU only
                                model.output_devices.get(name, default) if role == "output"
                                else default)
    return UserModelRun(
        mode=model.mode, stages=stages, load_seconds=model.load_seconds,
        run_seconds=time.perf_counter() - start, devices=placed_on,
        layers=tuple(n for r, n in results[0] if r == "layer"),
        outputs=tuple(n for r, n in results[0] if r == "output"),
        per_image=per_image, roles=roles)
