"""Tensor metrics: how far one array moved from its golden value, and from the float64 twin.

Definitions: docs/design.md, "Tensor metrics". Every metric is computed in float64 so that integer
arrays (uint8 decoded pixels, int class ids) and float arrays go through the same code without
overflow.

Constraints for the next editor:
- ``identical`` is byte equality of same-dtype, same-shape arrays (``bit_identical``, the one
  definition every module uses); nothing here may loosen it.
- Relative errors are measured against the tensor's *scale* (max |golden|), never elementwise:
  elementwise relative error and raw ULP counts explode near zero and make every ReLU output look
  broken.
- A shape or dtype mismatch is a finding about the environment (e.g. a decoder that returns another
  size), not a crash: the comparison is not identical, ``max_abs``/``max_rel``/``ulp_at_scale`` are
  ``inf``, ``mismatch_fraction`` is 1.0 and ``cosine`` is NaN (undefined). The twin errors are still
  computed for each side whose shape matches its reference (``inf`` for a side that does not).
- Pure NumPy: no TensorFlow here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from envaudit.compare.noise import array_status
from envaudit.compare.types import ArrayKind, ArrayRole, TensorComparison
from envaudit.compare.units import ulp

INF = float("inf")


def compare_tensor(
    name: str,
    kind: ArrayKind,
    family: str,
    golden: np.ndarray,
    current: np.ndarray,
    reference: np.ndarray | None = None,
    golden_reference: np.ndarray | None = None,
    spread: float = 0.0,
    mode: str = "eager",
    role: ArrayRole | None = None,
) -> TensorComparison:
    """Compare ``current`` with ``golden`` (both computed in execution ``mode``); errors
    against the float64 twin when one is given; the ``status`` judged by ``noise.array_status``
    (``spread``: the run-to-run spread measured by --repeat, within which a difference is noise).

    ``reference`` is the twin's output for the current run's input; ``golden_reference`` the twin's
    output for the golden run's input (defaults to ``reference``: usually the same input).
    ``role``: what the array is (None: the kind's own role, a canary stage or a probe).
    """
    measured = _measure(name, kind, family, np.asarray(golden), np.asarray(current), reference,
                        reference if golden_reference is None else golden_reference)
    return replace(measured, status=array_status(measured, spread), mode=mode,
                   role=role or kind)


def compare_arrays(
    kind: ArrayKind,
    golden: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    families: Mapping[str, str] | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    golden_references: Mapping[str, np.ndarray] | None = None,
    spread: float = 0.0,
    mode: str = "eager",
    roles: Mapping[str, ArrayRole] | None = None,
) -> tuple[TensorComparison, ...]:
    """Every golden array of one kind compared with this run's, in the golden's order; one the
    run did not produce is ``not_run``. ``families`` names each array's family (default: its own
    name, as for stages); ``roles`` says what each array is (default: the kind's own role, as
    for the canary's stages and probes; a user model's come from ``ModelInfo.roles``)."""
    compared = []
    for name, value in golden.items():
        family = families.get(name, name) if families is not None else name
        role = roles.get(name) if roles is not None else None
        if name not in current:
            compared.append(not_run(name, kind, family, value, mode, role))
            continue
        compared.append(compare_tensor(
            name, kind, family, value, current[name],
            reference=references.get(name) if references is not None else None,
            golden_reference=golden_references.get(name) if golden_references is not None
            else None,
            spread=spread, mode=mode, role=role))
    return tuple(compared)


def _measure(name: str, kind: ArrayKind, family: str, golden: np.ndarray, current: np.ndarray,
             reference: np.ndarray | None,
             golden_reference: np.ndarray | None) -> TensorComparison:
    """The metrics alone; the status is left for ``noise.array_status`` to judge."""
    golden_error = _error_or_none(golden, golden_reference)
    current_error = _error_or_none(current, reference)
    common = dict(
        name=name, kind=kind, family=family, shape=tuple(int(n) for n in golden.shape),
        dtype=str(golden.dtype), golden_error=golden_error, current_error=current_error,
        error_growth=error_growth(golden_error, current_error),
    )
    if golden.shape != current.shape or golden.dtype != current.dtype:
        return TensorComparison(
            identical=False, max_abs=INF, max_rel=INF, mismatch_fraction=1.0, ulp_at_scale=INF,
            cosine=float("nan"), **common,
        )
    mismatched = _bit_mismatch(golden, current)
    if not mismatched.any():
        return TensorComparison(
            identical=True, max_abs=0.0, max_rel=0.0, mismatch_fraction=0.0, ulp_at_scale=0.0,
            cosine=1.0, **common,
        )
    g = golden.astype(np.float64).ravel()
    c = current.astype(np.float64).ravel()
    diff = _abs_diff(g, c)
    max_abs = float(diff.max())
    scale = tensor_scale(golden)
    if scale == 0.0:
        # An all-zero golden has no scale of its own; measure against what appeared instead.
        scale = tensor_scale(current)
    max_rel = _ratio(max_abs, scale)
    return TensorComparison(
        identical=False,
        max_abs=max_abs,
        max_rel=max_rel,
        mismatch_fraction=float(mismatched.mean()),
        ulp_at_scale=_ratio(max_abs, ulp(golden.dtype, scale)),
        cosine=cosine_similarity(g, c),
        **common,
    )


def not_run(name: str, kind: ArrayKind, family: str, golden: np.ndarray,
            mode: str = "eager", role: ArrayRole | None = None) -> TensorComparison:
    """A golden array this run did not produce: nothing to measure, never identical."""
    golden = np.asarray(golden)
    return TensorComparison(
        name=name, kind=kind, family=family, shape=tuple(int(n) for n in golden.shape),
        dtype=str(golden.dtype), identical=False, max_abs=INF, max_rel=INF,
        mismatch_fraction=1.0, ulp_at_scale=INF, cosine=float("nan"), golden_error=None,
        current_error=None, error_growth=None, status="not_run", mode=mode, role=role)


def bit_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """The one definition of "identical": same dtype, same shape, same bytes (so -0.0 differs
    from 0.0 and NaN payloads count)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def error_growth(golden_error: float | None, current_error: float | None) -> float | None:
    """current_error / golden_error: None without both errors, ``inf`` from an exact golden (1.0
    when both are exact)."""
    if golden_error is None or current_error is None:
        return None
    if golden_error == 0.0:
        return 1.0 if current_error == 0.0 else INF
    return current_error / golden_error


def relative_rms_error(x: np.ndarray, ref: np.ndarray) -> float:
    """RMS(x - ref) / RMS(ref), in float64: the error of a run against the float64 twin.

    0.0 when both are exactly zero; ``inf`` when ``ref`` is zero and ``x`` is not, or when a value
    is non-finite. Raises ``ValueError`` when the shapes differ.
    """
    x = np.asarray(x)
    ref = np.asarray(ref)
    if x.shape != ref.shape:
        raise ValueError(f"shape {x.shape} cannot be compared with reference shape {ref.shape}")
    if x.size == 0:
        return 0.0
    xf = x.astype(np.float64)
    rf = ref.astype(np.float64)
    if not (np.isfinite(xf).all() and np.isfinite(rf).all()):
        return INF
    err = float(np.sqrt(np.mean(np.square(xf - rf))))
    base = float(np.sqrt(np.mean(np.square(rf))))
    return _ratio(err, base)


def tensor_scale(x: np.ndarray) -> float:
    """max |x| over the finite elements (0.0 for an empty or all-non-finite array)."""
    xf = np.asarray(x).astype(np.float64)
    finite = np.abs(xf[np.isfinite(xf)])
    return float(finite.max()) if finite.size else 0.0


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two flattened arrays.

    1.0 for two zero vectors (they are equal), 0.0 for one zero vector, NaN with non-finite values.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def _bit_mismatch(golden: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Per element: do the bytes differ? (NaN payloads and -0.0 vs 0.0 count as differences.)"""
    n = golden.size
    width = golden.dtype.itemsize
    if width in (1, 2, 4, 8):  # one unsigned integer per element: the same test, vectorized
        unsigned = np.dtype(f"u{width}")
        return (np.ascontiguousarray(golden).reshape(-1).view(unsigned)
                != np.ascontiguousarray(current).reshape(-1).view(unsigned))
    gb = np.ascontiguousarray(golden).reshape(-1).view(np.uint8).reshape(n, width)
    cb = np.ascontiguousarray(current).reshape(-1).view(np.uint8).reshape(n, width)
    return (gb != cb).any(axis=1)


def _abs_diff(g: np.ndarray, c: np.ndarray) -> np.ndarray:
    """|c - g| where equal values (including equal infinities and NaN vs NaN) give 0, NaN vs a
    number gives inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(c - g)
    diff[g == c] = 0.0
    diff[np.isnan(g) & np.isnan(c)] = 0.0
    diff[np.isnan(diff)] = INF
    return diff


def _ratio(num: float, den: float) -> float:
    if num == 0.0:
        return 0.0
    if den == 0.0 or not math.isfinite(den):
        return INF
    return num / den


def _error_or_none(x: np.ndarray, ref: np.ndarray | None) -> float | None:
    if ref is None:
        return None
    ref = np.asarray(ref)
    if x.shape != ref.shape:
        return INF
    return relative_rms_error(x, ref)


def within_tolerance(golden: np.ndarray, current: np.ndarray, rtol: float, atol: float) -> bool:
    """Every element within ``atol + rtol * |golden|`` (``numpy.isclose`` with the golden as the
    reference), same shape and dtype; NaN only where the golden has NaN."""
    golden, current = np.asarray(golden), np.asarray(current)
    if golden.shape != current.shape or golden.dtype != current.dtype:
        return False
    g = golden.astype(np.float64)
    c = current.astype(np.float64)
    return bool(np.isclose(c, g, rtol=rtol, atol=atol, equal_nan=True).all())


def tolerated(comparison: TensorComparison, golden: np.ndarray, current: np.ndarray | None,
              rtol: float, atol: float, label: str) -> TensorComparison:
    """``comparison`` judged against a tolerance the user accepts for it: a difference within it
    is ``tolerated`` (never ``identical``), one beyond it ``changed`` even where it would be
    rounding noise; identical, not-run and precision-loss statuses stand."""
    if comparison.status in ("identical", "not_run", "precision_loss") or current is None:
        return replace(comparison, tolerance=label)
    inside = within_tolerance(golden, current, rtol, atol)
    return replace(comparison, tolerance=label, status="tolerated" if inside else "changed")


def placed(comparisons: Sequence[TensorComparison], golden: Mapping[str, str],
           current: Mapping[str, str]) -> tuple[TensorComparison, ...]:
    """The comparisons with the device that computed each array on both sides, looked up under
    its ``keyed_arrays`` key (``stage/MODE/NAME``, ``probe/NAME``)."""
    def key(c: TensorComparison) -> str:
        return f"probe/{c.name}" if c.kind == "probe" else f"stage/{c.mode}/{c.name}"

    return tuple(replace(c, device=current.get(key(c)), golden_device=golden.get(key(c)))
                 for c in comparisons)


def digest(array: np.ndarray) -> str:
    """A short SHA-256 of an array's dtype, shape and bytes: equal digests, equal bits (how fleet
    peers that share a fingerprint are compared without sending their arrays)."""
    array = np.ascontiguousarray(array)
    head = f"{array.dtype.str}{list(array.shape)}".encode()
    return hashlib.sha256(head + b"\0" + array.tobytes()).hexdigest()[:32]
