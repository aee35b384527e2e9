"""Environment bisection: confirm or rule out a package change by rebuilding the environment.

A re-run cannot put a package back, so a TensorFlow, NumPy or Keras upgrade could only ever be
"likely". Here every package change group (``environments.packages``: TensorFlow with its
companion wheels, NumPy, Keras, then each other numerics package) is put back in an isolated
environment built with uv (``environments.uv``), the workload runs there, and its bits are held
against the golden's and against this run's:

- the whole golden package set first: are packages the cause at all? If restoring all of them
  changes nothing, every group is ruled out at once;
- then the groups, narrowing like a bisection: a half whose restoration changes nothing is ruled
  out as a whole, a half whose restoration alone reproduces the golden bits rules the other half
  out; two groups or fewer are tried one by one.

A group is **confirmed** when restoring it alone reproduces the golden bits exactly, **ruled out**
when restoring it changes nothing. What "nothing" means is measured, not assumed: where a rebuilt
environment gives other bits than this one for a reason of its own (a package built differently
from the one installed here), a control environment with this environment's own versions is
built, and "unchanged" means "identical to the control". A group that cannot be restored (its
golden version is not a plain release, it came from a URL, the index cannot be reached, no wheel
exists for this platform) keeps its confidence, and the reason goes into its evidence.

Environments are cached by package set; so are the arrays a workload wrote in one, keyed by the
environment, this machine's fingerprint id (every numerics-relevant field, the variables
included), the modes, the model a user-model check runs and envaudit's own code: the same
environment on the same machine computes the same bits.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from envaudit.attribute.types import CONFIDENCES, Cause, kind_of
from envaudit.compare.tensors import bit_identical
from envaudit.environments.packages import (
    PackageGroup,
    PackageSet,
    base_pins,
    package_groups,
    restore_problem,
    restored,
)
from envaudit.fingerprint.types import Fingerprint
from envaudit.plain import plain

Outcome = Literal["reproduced", "unchanged", "partial", "failed"]
Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Trial:
    """One environment tried: what it put back, its packages, what its bits showed."""

    label: str  # "the whole golden package set", "tensorflow restored", ...
    groups: tuple[str, ...]  # the change groups put back
    pins: tuple[str, ...]  # "tensorflow-cpu==2.20.0", ...: the package set that was tried
    outcome: Outcome
    detail: str  # one sentence: what the bits showed, or why there were none
    cached: bool = False  # its arrays came from the result cache

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Bisection:
    """What the environment bisection found, per change group."""

    groups: tuple[str, ...]  # the package change groups, "tensorflow: tensorflow-cpu 2.20.0 -> ..."
    trials: tuple[Trial, ...]
    confirmed: tuple[str, ...]  # group names
    ruled_out: tuple[str, ...]
    refused: Mapping[str, str] = field(default_factory=dict)  # group -> why it was not restored
    failure: str | None = None  # why no environment could be built at all
    # Groups that give the golden bits back only when restored together (none of them alone).
    together: tuple[str, ...] = ()
    changes: tuple[PackageGroup, ...] = field(default=(), metadata={"json": False})

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


Build = Callable[[PackageSet], Path]  # the python of an environment for these pins
Run = Callable[[Path, Path], "Arrays | str"]  # python, output file -> arrays or why not


def bisect(golden_fp: Fingerprint, current_fp: Fingerprint, golden: Arrays, current: Arrays,
           run: Run, build: Build, progress: Callable[[str], None] = lambda _m: None,
           result_key: str = "") -> Bisection:
    """Bisect the package changes from ``golden_fp`` to ``current_fp``. ``golden`` and
    ``current``: the arrays under comparison (``keyed_arrays`` keys) of the golden and of this
    run; ``run`` runs the workload with an environment's python; ``build`` returns that python
    (raising ``EnvBuildError``); ``result_key`` names what ``run`` computes, for the result
    cache (empty: no cache)."""
    groups = package_groups(golden_fp, current_fp)
    refused = {g.name: why for g in groups if (why := restore_problem(g))}
    usable = [g for g in groups if g.name not in refused]
    shown = tuple(g.describe() for g in groups)
    if not usable:
        return Bisection(shown, (), (), (), refused,
                         failure=None if not groups else "no package change can be restored: "
                         + "; ".join(f"{k}: {v}" for k, v in refused.items()),
                         changes=tuple(groups))
    bench = _Bench(base_pins(current_fp), golden, current, run, build, progress, result_key)
    confirmed: list[str] = []
    ruled_out: list[str] = []
    whole = bench.trial(usable, "the whole golden package set")
    if whole.outcome == "unchanged":
        ruled_out += [g.name for g in usable]
    elif len(usable) == 1:
        _judge(usable[0], whole, confirmed, ruled_out)
    elif whole.outcome != "failed":
        _narrow(bench, usable, confirmed, ruled_out)
    trials = bench.final_trials()
    if bench.control_note:
        trials = (*trials, bench.control_note)
    built = any(t.outcome != "failed" for t in trials)
    failure = None if built else next((t.detail for t in trials), None)
    # A control built late can turn a trial's "partial" into "unchanged": judge again from it.
    outcomes = {t.groups: t for t in trials}
    for group in usable:
        alone = outcomes.get((group.name,))
        if alone and group.name not in confirmed + ruled_out:
            _judge(group, alone, confirmed, ruled_out)
    together: tuple[str, ...] = ()
    if trials and trials[0].outcome == "reproduced" and not confirmed and len(usable) > 1:
        # The golden bits need several groups at once: which ones is not known, so none is
        # ruled out; the set is confirmed as a whole.
        together, ruled_out = tuple(g.name for g in usable), []
    return Bisection(shown, trials, tuple(confirmed), tuple(ruled_out), refused, failure,
                     together, changes=tuple(groups))


def _narrow(bench: _Bench, groups: Sequence[PackageGroup], confirmed: list[str],
            ruled_out: list[str]) -> None:
    if len(groups) <= 2:
        for group in groups:
            _judge(group, bench.trial([group], f"{group.name} restored"), confirmed, ruled_out)
        return
    left, right = groups[: len(groups) // 2], groups[len(groups) // 2:]
    tried = bench.trial(left, " and ".join(g.name for g in left) + " restored")
    if tried.outcome == "unchanged":
        ruled_out += [g.name for g in left]
        _narrow(bench, right, confirmed, ruled_out)
        return
    if tried.outcome == "reproduced":
        ruled_out += [g.name for g in right]
    if len(left) == 1:  # that trial was the group alone: judged, never tried twice
        _judge(left[0], tried, confirmed, ruled_out)
    else:
        _narrow(bench, left, confirmed, ruled_out)
    if tried.outcome != "reproduced":
        _narrow(bench, right, confirmed, ruled_out)


def _judge(group: PackageGroup, trial: Trial, confirmed: list[str], ruled_out: list[str]) -> None:
    if group.name in confirmed or group.name in ruled_out:
        return
    if trial.outcome == "reproduced":
        confirmed.append(group.name)
    elif trial.outcome == "unchanged":
        ruled_out.append(group.name)


class _Bench:
    """Builds environments, runs the workload there and judges the bits, once per package set."""

    def __init__(self, base: Mapping[str, str], golden: Arrays, current: Arrays, run: Run,
                 build: Build, progress: Callable[[str], None], result_key: str) -> None:
        self.base, self.golden, self.current = base, golden, current
        self.run, self.build, self.progress, self.result_key = run, build, progress, result_key
        self.reference: Arrays = current  # what "unchanged" is measured against
        self.control_note: Trial | None = None
        self._arrays: dict[PackageSet, Arrays | str] = {}
        self._trials: list[tuple[PackageSet, str, tuple[str, ...], bool]] = []

    def trial(self, groups: Sequence[PackageGroup], label: str) -> Trial:
        pins = restored(self.base, groups)
        cached = self._fetch(pins)
        self._trials.append((pins, label, tuple(g.name for g in groups), cached))
        result = self._judged(pins, label, tuple(g.name for g in groups), cached)
        if result.outcome == "partial" and self.control_note is None:
            self._control()
            result = self._judged(pins, label, tuple(g.name for g in groups), cached)
        return result

    def final_trials(self) -> tuple[Trial, ...]:
        return tuple(self._judged(*entry) for entry in self._trials)

    def _control(self) -> None:
        """Measure whether a rebuilt environment with this environment's own versions computes
        what this one does; if not, "unchanged" is measured against it from now on."""
        pins = PackageSet.of(self.base)
        cached = self._fetch(pins)
        arrays = self._arrays[pins]
        label = "control: this environment's own versions, rebuilt"
        if isinstance(arrays, str):
            self.control_note = Trial(label, (), tuple(pins.requirements()), "failed", arrays,
                                      cached)
            return
        differing = _differing(arrays, self.current)
        if differing:
            self.reference = arrays
            detail = (f"rebuilt with this environment's own versions, {len(differing)} array(s)"
                      " differ from this run: results are judged against this control")
        else:
            detail = "rebuilt with this environment's own versions, the bits are this run's"
        self.control_note = Trial(label, (), tuple(pins.requirements()), "unchanged", detail,
                                  cached)

    def _fetch(self, pins: PackageSet) -> bool:
        """The arrays of the workload in an environment for ``pins`` (built or cached); whether
        they came from the result cache."""
        if pins in self._arrays:
            return False
        stored = self._cache_path(pins)
        if stored is not None and stored.is_file():
            try:
                with np.load(stored, allow_pickle=False) as npz:
                    self._arrays[pins] = {n: npz[n] for n in npz.files}
                self.progress(f"environment {pins.key()[:8]}: results from the cache")
                return True
            except (OSError, ValueError):
                stored.unlink(missing_ok=True)
        from envaudit.environments.uv import EnvBuildError

        try:
            python = self.build(pins)
        except EnvBuildError as exc:
            self._arrays[pins] = f"the environment could not be built: {exc}"
            return False
        self.progress(f"environment {pins.key()[:8]}: running the workload")
        with tempfile.TemporaryDirectory(prefix="envaudit-bisect-") as tmp:
            arrays = self.run(python, Path(tmp) / "arrays.npz")
        self._arrays[pins] = arrays
        if stored is not None and not isinstance(arrays, str) and stored.parent.parent.is_dir():
            stored.parent.mkdir(exist_ok=True)
            partial = stored.with_name(f".{stored.name}.partial")
            with open(partial, "wb") as handle:
                np.savez(handle, **arrays)
            partial.replace(stored)
        return False

    def _cache_path(self, pins: PackageSet) -> Path | None:
        if not self.result_key:
            return None
        from envaudit.environments.cache import env_folder

        # Inside the environment's own folder: rebuilding or clearing it drops its results, and
        # results in a folder another user could have written are never read (``env_folder``).
        name = hashlib.sha256(self.result_key.encode()).hexdigest()
        return env_folder(pins.key(), self.progress) / "results" / f"{name}.npz"

    def _judged(self, pins: PackageSet, label: str, groups: tuple[str, ...],
                cached: bool) -> Trial:
        arrays = self._arrays[pins]
        requirements = tuple(pins.requirements())
        if isinstance(arrays, str):
            return Trial(label, groups, requirements, "failed", arrays, cached)
        to_golden = _differing(arrays, self.golden)
        to_reference = _differing(arrays, self.reference)
        if not to_golden:
            outcome: Outcome = "reproduced"
            detail = f"with {label}, the workload reproduced the golden bits exactly"
        elif not to_reference:
            outcome = "unchanged"
            detail = (f"with {label}, the results were bit-identical to this run's: putting it"
                      " back changed nothing")
        else:
            outcome = "partial"
            detail = (f"with {label}, {len(self.golden) - len(to_golden)} of {len(self.golden)}"
                      f" arrays came back to the golden bits and {len(to_golden)} still differ")
        return Trial(label, groups, requirements, outcome, detail, cached)


def _differing(arrays: Arrays, reference: Arrays) -> list[str]:
    return [name for name, value in reference.items()
            if name not in arrays or not bit_identical(arrays[name], value)]


# --- what a bisection does to the causes ------------------------------------------------------


def group_paths(group_name: str, distributions: Sequence[str]) -> frozenset[str]:
    """The fingerprint paths a package change group's changes are recorded under."""
    paths = {f"packages.{name}.version" for name in distributions}
    if group_name == "tensorflow":
        paths |= {"tensorflow.version", "tensorflow.distribution"}
    if group_name == "numpy":
        paths.add("numerics_libs.numpy.version")
    return frozenset(paths)


def apply_bisection(causes: Sequence[Cause], bisection: Bisection) -> list[Cause]:
    """Causes with what the bisection showed: each package cause confirmed, ruled out or left
    as it was, with the package sets tried as evidence; confirmed causes first, ruled out
    last."""
    updated = list(causes)
    for group in bisection.changes:
        paths = group_paths(group.name, list(group.golden) + list(group.current))
        index = next((i for i, c in enumerate(updated) if c.paths & paths), None)
        evidence = _evidence(group.name, bisection)
        if group.name in bisection.confirmed:
            confidence = "confirmed"
        elif group.name in bisection.ruled_out:
            confidence = "ruled_out"
        else:
            confidence = None
        if index is None:
            if confidence is None:
                continue
            updated.append(Cause(change=group.describe(), confidence=confidence,
                                 evidence=tuple(evidence), path=None, trial="tested"))
            continue
        cause = updated[index]
        # The bisection showed what no re-run could: the placeholder saying so goes, unless
        # the bisection could not restore this group either.
        kept = tuple(e for e in cause.evidence if kind_of(e) != "no_rerun"
                     or group.name in bisection.refused)
        updated[index] = replace(cause, confidence=confidence or cause.confidence,
                                 evidence=(*kept, *evidence),
                                 trial="tested" if confidence else "untestable"
                                 if group.name in bisection.refused else cause.trial)
    if bisection.together:
        whole = bisection.trials[0]
        updated.append(Cause(
            change=" + ".join(bisection.together) + " restored together", confidence="confirmed",
            evidence=(f"{whole.detail} ({', '.join(whole.pins)})",
                      "no single one of them did: they moved the numbers together"),
            trial="tested"))
    return sorted(updated, key=lambda c: CONFIDENCES.index(c.confidence))


def _evidence(group: str, bisection: Bisection) -> list[str]:
    lines = []
    if group in bisection.refused:
        lines.append(f"environment bisection did not restore it: {bisection.refused[group]}")
    for trial in bisection.trials:
        if group in trial.groups or not trial.groups:
            lines.append(f"{trial.detail} ({', '.join(trial.pins)})" if trial.outcome != "failed"
                         else f"{trial.label}: {trial.detail}")
    if group in bisection.confirmed:
        lines.append("confirmed by environment bisection: restoring it alone gives the golden"
                     " bits")
    elif group in bisection.ruled_out:
        lines.append("ruled out by environment bisection: restoring it changes nothing")
    return lines


def run_bisection(golden_fp: Fingerprint, current_fp: Fingerprint, golden: Arrays,
                  current: Arrays, modes: Sequence[str], extra: Sequence[str] = (),
                  identity: str = "", progress: Callable[[str], None] = lambda _m: None
                  ) -> Bisection:
    """``bisect`` with environments built by uv and the workload run there in ``modes``
    (``extra``: the child's arguments for a user model, ``identity`` what they name, for the
    result cache)."""
    from envaudit.environments import own_copy, uv

    key = json.dumps({"fingerprint": current_fp.fingerprint_id, "modes": list(modes),
                      "workload": identity, "envaudit": own_copy.digest()}, sort_keys=True)
    return bisect(golden_fp, current_fp, golden, current,
                  run=lambda python, out: uv.run_workload(python, out, modes, extra),
                  build=lambda pins: uv.ensure_env(pins, progress),
                  progress=progress, result_key=key)


def bisection_note(bisection: Bisection | None) -> str | None:
    """The one stderr line of a bisection that could build nothing at all (None otherwise)."""
    if bisection is None or bisection.failure is None:
        return None
    return f"--bisect could not build any environment: {bisection.failure}"
