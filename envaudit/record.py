"""``envaudit record``: run the golden workload and a few steps of the canary's training here and
store them as a golden bundle."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Fingerprint
from envaudit.store import GoldenBundle, check_writable, load_bundle, write_bundle
from envaudit.tf32 import (
    Tf32Option,
    Tf32State,
    decide,
    fingerprint_capabilities,
    require_option,
)
from envaudit.workload import tf32_switch

Progress = Callable[[str], None]


def record(path: Path, *, force: bool = False, redact: bool = True,
           progress: Progress = lambda _m: None,
           tf32: Tf32Option = "default", steps: int | None = None,
           training_modes: Sequence[str] | None = None,
           modes: Sequence[str] | None = None,
           note: Progress = lambda _m: None) -> GoldenBundle:
    """Record a bundle at ``path``; refuses an existing one unless ``force``. A bundle is made
    to be shared, so its fingerprint is redacted unless ``redact`` is False (the manifest says
    which; ``fingerprint_id`` is the one computed before redaction). ``tf32``: TensorFlow's TF32
    switch for the run (``default``: TensorFlow's choice); the state it had is recorded.
    ``steps`` steps of the canary's training (default 3; 0: none) are recorded in each of
    ``training_modes`` (default eager and graph: XLA compiles the whole step, which takes
    seconds, so it is recorded when asked for). ``modes``: the execution modes to record (default
    ``envaudit.modes.recorded_by_default()``: eager, graph, xla; a deployment runtime such as
    tflite is recorded when asked for; ``note`` hears each one's conversion gap)."""
    from envaudit.workload import training_spec as spec

    path = Path(path)
    steps = spec.DEFAULT_STEPS if steps is None else steps
    trained = spec.DEFAULT_MODES if training_modes is None else tuple(training_modes)
    require_training(steps, trained)
    check_writable(path, force)  # before the seconds of work, not after
    require_option(tf32)
    from envaudit import modes as registry

    recorded = _recorded_modes(modes)
    from envaudit.workload import WORKLOAD_ID, WORKLOAD_VERSION
    from envaudit.workload.architecture import OUTSIDE_XLA
    from envaudit.workload.assets import load_assets, used_checksums
    from envaudit.workload.twin import Twin

    assets = load_assets()
    result, trained_run, switch = _run(assets, _with_reference(recorded), tf32, steps, trained,
                                       progress)
    progress("computing the float64 twin")
    twin = Twin(assets.weights).run(result.stages["decode"])
    for gap in conversion_gaps(result, twin):
        note(f"conversion gap: {gap.words}")
    devices = _devices(result, trained_run, recorded)
    fingerprint, state = _environment(tf32, switch, devices.values(), redact, progress)
    progress("writing the bundle")
    write_bundle(
        path,
        fingerprint=fingerprint,
        workload={"id": WORKLOAD_ID, "version": WORKLOAD_VERSION,
                  "assets": used_checksums(assets), "timings": dict(result.timings)},
        images=result.images,
        stages={mode: run.stages for mode, run in result.runs.items() if mode in recorded},
        probes=result.probes,
        twin=twin,
        not_run=result.not_run,
        outside_xla=OUTSIDE_XLA if registry.XLA in result.runs else {},
        devices=devices, device_names=result.device_names,
        force=force, redacted=redact, tf32_state=state,
        training={m: r.arrays for m, r in trained_run.runs.items()} if trained_run else None,
        runtimes=result.runtimes,
    )
    return load_bundle(path)


def _devices(result: Any, trained_run: Any, recorded: Sequence[str]) -> dict[str, str]:
    """The device of every array recorded (a mode run only as a reference is not)."""
    ran = {**result.devices, **(trained_run.devices if trained_run else {})}
    return {key: device for key, device in ran.items()
            if not key.startswith("stage/") or key.split("/")[1] in recorded}


def conversion_gaps(result: Any, twin: Any) -> list[Any]:
    """Each converted mode of ``result`` (a ``WorkloadResult``) against its graph mode."""
    from envaudit import modes as registry
    from envaudit.compare.conversion import measure
    from envaudit.workload.types import SCORE_THRESHOLD

    reference = result.runs.get(registry.CONVERTED_FROM)
    if reference is None:
        return []
    return [measure(mode, registry.CONVERTED_FROM, reference.stages, run.stages, twin=twin,
                    detections=(reference.detections, run.detections),
                    score_threshold=SCORE_THRESHOLD, runtime=result.runtimes.get(mode))
            for mode, run in result.runs.items() if registry.get(mode).converted]


def _run(assets: Any, modes: Sequence[str], tf32: Tf32Option, steps: int,
         trained: Sequence[str], progress: Progress) -> tuple[Any, Any, tuple]:
    """The workload in ``modes`` and the training steps in those of ``trained`` that ran, under
    ``tf32``; and the TF32 switch as they ran."""
    from envaudit.workload import run_workload

    progress("running the workload")
    with tf32_switch.switched(tf32):
        result = run_workload(assets, modes=modes)
        if steps:
            progress(f"training {steps} step{'s' if steps != 1 else ''}")
        trained_run = _train(assets, [m for m in trained if m in result.runs], steps)
        return result, trained_run, tf32_switch.reading()


def _train(assets: Any, modes: Sequence[str], steps: int) -> Any:
    """The training steps in those of ``modes`` that ran (None: no steps or no mode)."""
    if not steps or not modes:
        return None
    from envaudit.workload.training import run_training

    return run_training(assets, modes, steps, probes=False)


def _with_reference(recorded: tuple[str, ...]) -> tuple[str, ...]:
    """``recorded``, and graph mode beside a converted mode: its conversion gap's reference."""
    from envaudit import modes as registry

    converted = any(registry.get(m).converted for m in recorded)
    return registry.in_order([*recorded, *([registry.CONVERTED_FROM] if converted else [])])


def _recorded_modes(requested: Sequence[str] | None) -> tuple[str, ...]:
    """The modes to record, in registry order: those asked for, or the default ones."""
    from envaudit import modes as registry

    if requested is None:
        return registry.recorded_by_default()
    unknown = registry.unknown(requested)
    if unknown or not requested:
        raise EnvauditError(f"unknown mode {', '.join(unknown) or '(none given)'}; choose from"
                            f" {', '.join(registry.names())}")
    return registry.in_order(requested)


def require_training(steps: int, modes: Sequence[str]) -> None:
    """Refuse a number of steps or a mode a training run cannot have."""
    from envaudit.workload import training_spec as spec

    if not 0 <= steps <= spec.MAX_STEPS:
        raise EnvauditError(f"--steps must be from 0 (no training) to {spec.MAX_STEPS}")
    wrong = [m for m in modes if m not in spec.MODES]
    if wrong or not modes:
        raise EnvauditError(f"training has no mode {', '.join(wrong) or '(none given)'}; choose"
                            f" from {', '.join(spec.MODES)}")


def _environment(tf32: Tf32Option, switch: tuple, devices: Iterable[str], redact: bool,
                 progress: Progress) -> tuple[Fingerprint, Tf32State]:
    """This environment's fingerprint (redacted for sharing unless asked not to) and the TF32
    state the run had."""
    from envaudit.fingerprint import capture

    progress("capturing the fingerprint")
    fingerprint = capture()  # after the workload, so the libraries TensorFlow loaded are listed
    state = decide(tf32, *switch, devices, fingerprint_capabilities(fingerprint))
    if redact:
        from envaudit.fingerprint.redact import Redactor

        fingerprint = Fingerprint(Redactor.for_trees(fingerprint).tree(fingerprint.data))
    return fingerprint, state
