"""``python -m envaudit.workload OUT.npz [MODES [MODEL.json]] [--tf32=on|off] [--training=STEPS
--training-modes=MODES [--no-workload] [--op-determinism]]``: run the workload once and save its
arrays.

This is the child process of a confirmation re-run: the parent starts it with one environment
setting put back (a variable restored, an instruction set capped) and compares what it wrote with
the golden bundle. It must run in a fresh process because most such settings are read once, when
TensorFlow and its kernel libraries load. With ``MODEL.json`` (written by the parent into its own
private folder, from a model it has already verified) it runs the user's model on the inputs that
file names, instead of the canary, and the canary probes beside it; a model recorded in a tflite
mode is converted (from the conversion cache, as the check's own run) and run by LiteRT with the
kernels and threads this process's variables set. With ``--training=STEPS`` it
also runs that many steps of the canary's training in ``--training-modes`` (``workload/
training.py``), or of the user's model on the training file the spec names (``workload/
model_training.py``), their arrays saved beside the mode's stages; ``--no-workload``: the steps
alone.
``--op-determinism`` turns TensorFlow's op determinism on first; an op that refuses to run under
it is written to stderr in TensorFlow's words and the child exits 3.

It is started only through ``workload.child.run_child``, which keeps the working folder, user
site-packages and Python's code-choosing variables out of it; run by hand, it imports what any
``python -m`` would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from envaudit import modes as registry
from envaudit.errors import EnvauditError
from envaudit.tf32 import OPTIONS
from envaudit.workload import tf32_switch
from envaudit.workload.types import keyed_arrays


def main(argv: list[str]) -> int:
    # --tf32=on|off: TensorFlow's TF32 switch, set before the first op (the last one given wins:
    # a re-run's own comes after the check's).
    tf32 = [a.partition("=")[2] for a in argv if a.startswith("--tf32=")]
    training = [a.partition("=")[2] for a in argv if a.startswith("--training=")]
    trained = [a.partition("=")[2] for a in argv if a.startswith("--training-modes=")]
    determinism, workload = "--op-determinism" in argv, "--no-workload" not in argv
    argv = [a for a in argv if not a.startswith(("--tf32=", "--training", "--op-determinism",
                                                 "--no-workload"))]
    if len(argv) not in (1, 2, 3) or not set(tf32) <= set(OPTIONS) or not all(
            t.isdigit() for t in training) or (training and not trained):
        sys.stderr.write("usage: python -m envaudit.workload OUT.npz"
                         " [MODE,MODE,... [MODEL.json]] [--tf32=on|off|default]"
                         " [--training=STEPS --training-modes=MODES [--no-workload]"
                         " [--op-determinism]]\n")
        return 2
    modes = argv[1].split(",") if len(argv) >= 2 else [registry.DEFAULT]
    try:
        with tf32_switch.switched(tf32[-1] if tf32 else "default"):
            if determinism:
                from envaudit.workload import tf_runtime

                tf_runtime.quiet()
                import tensorflow as tf

                tf.config.experimental.enable_op_determinism()
            steps = int(training[-1]) if training else 0
            if len(argv) == 3:
                arrays = _user_model(Path(argv[2]), modes[0], steps, workload)
            elif training and not workload:
                arrays = _training(trained[-1].split(","), steps)
            else:
                from envaudit.workload import run_workload

                result = run_workload(modes=modes)
                steps = _training(trained[-1].split(","), int(training[-1])) if training else {}
                arrays = {**keyed_arrays({m: r.stages for m, r in result.runs.items()},
                                         result.probes), **steps}
    except EnvauditError as exc:
        sys.stderr.write(f"envaudit: error: {exc}\n")
        return 2
    except Exception as exc:  # noqa: BLE001 -- an op that op determinism refuses, in its words
        if not determinism:
            raise
        sys.stderr.write(f"{type(exc).__name__}: {refusal(exc)}\n")
        return 3
    np.savez(argv[0], **arrays)
    return 0


def refusal(exc: BaseException) -> str:
    """TensorFlow's words for an op that refused to run under op determinism: the line that names
    the op (its messages start with where in the user's code, then say what)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "determinis" in line.lower()]
    return (named or lines or [type(exc).__name__])[-1][:500]


def _training(modes: list[str], steps: int) -> dict[str, np.ndarray]:
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.assets import load_assets
    from envaudit.workload.training import run_training

    result = run_training(load_assets(), modes, steps, probes=False)
    return keyed_arrays({m: r.arrays for m, r in result.runs.items()}, {})


def _user_model(spec_path: Path, mode: str, steps: int = 0,
                workload: bool = True) -> dict[str, np.ndarray]:
    """The user's model run (``workload``) with the probes beside it, and ``steps`` steps of its
    training on the training file the spec names."""
    spec = json.loads(spec_path.read_text())
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    arrays = _model_run(spec, mode) if workload else {}  # the model first, as a check runs it
    if steps:
        if "train_inputs" not in spec:
            raise EnvauditError("the model spec names no train inputs to train on")
        from envaudit.workload.model_training import train_model

        with np.load(spec["train_inputs"], allow_pickle=False) as npz:
            data = {name: npz[name] for name in npz.files}
        arrays.update(keyed_arrays({mode: train_model(Path(spec["path"]), data, steps,
                                                      mode).arrays}, {}))
    return arrays


def _model_run(spec: dict, mode: str) -> dict[str, np.ndarray]:
    from envaudit.workload import tf_runtime

    tf_runtime.quiet()
    from envaudit.workload.assets import load_probe_jpeg
    from envaudit.workload.probes import run_probes
    from envaudit.workload.user_model import LoadedModel, RunsModel, run_model

    with np.load(spec["inputs"], allow_pickle=False) as npz:
        stored = {name: npz[name] for name in npz.files}
    from envaudit.usermodel.spec import CONVERTED_MODES

    loaded = LoadedModel(Path(spec["path"]), spec["kind"], spec["signature"])
    if mode in CONVERTED_MODES:
        from envaudit.workload.user_tflite import ConvertedUserModel

        model: RunsModel = ConvertedUserModel(loaded, mode, spec["sha256"])
    else:
        model = loaded
    if spec["input_kind"] == "images":
        encoded = [stored[f"image.{i}"].tobytes() for i in range(len(spec["files"]))]
        feeds: dict = {"images": (spec["files"], encoded)}
    else:
        feeds = {"arrays": stored}
    tf_runtime.warm_up(lambda: run_model(model, layers=spec["layers"], **feeds))  # as the check
    run = run_model(model, layers=spec["layers"], **feeds)
    probes = run_probes(load_probe_jpeg(), beside=mode)  # the probes that ran beside it
    return keyed_arrays({mode: run.stages}, probes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
