"""The op probes compared with the golden's: per probe family, and against float64 where a probe
has an exact float64 definition (``workload/probe_reference.py``), so that a probe whose arithmetic
lost precision is ``precision_loss`` and the precision witness can measure this environment."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from envaudit.compare.tensors import compare_arrays
from envaudit.compare.types import TensorComparison
from envaudit.modes import names, probe_mode
from envaudit.workload.architecture import PROBE_FAMILIES


def compare_probes(golden: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray],
                   spread: float = 0.0) -> tuple[TensorComparison, ...]:
    """Every golden probe compared with this run's, grouped by the mode each probe runs in
    (``modes.probe_mode``), in registry order: the eager probes first, then the xla ones."""
    from envaudit.workload.probe_reference import references

    refs = references()
    return tuple(
        p for mode in names()
        for p in compare_arrays("probe", {k: v for k, v in golden.items()
                                          if probe_mode(k) == mode},
                                current, families=PROBE_FAMILIES, references=refs,
                                golden_references=refs, spread=spread, mode=mode))
