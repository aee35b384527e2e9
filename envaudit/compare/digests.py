"""Two check runs compared by their arrays' digests: which arrays are bit-identical, which differ,
where the first difference is in pipeline order, and the verdict that digests can support.

A check JSON holds a digest of every array its run computed (``array_digests``: a SHA-256 of
its dtype, shape and bytes), not the arrays themselves. Equal digests prove equal bits. Unequal
digests prove that the arrays differ and say nothing about by how much. The verdict that follows
(``DigestComparison.verdict``) is ``identical`` only when every array both runs computed is
identical. A difference takes B's own verdict only where that is exact: both checks read the same
golden and A's check was bit-identical to it, so A's arrays are the golden's bits and B's own check
measured B against those bits. Anywhere else a difference is ``drift``: nothing offline can show
that it is rounding noise. An array that only one run computed (a mode or a training step the
other did not run) is not compared, and is listed as left out.

Pure: keys and digests in, data out. The keys are ``keyed_arrays`` keys (``workload/types.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from envaudit import modes as registry
from envaudit.compare.training import part_in_words, step_of
from envaudit.compare.types import DigestComparison, DigestGroup, FirstDivergence, Verdict
from envaudit.workload.types import keyed_arrays, unkeyed


def by_digest(golden: Mapping[str, str], current: Mapping[str, str], *,
              golden_verdict: Verdict, current_verdict: Verdict,
              same_golden: bool) -> DigestComparison:
    """The arrays of run A (``golden``) and run B (``current``), each by key -> digest, compared.
    ``golden_verdict`` and ``current_verdict``: each check's verdict against its own golden;
    ``same_golden``: both checks read the same golden bundle."""
    ordered = list(in_pipeline_order(golden))
    both = [key for key in ordered if key in current]
    differing = tuple(key for key in both if current[key] != golden[key])
    only_current = tuple(key for key in in_pipeline_order(current) if key not in golden)
    # the magnitude is known only where nothing was left out on either side
    exact = (same_golden and golden_verdict == "identical" and len(both) == len(ordered)
             and not only_current)
    return DigestComparison(
        identical=len(both) - len(differing), differing=differing,
        only_golden=tuple(key for key in ordered if key not in current),
        only_current=only_current, groups=_groups(both, differing),
        golden_verdict=golden_verdict,
        current_verdict=current_verdict, same_golden=same_golden, magnitude_known=exact)


def first_divergence(compared: DigestComparison,
                     golden: Mapping[str, str]) -> FirstDivergence | None:
    """The first array that differs, stages first (modes in registry order, each mode's arrays
    in the order the golden run computed them), as a check names it: its name and its position
    in its mode. Nothing was replayed (``replay`` and ``changed_stages`` are empty)."""
    moved, _probes = unkeyed(dict.fromkeys(compared.differing, ""))
    if not moved:
        return None
    mode, names = next(iter(moved.items()))  # the first mode met: the differing keys are ordered
    name = next(iter(names))
    order = list(unkeyed(golden)[0][mode])
    step = step_of(name)
    return FirstDivergence(stage=name, index=order.index(name), replay=(), changed_stages=(),
                           step=step, part=part_in_words(name) if step is not None else None)


def moved_modes(compared: DigestComparison) -> tuple[str, ...]:
    """The modes with a stage array that differs, in registry order."""
    stages, _probes = unkeyed(dict.fromkeys(compared.differing, ""))
    return registry.in_order(list(stages))


def _groups(both: list[str], differing: tuple[str, ...]) -> tuple[DigestGroup, ...]:
    """The compared arrays mode by mode, then the probes: how many, how many differ, the first
    that does."""
    stages, probes = unkeyed(dict.fromkeys(both, ""))
    moved, moved_probes = unkeyed(dict.fromkeys(differing, ""))
    groups = [DigestGroup(mode, len(arrays), len(moved.get(mode, {})),
                          next(iter(moved.get(mode, {})), None))
              for mode, arrays in stages.items()]
    if probes:
        groups.append(DigestGroup("probes", len(probes), len(moved_probes),
                                  next(iter(moved_probes), None)))
    return tuple(groups)


def in_pipeline_order(digests: Mapping[str, str]) -> dict[str, str]:
    """``digests`` with the stages first, mode by mode in registry order (each mode's arrays as
    given), then the probes; a key of a mode envaudit does not know comes last among stages."""
    stages, probes = unkeyed(digests)
    known = registry.in_order(list(stages))
    order = [*known, *(m for m in stages if m not in known)]
    return keyed_arrays({mode: stages[mode] for mode in order}, probes)


def headline(compared: DigestComparison, first: FirstDivergence | None,
             moved: tuple[str, ...]) -> str:
    """The comparison in one sentence, and how its verdict was reached."""
    verdict = compared.verdict
    word = verdict.replace("_", " ").capitalize()
    both = compared.identical + len(compared.differing)
    left = len(compared.only_golden) + len(compared.only_current)
    tail = f"; {left} arrays only one check computed are not compared" if left else ""
    if not compared.differing:
        return (f"{word}: all {both} arrays both checks computed are bit-identical (by"
                f" digest){tail}.")
    count = f"{len(compared.differing)} of {both} arrays differ between the two checks"
    if first is not None:
        count += f", first '{first.stage}' in {moved[0]} mode"
    sides = (f"each check against its golden: A {_words(compared.golden_verdict)},"
             f" B {_words(compared.current_verdict)}")
    if compared.magnitude_known:
        return (f"{word}: {count}; A's check was bit-identical to the golden B checked too, so"
                f" B's own check measured the difference ({sides}){tail}.")
    return (f"{word} (by digest): {count}; digests show that the bits differ, not by how much,"
            f" so nothing offline shows the difference to be rounding noise ({sides}){tail}.")


def _words(verdict: Verdict) -> str:
    return verdict.replace("_", " ")
