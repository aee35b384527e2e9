"""The conv and matmul outputs inside a SavedModel signature's graph, fetched as its layers.

A SavedModel keeps no list of layers, but its graph holds them: the signature's concrete function is
frozen (variables folded into constants, called functions inlined, by TensorFlow's
``convert_variables_to_constants_v2``), and the outputs of its convolution and matrix-product ops
(``LAYER_OPS``), in graph order, become fetchable through a pruned function
(``tf.compat.v1.wrap_function(...).prune``). These are the ops whose kernels a library, an
instruction set or a precision setting changes, so the first of them that moved says where a change
entered the model.

Constraints for the next editor:
- The values come from a second run of the graph with those tensors fetched. Grappler cannot fuse
  an op whose output is fetched (a Conv2D, its BiasAdd and its Relu run as three kernels here and
  as one fused kernel in the served graph), so the layers localize a change; the model's outputs
  are always those of the serving signature as deployed, never of this run.
- Names must be stable from one load to the next (a check fetches the names the golden recorded):
  they are the op names, less TensorFlow's wrapping ``StatefulPartitionedCall/`` scopes, with ``/``
  written as ``.``.
- Whatever TensorFlow raises while freezing becomes ``GraphLayers.problem`` (one line, shown to the
  user): a model whose layers cannot be fetched is still checked at its outputs.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from envaudit.errors import EnvauditError

# Ops whose kernels a CPU instruction set, oneDNN, cuDNN, TF32 or XLA choose: what moves numerics.
LAYER_OPS = frozenset({"Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput",
                       "Conv3DBackpropInputV2", "MatMul", "BatchMatMul", "BatchMatMulV2",
                       "BatchMatMulV3", "Einsum"})
MAX_NAME = 80  # leaves room for "layer." and an image index within a bundle's 100-character names
_WRAPPER = re.compile(r"^(?:StatefulPartitionedCall(?:_\d+)?/|PartitionedCall(?:_\d+)?/)+")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9_.-]")
_FLOATS = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


@dataclass
class GraphLayers:
    """The fetchable layers of one signature (``names``, in graph order), or why there are none."""

    names: tuple[str, ...] = ()
    problem: str | None = None
    _tensors: dict[str, str] = field(default_factory=dict, repr=False)  # name -> tensor name
    _feeds: tuple[str, ...] = ()  # the signature's input names, in the frozen graph's order
    _inputs: tuple[str, ...] = ()  # their tensor names in the frozen graph
    _wrapped: Any = None
    _pruned: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def fetch(self, feeds: Mapping[str, np.ndarray], names: Sequence[str]
              ) -> dict[str, np.ndarray]:
        """The outputs of the layers ``names`` on ``feeds`` (one batch the signature accepts)."""
        if not names:
            return {}
        missing = [n for n in names if n not in self._tensors]
        if missing:
            raise EnvauditError(f"the model's graph has no layer {', '.join(missing)} whose"
                                " output can be fetched; is this the model that was recorded?")
        key = tuple(names)
        if key not in self._pruned:
            graph = self._wrapped.graph
            self._pruned[key] = self._wrapped.prune(
                [graph.get_tensor_by_name(t) for t in self._inputs],
                [graph.get_tensor_by_name(self._tensors[n]) for n in names])
        try:
            values = self._pruned[key](*(tf.constant(feeds[f]) for f in self._feeds))
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise EnvauditError(f"the model's layers failed on these inputs: {first_line(exc)}") \
                from None
        return {n: np.asarray(v) for n, v in zip(names, values)}


def graph_layers(function: Any) -> GraphLayers:
    """The conv and matmul outputs of a signature's concrete ``function`` that can be fetched."""
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        frozen = convert_variables_to_constants_v2(function)
        graph_def = frozen.graph.as_graph_def()
        _args, kwargs = function.structured_input_signature  # the frozen one keeps none
        feeds = tuple(sorted(kwargs))  # a dict flattens by sorted key, as ``inputs`` are ordered
        inputs = tuple(t.name for t in frozen.inputs[:len(feeds)])
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    except Exception as exc:  # TensorFlow raises many types for graphs it cannot freeze
        return GraphLayers(problem="its graph could not be frozen to fetch them"
                                   f" ({first_line(exc)})")
    tensors: dict[str, str] = {}
    for node in _graph_order(graph_def.node):
        if node.op not in LAYER_OPS or _dtype(node) not in _FLOATS:
            continue
        name = layer_name(node.name)
        if name not in tensors:
            tensors[name] = f"{node.name}:0"
    if not tensors:
        return GraphLayers(problem="its graph has no convolution or matrix product outside a"
                                   " loop or condition")
    return GraphLayers(names=tuple(tensors), _tensors=tensors, _feeds=feeds, _inputs=inputs,
                       _wrapped=wrapped)


def layer_name(op: str) -> str:
    """A plain, stable name for an op: its scopes joined by '.', TensorFlow's call wrappers left
    out; a long one keeps its end and a digest of the whole."""
    name = _NOT_PLAIN.sub("_", _WRAPPER.sub("", op).replace("/", "."))
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(op.encode()).hexdigest()[:8]
        name = f"{name[-(MAX_NAME - 9):]}-{digest}".lstrip(".")
    return name


def _graph_order(nodes: Sequence[Any]) -> list[Any]:
    """The nodes in an order where every node follows its inputs (a graph def keeps none), ties
    kept in the graph def's order, so the first layer listed is the first computed."""
    by_name = {n.name: n for n in nodes}
    position = {n.name: i for i, n in enumerate(nodes)}
    inputs = {n.name: {i.lstrip("^").split(":")[0] for i in n.input} & by_name.keys()
              for n in nodes}
    users: dict[str, list[str]] = {n: [] for n in by_name}
    for name, sources in inputs.items():
        for source in sources:
            users[source].append(name)
    waiting = {name: len(sources) for name, sources in inputs.items()}
    ready = [(position[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, name = heapq.heappop(ready)
        ordered.append(by_name[name])
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (position[user], user))
    return ordered


def _dtype(node: Any) -> Any:
    attr = node.attr.get("T")
    return tf.as_dtype(attr.type) if attr is not None and attr.type else None


def first_line(exc: BaseException) -> str:
    """The first line of what TensorFlow said, cut to fit in one error line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
