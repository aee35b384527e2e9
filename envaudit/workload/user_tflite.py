"""A user's model converted for a tflite mode and run by LiteRT, the way ``run_model`` runs it.

What is converted is what the user ships: the Keras model (``TFLiteConverter.from_keras_model``)
or the SavedModel's signature (``from_saved_model(path, signature_keys=[signature])``), in this
environment, with the mode's optimization (``tflite.OPTIMIZATION``), cached by the model's digest,
the part converted and the model's declared input shapes (``tflite.convert``); the select-TF ops
where the model needs them. Both converters keep the model's signature, so the converted model is
fed and read by name through the interpreter's signature runner: a bundle's outputs carry the
model's own names (``detection_boxes``, ...) and its detections are read exactly as natively. A
single input or output whose converted name differs, and a Keras model's list of outputs
(``output_0``, ...), are mapped by position.

Layers: a Keras functional model's named layers (``user_model._layer_outputs``) are converted as
a second model, over the same inputs, whose outputs are those layers' outputs by name, with the
same optimization. The outputs a check compares always come from the model as shipped, never from
the layer model (exposing a layer can keep the converter from fusing it with the next op, as
grappler does natively), so the layers locate a change and the outputs judge it. The layer model
converts every layer the model has, whichever a run asks for, so a recording and a check run the
same layer model. A layer the converted model does not return by its name is left out and named
(``unmapped``). A SavedModel's layers (the conv outputs inside its graph) are not outputs of the
converted model: it is compared by its outputs.

Every failure a user can meet -- the converter refuses the model, or the interpreter cannot run
what it wrote with the kernels asked for (LiteRT's reference kernels lack some op versions; this
TensorFlow's interpreter has no select-TF ops) -- is one ``EnvauditError`` line.

Imports TensorFlow: only ever imported by the workload.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from envaudit.errors import EnvauditError
from envaudit.tflite_settings import from_environment
from envaudit.workload.model_batches import ModelArrays
from envaudit.workload.tflite import OPTIMIZATION, ConversionFailed, ConvertedModel, convert
from envaudit.workload.user_model import LoadedModel, fed_in_batches

DEVICE = "CPU:0"  # LiteRT's interpreter runs on the CPU (``modes``: the tflite modes' devices)


class ConvertedUserModel:
    """``native`` converted for ``mode`` (a ``user_model.RunsModel``); ``digest``: the model's
    SHA-256 (``files.model_digest``), which names it in the conversion cache."""

    def __init__(self, native: LoadedModel, mode: str, digest: str) -> None:
        if mode not in OPTIMIZATION:
            raise EnvauditError(f"{mode} mode does not convert a model for TFLite; a model of"
                                f" your own is converted in {', '.join(OPTIMIZATION)}")
        started = time.perf_counter()
        self.native, self.mode, self._digest = native, mode, digest
        self.inputs = native.inputs
        self.outputs = native.outputs
        self.model = _SignatureModel(self._converted("model", _model_converter(native)),
                                     tuple(native.inputs), native.outputs, "its outputs")
        self._layer_model: _SignatureModel | None = None
        self._layer_problem: str | None = None
        self.load_seconds = native.load_seconds + time.perf_counter() - started
        self.output_devices = {name: DEVICE for name in native.outputs}
        self.device = DEVICE

    def batch_size(self) -> int | None:
        return self.native.batch_size()

    def record(self) -> dict[str, Any]:
        """What converted and ran the model as shipped (the bundle's ``runtimes`` record)."""
        return self.model.converted.record()

    # --- layers ---

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers whose converted outputs can be recorded, in model order."""
        found = self._layers()
        return () if found is None else tuple(n for n in self.native.layers if n in found.names)

    @property
    def unmapped(self) -> tuple[str, ...]:
        """The model's layers the converted layer model does not return by name."""
        return tuple(n for n in self._all_layers() if n not in self.layers)

    @property
    def layer_problem(self) -> str | None:
        """Why no layer output can be recorded in this mode (None: some can)."""
        if self.native.kind == "saved_model":
            return (f"{self.mode} mode compares a SavedModel by its outputs: the layers inside"
                    " its graph are not outputs of the converted model")
        self._layers()
        return self._layer_problem or self.native.layer_problem

    def _all_layers(self) -> tuple[str, ...]:
        return () if self.native.kind == "saved_model" else self.native.layers

    def _layers(self) -> _SignatureModel | None:
        """The layer model, converted on first use (None: the model has none to convert)."""
        names = self._all_layers()
        if self._layer_model is None and self._layer_problem is None and names:
            try:
                converted = self._converted(f"layers {json.dumps(list(names))}", lambda: (
                    tf.lite.TFLiteConverter.from_keras_model(self.native.layer_model(names))))
                self._layer_model = _SignatureModel(converted, tuple(self.native.inputs),
                                                    names, "its layers", partial=True)
            except EnvauditError as exc:
                self._layer_problem = f"the converter could not return its layers ({exc})"
        return self._layer_model

    # --- running ---

    def run(self, feeds: Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None) -> ModelArrays:
        """The converted model's outputs, and the converted layers ``layers`` (all when None),
        fed as the model is natively."""
        return fed_in_batches(self.native, feeds, self.layers if layers is None
                              else tuple(layers), self._call)

    def _call(self, feeds: Mapping[str, np.ndarray], layers: Sequence[str]) -> ModelArrays:
        recorded: dict[str, np.ndarray] = {}
        if layers:
            found = self._layers()
            if found is None:
                raise EnvauditError(f"the model's layers cannot be run in {self.mode} mode"
                                    f" here: {self.layer_problem}")
            missing = [n for n in layers if n not in found.names]
            if missing:
                raise EnvauditError(f"the {self.mode} model does not return layer"
                                    f" {', '.join(missing)}; is this the model that was"
                                    " recorded?")
            returned = found.run(feeds)
            recorded = {n: returned[n] for n in layers}
        return ModelArrays(layers=recorded, outputs=self.model.run(feeds))

    def _converted(self, part: str, make: Callable[[], Any]) -> ConvertedModel:
        """``part`` of the model converted for this mode (cached) in LiteRT's interpreter."""
        shapes = {k: v.describe() for k, v in self.native.inputs.items()}
        identity = json.dumps(["user-model", self._digest, self.native.kind,
                               self.native.signature, part, shapes])
        settings = from_environment()
        try:
            conversion = convert(make, identity, OPTIMIZATION[self.mode])
        except ConversionFailed as exc:
            raise EnvauditError(f"{self.mode} mode cannot convert the model here: {exc}") \
                from None
        try:
            return ConvertedModel(conversion, settings)
        except (ValueError, RuntimeError) as exc:  # an op the kernels or interpreter lack
            raise EnvauditError(f"{self.mode} mode cannot run the converted model with"
                                f" {settings.words}: {_first_line(exc)}") from None


def _model_converter(native: LoadedModel) -> Callable[[], Any]:
    """What makes TensorFlow's TFLite converter for the model as it is deployed."""
    if native.kind == "keras":
        return lambda: tf.lite.TFLiteConverter.from_keras_model(native.keras_model)
    return lambda: tf.lite.TFLiteConverter.from_saved_model(
        str(native.path), signature_keys=[native.signature])


class _SignatureModel:
    """A converted model fed and read through its one signature: the model's inputs and the
    ``wanted`` outputs by their names, or by position where there is one of each."""

    def __init__(self, converted: ConvertedModel, inputs: tuple[str, ...],
                 wanted: tuple[str, ...], what: str, partial: bool = False) -> None:
        self.converted = converted
        signatures = converted.interpreter.get_signature_list()
        if len(signatures) != 1:
            raise EnvauditError(f"the converted model has {len(signatures)} signatures, not"
                                " one; envaudit reads a converted model through its signature")
        key, names = next(iter(signatures.items()))
        self._runner = converted.interpreter.get_signature_runner(key)
        self._feeds = _mapped(inputs, tuple(names["inputs"]), "inputs", what)
        returned = tuple(names["outputs"])
        if partial:  # the layers it returns by their own names
            self._outputs = {n: n for n in wanted if n in returned}
        else:
            self._outputs = _mapped(wanted, returned, "outputs", what)
        self.names = tuple(self._outputs)
        self._dtypes = {k: d["dtype"] for k, d in self._runner.get_input_details().items()}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        given = {self._feeds[k]: np.asarray(v, self._dtypes[self._feeds[k]])
                 for k, v in feeds.items()}
        try:
            returned = self._runner(**given)
        except (ValueError, RuntimeError) as exc:
            raise EnvauditError(_failure(exc)) from None
        return {name: np.array(returned[key]) for name, key in self._outputs.items()}


def _failure(exc: BaseException) -> str:
    """Why the converted model did not run, in a line: the TensorFlow ops it needs beside LiteRT's
    own where that is why (the interpreter names them ``FlexOP`` when it has no Flex delegate)."""
    flex = sorted(set(re.findall(r"\bFlex(\w+)", str(exc))))
    if flex:
        return (f"the converted model needs TensorFlow's {', '.join(flex)} (select-TF ops),"
                " which this LiteRT interpreter cannot run (it has no Flex delegate); a model"
                " built from LiteRT's own ops converts and runs (for NMS:"
                " tf.image.non_max_suppression_padded)")
    return f"the converted model failed on these inputs: {_first_line(exc)}"


def _mapped(names: tuple[str, ...], converted: tuple[str, ...], kind: str, what: str
            ) -> dict[str, str]:
    """Each of the model's ``names`` to the converted model's name for it: the same name, the
    only one there is, or its position (Keras exports a list of outputs as ``output_0``,
    ``output_1``, ... in the model's order)."""
    if set(names) <= set(converted):
        return {n: n for n in names}
    if len(names) == len(converted) == 1:
        return {names[0]: converted[0]}
    by_position = [f"output_{i}" for i in range(len(names))]
    if sorted(converted) == sorted(by_position):
        return dict(zip(names, by_position))
    raise EnvauditError(f"the converted model's {kind} ({', '.join(converted)}) are not the"
                        f" model's ({', '.join(names)}), so {what} cannot be read by name")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
