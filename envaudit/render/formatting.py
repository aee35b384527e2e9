"""How every output writes a number, a growth factor, a percentage, a class, a user's model and the
precision witness: one spelling each, so a value reads the same in the headline, the terminal,
Markdown, JUnit and HTML.

Pure formatting: nothing here escapes (each output kind does, with ``render.escape``, as it puts a
string in) and nothing here decides anything (statuses, verdicts and whether fp32 ran at full
precision come with the data). Functions that name things a renderer may want marked up (input and
output names) take ``code``, which wraps each name (Markdown: backticks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from envaudit import modes
from envaudit.render.palette import status_words
from envaudit.spelling import (  # noqa: F401  (one spelling, used through here too)
    MODEL_KIND_WORDS,
    data_size,
    growth,
    number,
    percent,
    roundoffs,
)
from envaudit.workload.types import CLASS_NAMES

if TYPE_CHECKING:
    from envaudit.compare.types import PrecisionWitness
    from envaudit.fleet.report import FleetNode
    from envaudit.usermodel.spec import ModelInfo

SHA256_SHOWN = 16  # hex digits of a model's sha256 shown: enough to tell two models apart


def class_label(index: int | None, names: Sequence[str] = CLASS_NAMES) -> str:
    """A detector class by name ("ellipse"), "class 7" for an index outside ``names``, "—" for
    none."""
    if index is None:
        return "—"
    return names[index] if 0 <= index < len(names) else f"class {index}"


def class_names(model: ModelInfo | None) -> tuple[str, ...]:
    """The names a check's class ids stand for: the canary's shapes, none for a user's model
    (whose ids mean what its training data says, which envaudit does not know)."""
    return CLASS_NAMES if model is None else ()


def model_identity(model: ModelInfo, code: Callable[[str], str] = str) -> str:
    """"Keras model /m/tiny.keras (sha256 0cd13616f8d4f252, 1 file, 461.4 KiB)"."""
    files = f"{model.files} file{'' if model.files == 1 else 's'}"
    return (f"{MODEL_KIND_WORDS.get(model.kind, model.kind)} {code(model.path)} (sha256 "
            f"{code(model.sha256[:SHA256_SHOWN])}, {files}, {data_size(model.size)})")


def model_run(model: ModelInfo, code: Callable[[str], str] = str) -> str:
    """How the model ran and on what: "model.predict in graph mode on 6 images fed as image
    float32[?, 100, 100, 3]"."""
    how = ("model.predict" if model.signature is None
           else f"serving signature '{model.signature}'")
    if model.mode in modes.names() and modes.get(model.mode).converted:
        how = ("the Keras model" if model.signature is None else how) + \
            " converted by TFLiteConverter"
    if model.input_kind == "images" and model.image_feed:
        spec = model.inputs.get(model.image_feed)
        n = len(model.image_files)
        what = (f"{n} image{'' if n == 1 else 's'} fed as {code(model.image_feed)}"
                + (f" {spec.describe()}" if spec else ""))
    else:
        what = "arrays " + ", ".join(f"{code(name)} {spec.describe()}"
                                     for name, spec in model.inputs.items())
    return f"{how} in {model.mode} mode on {what}"


def model_outputs(model: ModelInfo, code: Callable[[str], str] = str) -> str:
    """The outputs in the model's order, and which of them are read as detections."""
    text = ", ".join(code(name) for name in model.outputs)
    d = model.detections
    if d is not None:
        roles = [("boxes", d.boxes), ("scores", d.scores), ("classes", d.classes),
                 ("count", d.count)]
        text += "; detections from " + ", ".join(f"{role} {code(name)}"
                                                 for role, name in roles if name)
    return text


def witness_sentence(witness: PrecisionWitness) -> str:
    """The precision witness in one sentence: full precision or not, on how many probes, the
    worst error; when not, which probes lost precision."""
    head = "Precision witness: "
    if witness.probes == 0:
        return head + "fp32 precision not measured here (no probe with a float64 reference ran)."
    worst = (f"worst error {roundoffs(witness.worst_error_ulps)} unit roundoffs "
             f"({witness.worst_probe}; limit {witness.limit_ulps:g})")
    if witness.full_precision:
        return (f"{head}fp32 at full precision here: {witness.probes} probes against float64, "
                f"{worst}.")
    if witness.lossy:
        return (f"{head}fp32 not at full precision here: {', '.join(witness.lossy)} lost "
                f"precision against float64 ({len(witness.lossy)} of {witness.probes} probes); "
                f"{worst}.")
    return (f"{head}fp32 precision not shown here: {witness.probes} probes against float64, "
            f"{worst}; the golden's worst was {roundoffs(witness.golden_worst_error_ulps)}.")


def fleet_node_result(node: FleetNode) -> str:
    """One node's outcome in words: its error, or its verdict and suspected fault (a node's
    words, unescaped: each format escapes them for itself, ``render.escape``)."""
    if node.error is not None:
        return f"error: {node.error}"
    words = (node.verdict or "fingerprint only").replace("_", " ")
    if node.suspect is not None:
        reruns = len(node.suspect.reruns)
        again = sum(node.suspect.reruns)
        words += (f"; suspected fault, {node.suspect.classification} ({again} of {reruns}"
                  f" re-run(s) deviated again)")
    return words


# Each array status in words (the status itself is decided once, in compare/); every format
# shows these words, each in its own style. One table with the statuses' colours: ``palette``.
STATUS_WORDS: dict[str, str] = status_words()
