"""``TrainingRecord``: one run of a user's own training steps, as ``envaudit.training.record``
returns it and ``training_file`` keeps it. NumPy only.

The arrays are in computing order -- per step the batch, what the step returned, the variables
after it -- because a first difference is read in that order (``compare/training.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from envaudit.plain import plain
from envaudit.seeds import SeedReport
from envaudit.version import __version__


@dataclass(frozen=True)
class TrainingRecord:
    """A user's training steps as one run computed them, with the seeds it had."""

    steps: int
    mode: str  # eager, graph or xla: how the step function ran
    seeds: SeedReport
    seconds: float  # the steps' own time, reading the arrays out included
    tensorflow: str  # the TensorFlow version that ran them
    envaudit_version: str
    created_at: str  # UTC, ISO 8601
    arrays: Mapping[str, np.ndarray] = field(metadata={"json": False})

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray], steps: int, mode: str, seeds: SeedReport,
           seconds: float, tensorflow: str) -> TrainingRecord:
        """A record made now, by this envaudit."""
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(steps, mode, seeds, seconds, tensorflow, __version__, created, dict(arrays))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays, which travel as arrays (``training_file``)."""
        return plain(self)
