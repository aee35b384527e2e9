"""How many bytes a golden bundle's arrays may take once inflated, known before any is inflated.

A bundle is someone else's data. Its ``.npz`` files are zip archives, and deflate shrinks a run of
zeros about a thousandfold: a 14 MB file of many members, each under the per-array cap, inflates
to gigabytes, and at the cap to an out-of-memory kill. So the store sums what every member of every
file claims in its zip directory (``file_size``, which ``zipfile`` enforces while inflating: a
member never yields more) and refuses the bundle when the sum exceeds its ``Budget``, before NumPy
sees a byte. The budget follows from what the manifest says the bundle is:

- the canary workload records arrays whose dtypes and shapes are fixed (``workload/spec.py``), so
  its bundle may hold ``CANARY_MARGIN`` times their exact size for the modes it lists;
- a user model's arrays depend on the model; the workload keeps at most 256 MiB of layer outputs
  per mode, and ``USER_MODEL_BYTES`` leaves room for three modes of them, the inputs and the
  outputs. ``record`` refuses to write more, so a bundle envaudit wrote is always read back.

The zip directory itself is bounded too (``directory_problem``): ``zipfile`` builds an object per
listed member before anything can be checked, and a directory of millions of tiny entries would
cost gigabytes by itself. NumPy only, for the canary's spec tables.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from envaudit.workload import training_spec
from envaudit.workload.spec import IMAGES, PROBE_SPEC, PROBE_SPEC_V1, STAGE_SPEC, TWIN_SPEC
from envaudit.workload.types import MAX_DETECTIONS

# NumPy writes each array as a .npy member: a header padded to a multiple of 64 bytes (128 for
# every array envaudit records), then the data.
NPY_HEADER_BYTES = 128
# The canary's arrays are exactly known; twice their size leaves room for a header that grows
# and for a workload version that adds an array, and is still a few tens of MiB.
CANARY_MARGIN = 2
USER_MODEL_BYTES = 2 << 30
# A zip directory entry is 46 bytes plus the member's name (at most 104 for an array name) and
# extra fields (28 for zip64 sizes); 1 KiB per listed array is far above that.
DIRECTORY_ENTRY_BYTES = 1024
# Schema 1 stored the detections: image, class (int32) and score, box (float32) per detection.
_DETECTION_BYTES = IMAGES * MAX_DETECTIONS * (4 + 4 + 4 + 16) + 4 * NPY_HEADER_BYTES


@dataclass(frozen=True)
class Budget:
    """The most bytes a bundle's arrays may inflate to, and what kind of bundle it is for."""

    limit: int
    kind: str  # "a canary bundle of 3 modes", "a user model's bundle"

    def exceeded(self, actual: int) -> str:
        """The refusal's words: what the arrays would take and what this bundle may hold."""
        return (f"its arrays would inflate to {mib(actual)}, more than the {mib(self.limit)}"
                f" {self.kind} may hold")


def budget(*, user_model: bool, modes: int, schema_v1: bool = False,
           training: tuple[int, int] = (0, 0)) -> Budget:
    """The budget of a bundle with ``modes`` recorded modes of the canary (and ``training``:
    so many steps of its training in so many modes) or of a user model."""
    if user_model:
        return Budget(USER_MODEL_BYTES, "a user model's bundle")
    probes = PROBE_SPEC_V1 if schema_v1 else PROBE_SPEC
    exact = modes * _spec_bytes(STAGE_SPEC) + _spec_bytes(probes) + _spec_bytes(TWIN_SPEC)
    steps, trained = training
    if steps:
        arrays = len(training_spec.array_spec(1)) * steps
        exact += trained * (training_spec.spec_bytes(steps) + arrays * NPY_HEADER_BYTES)
    if schema_v1:
        exact += _DETECTION_BYTES
    plural = "s" if modes != 1 else ""
    return Budget(CANARY_MARGIN * exact, f"a canary bundle of {modes} mode{plural}")


def directory_problem(data: bytes, arrays: int) -> str | None:
    """Why the zip directory of ``data`` is too large for ``arrays`` listed arrays, or None
    (also None when ``data`` is no zip: ``zipfile`` then says so)."""
    size = _directory_size(data)
    allowed = DIRECTORY_ENTRY_BYTES * (arrays + 1)
    if size is None or size <= allowed:
        return None
    return (f"its zip directory takes {size} bytes, more than {allowed} for the {arrays} arrays"
            " its manifest lists")


def mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def _spec_bytes(spec: Mapping[str, tuple[np.dtype, tuple[int, ...]]]) -> int:
    return sum(dtype.itemsize * math.prod(shape) + NPY_HEADER_BYTES
               for dtype, shape in spec.values())


def _directory_size(data: bytes) -> int | None:
    """The central directory's size as ``zipfile`` will read it (its end records, zip64 too)."""
    # zipfile's own reader of the end records: private, but unchanged since Python 2.6, and the
    # only way to know the size exactly as ZipFile will use it, before it parses the directory.
    try:
        end = zipfile._EndRecData(io.BytesIO(data))  # type: ignore[attr-defined]
    except (OSError, zipfile.BadZipFile):
        return None
    return None if not end else int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
