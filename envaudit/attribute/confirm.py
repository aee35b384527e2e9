"""Confirmation: re-run the workload with one change put back; "confirmed" only if that restores
the golden bits exactly.

Each re-run is a fresh ``python -m envaudit.workload`` process, because the settings that matter
(oneDNN switches, instruction-set caps, thread counts) are read once when TensorFlow loads. The
golden side of a change is someone else's data: only the settings ``envaudit/settings.py``
allows, with values it accepts, are ever put into a child's environment. The child is started by
``workload.child.run_child``: isolated from the working folder, user site-packages and Python's
code-choosing variables, in the private folder of its output. Hardware cannot be put back, but an
instruction-set difference can be emulated downwards through oneDNN's ISA cap; what that shows is
reported either way. TF32 is put back through TensorFlow's API, not a variable: the child is told
``--tf32=off`` (``tf32.child_arguments``) and sets the switch before its first op.

Which re-runs a check starts, in which order, and how causes are marked: ``trials.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from envaudit.attribute.allowlist import refusal
from envaudit.attribute.rank import is_tensorflow_install
from envaudit.attribute.reach import reaches_tensorflow
from envaudit.attribute.types import CONFIDENCES, Cause, Evidence
from envaudit.compare.tensors import bit_identical
from envaudit.fingerprint.onednn import ISA_LEVELS, max_isa
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.modes import DEFAULT as DEFAULT_MODE
from envaudit.tf32 import TF32_PATH, Tf32Option, child_arguments
from envaudit.workload.child import run_child

RERUN_TIMEOUT_S = 300
# On a GPU a child may first compile TensorFlow's kernels from PTX (a wheel without kernels for a
# new architecture: minutes) before its compute cache holds them.
GPU_RERUN_TIMEOUT_S = 900
# The evidence of a change no re-run of this process can put back (a package, hardware); an
# environment bisection (``bisect.py``) replaces it with what rebuilding the environment showed.
NO_RERUN = Evidence("no re-run can put this change back from here (it is not a setting of this"
                    " process), so it cannot be confirmed", "no_rerun")
NO_RERUN_PACKAGE = Evidence("no re-run can put a package back from here; 'envaudit check"
                            " --bisect' rebuilds the environment to confirm or rule it out",
                            "no_rerun")
PROGRESS_EVERY_S = 1.0  # how often the progress line's elapsed time is renewed


@dataclass(frozen=True)
class Experiment:
    """One re-run: which settings it puts back, and for which cause (fingerprint path)."""

    label: str  # "TF_ENABLE_ONEDNN_OPTS restored to unset"
    env: Mapping[str, str | None]  # None: remove the variable
    cause_paths: tuple[str, ...]
    cores: int | None = None  # pin the re-run to this many cores
    # TensorFlow's TF32 switch in the child, set through its API (``tf32.child_arguments``),
    # never by a variable: TensorFlow reads none for it. None: as this check ran.
    tf32: Tf32Option | None = None

    @property
    def name(self) -> str:
        """How a progress line names it: "TF_ENABLE_ONEDNN_OPTS", "3 variables", "1 core",
        "TF32 off"."""
        if self.tf32:
            return f"TF32 {self.tf32}"
        if self.cores:
            return f"{self.cores} core{'s' if self.cores > 1 else ''}"
        if not self.env:
            return self.label
        return ", ".join(self.env) if len(self.env) < 3 else f"{len(self.env)} variables"

    @property
    def joint(self) -> bool:
        """Whether it puts back several variables at once (it can confirm none of them alone)."""
        return len(self.env) > 1

    @property
    def child_key(self) -> tuple[tuple[tuple[str, str | None], ...], int | None, str | None]:
        """Experiments with equal keys run in the same environment: one child serves them all."""
        return tuple(sorted(self.env.items())), self.cores, self.tf32


@dataclass(frozen=True)
class Outcome:
    experiment: Experiment
    identical: bool
    differing: tuple[str, ...]  # arrays that still differ from golden
    error: str | None = None


def _isa_order(golden: Fingerprint, current: Fingerprint) -> tuple[str | None, str | None, int]:
    """Both CPUs' oneDNN ISA levels and how they compare: -1 golden lesser, 1 golden richer, 0 the
    same or unknown."""
    golden_isa = max_isa(golden.get("cpu.flags") or [])
    current_isa = max_isa(current.get("cpu.flags") or [])
    if not golden_isa or not current_isa or golden_isa == current_isa:
        return golden_isa, current_isa, 0
    levels = [level for level, _ in ISA_LEVELS]  # most capable first
    richer = levels.index(golden_isa) < levels.index(current_isa)
    return golden_isa, current_isa, 1 if richer else -1


def plan(changes: Sequence[Change], golden: Fingerprint, current: Fingerprint,
         causes: Sequence[Cause] | None = None) -> list[Experiment]:
    """The re-runs that can put a change back from inside this process's environment. With the
    ranked ``causes``: only re-runs that test one of them, in their rank order, the run that
    puts every variable back together last."""
    ranked = None if causes is None else {
        path: i for i, cause in reversed(list(enumerate(causes))) for path in cause.paths}
    experiments: list[Experiment] = []
    # A variable only NumPy's float64 references read (OpenBLAS's) cannot move what a child
    # writes: TensorFlow computes every array compared. Never a child for it.
    env_changes = [c for c in _restorable(changes) if reaches_tensorflow(c)
                   and (ranked is None or c.path in ranked)]
    for change in env_changes:
        name = change.path[4:]
        shown = "unset" if change.golden is None else repr(change.golden)
        experiments.append(Experiment(f"{name} restored to {shown}",
                                      {name: change.golden}, (change.path,)))
    if len(env_changes) > 1:
        experiments.append(Experiment(
            "all numerics variables restored together",
            {c.path[4:]: c.golden for c in env_changes}, tuple(c.path for c in env_changes)))
    cores_change = next((c for c in changes if c.path == "cpu.usable_cores"), None)
    if cores_change and isinstance(cores_change.golden, int) and isinstance(
            cores_change.current, int) and cores_change.golden < cores_change.current:
        experiments.append(Experiment(f"pinned to {cores_change.golden} cores as on the golden"
                                      " machine", {}, (cores_change.path,), cores_change.golden))
    tf32 = next((c for c in changes if c.path == TF32_PATH), None)
    if tf32 and (ranked is None or tf32.path in ranked):  # made only for TF32 on here, not there
        experiments.append(Experiment("TF32 turned off through TensorFlow's API", {},
                                      (tf32.path,), tf32="off"))
    golden_isa, current_isa, order = _isa_order(golden, current)
    if order < 0:  # the golden CPU is the lesser one: cap this one to it
        cpu_paths = [c.path for c in changes if c.path.startswith("cpu.")]
        flag_paths = [p for p in cpu_paths if p.startswith("cpu.flags")]
        paths = tuple(flag_paths or cpu_paths or ["cpu.flags"])
        experiments.append(Experiment(
            f"golden instruction set emulated with ONEDNN_MAX_CPU_ISA={golden_isa}",
            {"ONEDNN_MAX_CPU_ISA": golden_isa}, paths))
    if ranked is None:
        return experiments
    singles = [e for e in experiments if not e.joint and set(e.cause_paths) & set(ranked)]
    singles.sort(key=lambda e: min(ranked[p] for p in e.cause_paths if p in ranked))
    return singles + [e for e in experiments if e.joint]


def _env_changes(changes: Sequence[Change]) -> list[Change]:
    return [c for c in changes if c.path.startswith("env.") and c.numerics]


def _restorable(changes: Sequence[Change]) -> list[Change]:
    """The variable changes a re-run may put back: allowlisted settings with valid golden values
    (``envaudit/settings.py``); the golden side is someone else's data."""
    return [c for c in _env_changes(changes) if refusal(c.path[4:], c.golden) is None]


def limits(changes: Sequence[Change], golden: Fingerprint,
           current: Fingerprint) -> dict[str, str]:
    """What cannot be put back from here, and why, by fingerprint path (evidence for the causes
    that no re-run can confirm)."""
    notes: dict[str, str] = {}
    for change in _env_changes(changes):
        why = refusal(change.path[4:], change.golden)
        if why:
            notes[change.path] = why
    golden_isa, current_isa, order = _isa_order(golden, current)
    if order > 0:  # the golden CPU is the richer one
        for change in changes:
            if change.path.startswith("cpu."):
                notes[change.path] = (
                    f"the golden CPU had a richer instruction set ({golden_isa}) than this one"
                    f" ({current_isa}); an instruction set can be capped, not added, so it cannot"
                    " be emulated here: re-check on a machine like the golden one")
    cores = next((c for c in changes if c.path == "cpu.usable_cores"), None)
    if cores and isinstance(cores.golden, int) and isinstance(cores.current, int) \
            and cores.golden > cores.current:
        notes[cores.path] = (f"the golden run had {cores.golden} cores, this process may use"
                             f" {cores.current}; cores cannot be added by a re-run")
    return notes


def _rerun(experiment: Experiment, out: Path, modes: Sequence[str] = (DEFAULT_MODE,),
           child: Sequence[str] = (), timeout: float = RERUN_TIMEOUT_S
           ) -> Mapping[str, np.ndarray] | str:
    """One child run in this environment with the experiment's settings put back, running the
    execution ``modes`` the comparison needs and no others (``child``: the arguments that make it
    run a user's model instead of the canary)."""
    env = dict(os.environ)
    for name, value in experiment.env.items():
        why = refusal(name, value)
        if why:  # plan() never asks for this; the check stands here so that nothing can
            return f"re-run refused: {why}"
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    prefix: list[str] = []
    if experiment.cores:
        cpus = sorted(os.sched_getaffinity(0))[: experiment.cores]
        prefix = ["taskset", "-c", ",".join(map(str, cpus))]
    if experiment.tf32:  # after the check's own --tf32, so that this one wins
        child = (*child, *child_arguments(experiment.tf32))
    try:
        proc = run_child(sys.executable, out, modes, child, env=env, timeout=timeout,
                         prefix=prefix)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"re-run could not complete: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"re-run failed (exit {proc.returncode}): {last}"
    with np.load(out) as npz:
        return {name: npz[name] for name in npz.files}


def run_experiments(
    experiments: Sequence[Experiment],
    golden_arrays: Mapping[str, np.ndarray],
    progress: Callable[[str], None] = lambda _m: None,
    modes: Sequence[str] = (DEFAULT_MODE,),
    child: Sequence[str] = (),
    *,
    until_reproduced: bool = False,
    on_gpu: bool = False,
) -> list[Outcome]:
    """Run the experiments (each in the execution ``modes`` being checked; with ``child``, on a
    user's model) and compare each child's arrays with the golden arrays bit for bit.

    Experiments with the same environment share one child. Children run in parallel up to the
    number of usable cores; with ``until_reproduced`` they run in waves of that many, in the given
    order, and no wave starts after one in which a single change put back alone reproduced the
    golden bits (the experiments left get no outcome). Outcomes come in the experiments' order.

    ``on_gpu`` (a GPU computed what moved): children run one after another, each with
    ``GPU_RERUN_TIMEOUT_S``. Children side by side on one GPU share its memory and its streams: a
    start-up failure for want of memory, or cuDNN picking another algorithm for want of workspace
    or because timings were disturbed, would read as "not confirmed"."""
    if not experiments:
        return []
    shared: dict[object, list[int]] = {}
    for index, experiment in enumerate(experiments):
        shared.setdefault(experiment.child_key, []).append(index)
    children = list(shared.values())  # each: the experiments one child serves
    workers = 1 if on_gpu else max(1, min(len(children), len(os.sched_getaffinity(0))))
    timeout = GPU_RERUN_TIMEOUT_S if on_gpu else RERUN_TIMEOUT_S
    size = workers if until_reproduced else len(children)
    found: dict[int, Outcome] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="envaudit-confirm-") as tmp, \
            ThreadPoolExecutor(workers) as pool:
        for first in range(0, len(children), size):
            wave = children[first:first + size]
            outs = [Path(tmp) / f"rerun-{first + i}.npz" for i in range(len(wave))]
            with _ticking(progress, _wave_label(experiments, wave, first, len(children)),
                          started):
                results = list(pool.map(
                    lambda served, out: _rerun(experiments[served[0]], out, modes, child,
                                               timeout=timeout),
                    wave, outs))
            for served, arrays in zip(wave, results):
                for index in served:
                    found[index] = _outcome(experiments[index], arrays, golden_arrays)
            if until_reproduced and any(o.identical and not o.experiment.joint
                                        for o in found.values()):
                break
    return [found[i] for i in sorted(found)]


def _outcome(experiment: Experiment, arrays: Mapping[str, np.ndarray] | str,
             golden_arrays: Mapping[str, np.ndarray]) -> Outcome:
    if isinstance(arrays, str):
        return Outcome(experiment, False, (), arrays)
    differing = tuple(name for name, golden in golden_arrays.items()
                      if name not in arrays or not bit_identical(arrays[name], golden))
    return Outcome(experiment, not differing, differing)


def _wave_label(experiments: Sequence[Experiment], wave: Sequence[Sequence[int]], first: int,
                total: int) -> str:
    """"re-run 2/3 (TF_ENABLE_ONEDNN_OPTS)", or "re-runs 1-2/3 (A, B)" for children at once."""
    names = ", ".join(experiments[served[0]].name for served in wave)
    if len(wave) == 1:
        return f"re-run {first + 1}/{total} ({names})"
    return f"re-runs {first + 1}-{first + len(wave)}/{total} ({names})"


class _ticking:
    """Says ``label`` with the seconds since ``started`` now, and again every
    ``PROGRESS_EVERY_S`` until the block ends (a child takes seconds; the line shows it lives)."""

    def __init__(self, progress: Callable[[str], None], label: str, started: float) -> None:
        self.progress, self.label, self.started = progress, label, started
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _say(self) -> None:
        self.progress(f"{self.label}, {time.perf_counter() - self.started:.0f} s")

    def _tick(self) -> None:
        while not self.done.wait(PROGRESS_EVERY_S):
            self._say()

    def __enter__(self) -> _ticking:
        self._say()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def apply_outcomes(causes: Sequence[Cause], outcomes: Sequence[Outcome],
                   differing_now: int, notes: Mapping[str, str] | None = None) -> list[Cause]:
    """Causes updated with what the re-runs showed; confirmed causes first.

    A cause is confirmed only by a re-run that put back that change alone (or the emulation made
    for it) and reproduced the golden bits. When only the re-run that restored several variables
    together did, that set is added as one confirmed cause and its members keep their confidence.
    ``notes``: why a cause had no re-run, by path (``limits``, or that another one sufficed).
    """
    updated: list[Cause] = []
    for cause in causes:
        confidence, evidence = cause.confidence, list(cause.evidence)
        if cause.path and not any(set(o.experiment.cause_paths) & cause.paths for o in outcomes):
            why = next((notes[p] for p in sorted(cause.paths) if notes and p in notes), None)
            evidence.append(why or (NO_RERUN_PACKAGE if bisectable(cause) else NO_RERUN))
        for outcome in outcomes:
            restored = set(outcome.experiment.cause_paths)
            if not restored & cause.paths:
                continue
            label = outcome.experiment.label
            alone = restored <= cause.paths  # the re-run put back this cause and nothing else
            if outcome.error:
                evidence.append(f"confirmation with {label}: {outcome.error}")
            elif outcome.identical:
                evidence.append(f"re-running with {label} reproduced the golden bits exactly")
                if alone:
                    confidence = "confirmed"
            else:
                evidence.append(f"with {label}, {_still(outcome)}")
                if alone and len(outcome.differing) >= differing_now and confidence == "likely":
                    confidence = "possible"  # putting it back alone changed nothing
        updated.append(replace(cause, confidence=confidence, evidence=tuple(evidence)))
    confirmed_paths = {p for c in updated if c.confidence == "confirmed" for p in c.paths}
    for outcome in outcomes:
        paths = outcome.experiment.cause_paths
        if len(paths) > 1 and outcome.identical and not outcome.error \
                and not confirmed_paths & set(paths):
            updated.append(Cause(
                change=" + ".join(paths), confidence="confirmed", path=None,
                evidence=(f"re-running with {outcome.experiment.label} reproduced the golden bits"
                          " exactly; no single one of them did",)))
    return sorted(updated, key=lambda c: CONFIDENCES.index(c.confidence))


def _still(outcome: Outcome) -> str:
    names = ", ".join(outcome.differing[:6]) + ("..." if len(outcome.differing) > 6 else "")
    return f"{len(outcome.differing)} array(s) still differ from golden ({names}): not confirmed"


def bisectable(cause: Cause) -> bool:
    """Whether an environment bisection (``bisect.py``) can put this cause back: a package."""
    return any(p.startswith("packages.") or is_tensorflow_install(p) for p in cause.paths)
