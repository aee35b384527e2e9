"""envaudit: did the environment change the numbers your detection model produces?

The public API is four functions that return plain, typed data:

- ``capture()`` -> ``Fingerprint`` of this environment (never imports TensorFlow);
- ``diff(a, b)`` -> the ``Change``s between two fingerprints, numerics-relevant first;
- ``run_workload()`` -> ``WorkloadResult`` of the golden detection workload (imports TensorFlow);
- ``check(golden=...)`` -> ``CheckResult`` against a golden bundle;
- ``envaudit.training``: a user's own training step recorded, compared, repeated for
  determinism (``record``, ``compare``, ``check``, ``determinism``, ``save``, ``load``).

Imports are lazy so that ``import envaudit`` stays cheap and TensorFlow is loaded only by the
functions that run it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from envaudit.compare.types import DEFAULT_GROWTH_TARGET
from envaudit.version import __version__

if TYPE_CHECKING:
    from envaudit.fingerprint import Change, Fingerprint
    from envaudit.result import CheckResult
    from envaudit.tf32 import Tf32Option
    from envaudit.usermodel.spec import DetectionNames, Tolerances
    from envaudit.workload.assets import Assets
    from envaudit.workload.types import WorkloadResult


def capture() -> Fingerprint:
    """Fingerprint the current environment."""
    from envaudit.fingerprint import capture as _capture

    return _capture()


def diff(a: Fingerprint, b: Fingerprint) -> tuple[Change, ...]:
    """Changes from fingerprint ``a`` (golden) to ``b`` (current), numerics-relevant first."""
    from envaudit.fingerprint import diff as _diff

    return _diff(a, b)


def run_workload(assets: Assets | None = None,
                 modes: Sequence[str] | None = None) -> WorkloadResult:
    """Run the golden detection workload once in this process, in each execution mode of
    ``modes`` (default: eager, graph and xla, ``envaudit.modes.recorded_by_default()``; imports
    TensorFlow)."""
    from envaudit.workload import run_workload as _run

    return _run(assets, modes)


def check(
    golden: str | None = None,
    *,
    repeat: int = 1,
    confirm: bool = True,
    strict: bool = False,
    modes: Sequence[str] | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    model: str | None = None,
    tolerances: Tolerances | None = None,
    detections: DetectionNames | None = None,
    bisect: bool = False,
    tf32: Tf32Option = "default",
    growth_target: float = DEFAULT_GROWTH_TARGET,
) -> CheckResult:
    """Run the workload here and compare it with a golden bundle (``golden``, else the user's
    default bundle, else the shipped reference), in ``modes`` (default: all the golden
    recorded). A golden of the user's own model re-runs that model (``model``: its path, if it
    moved; ``tolerances`` from ``usermodel.spec.parse_tolerances``); ``bisect`` rebuilds
    environments with uv to confirm or rule out package changes; ``tf32`` ("on", "off" or
    "default": TensorFlow's choice) sets TensorFlow's TF32 switch for the run and every re-run,
    putting this process's back after. Training steps the golden recorded (three by default) are
    trained again and compared step by step (``result.training``); ``growth_target``: the
    relative weight difference their growth is projected to. See
    ``envaudit.pipeline.compose.check``."""
    from envaudit.pipeline.compose import check as _check

    return _check(golden=golden, repeat=repeat, confirm=confirm, strict=strict, modes=modes,
                  progress=progress, model=model, tolerances=tolerances,
                  detections=detections, bisect=bisect, tf32=tf32, growth_target=growth_target)


def __getattr__(name: str) -> Any:
    # ``envaudit.training`` (a user's own training step) without importing it, nor the NumPy it
    # needs, with the package.
    if name == "training":
        import importlib

        return importlib.import_module("envaudit.training")
    raise AttributeError(f"module 'envaudit' has no attribute {name!r}")


__all__ = ["__version__", "capture", "diff", "run_workload", "check", "training"]
