"""How every output words the training steps of a check: a step's row, the weights' growth, the
determinism of repeated training, and a first divergence that is a training array. One spelling
each, so the terminal, Markdown, HTML and JUnit say the same thing.

Pure formatting: what moved, whether it grows, where the steps are folded and whether a fix was
confirmed all come with the data (``compare/training.py``: ``StepResult``, ``Growth``,
``TrainingMode.shown``, ``Determinism``); nothing here escapes (each output does, as it puts a
string in). The training types are taken as ``Any``: a renderer imports only ``compare.types``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envaudit.compare.types import FirstDivergence
from envaudit.render.palette import VERDICT
from envaudit.spelling import number

STEP_COLUMNS = ("step", "result", "first moved array", "what it is", "moved", "largest rel")


def step_row(step: Any, code: Callable[[str], str] = str) -> list[str]:
    """One step's cells (``STEP_COLUMNS``): its number, verdict, first moved array and what it
    is, how many of its arrays moved, and the largest relative move."""
    moved = step.first_moved
    return [str(step.step), VERDICT[step.verdict].word, code(moved) if moved else "—",
            step.first_moved_part or "—", f"{step.moved}/{step.arrays}",
            number(step.largest_rel, 1) if step.moved else "0"]


def folded_words(count: int) -> str:
    return f"… {count} step{'s' if count != 1 else ''} folded"


def folded_total(count: int) -> str:
    """The line under a folded table."""
    return (f"{count} step{'s' if count != 1 else ''} folded: each like the step above it"
            " (the steps shown are the first ones, each change of verdict and the last).")


def growth_sentence(growth: Any) -> str | None:
    """The weights' growth in one sentence, or None when nothing moved (nothing to grow)."""
    if growth is None or not growth.relative or growth.last == 0:
        return None
    text = f"weights differ by {number(growth.last, 1)} after step {growth.steps[-1]}"
    if growth.doubling_steps is None:
        return text + "; the difference does not grow"
    text += f"; doubling every {growth.doubling_steps:.1f} steps"
    if growth.reaches_target_at is not None:
        how = "measured" if growth.measured else "projected"
        text += (f"; reaches {number(growth.target, 0)} at step"
                 f" {growth.reaches_target_at:.0f} ({how})")
    return text


def determinism_sentences(d: Any, code: Callable[[str], str] = str) -> list[str]:
    """``--repeat`` of training in words: the processes and their time, whether they agreed,
    and, where not, what op determinism raised and whether it confirmed the fix."""
    runs = "fresh processes" if d.fresh_processes else "runs in one process"
    head = f"{d.processes} {runs}, {d.seconds:.1f} s: "
    if d.deterministic:
        return [head + "every training array bit-identical (deterministic here)."]
    lines = [head + f"not deterministic: they differ from step {d.first_step} on, first in"
             f" {d.first_part} {code(d.first_array)}; {d.differing} arrays differ."]
    lines += [f"Possible (a known nondeterministic kernel, not confirmed): {s}"
              for s in d.suspects]
    op = d.op_determinism
    if op is None:
        return lines
    lines += [f"With op determinism on, TensorFlow refused: {code(r)}" for r in op.raised]
    if op.identical is None:
        lines.append(f"With op determinism on, the {runs} could not run: the fix is not"
                     " confirmed.")
    elif op.identical:
        lines.append(f"With op determinism on, {op.processes} {runs} agreed bit for bit:"
                     " fix confirmed (tf.config.experimental.enable_op_determinism()).")
    else:
        lines.append(f"With op determinism on, {op.processes} {runs} still differ: op"
                     " determinism does not remove the difference.")
    return lines


def divergence_words(fd: FirstDivergence, code: Callable[[str], str] = str) -> str | None:
    """"training step 1, a gradient (backward pass) 'step1.grad.stem.conv'" for a first
    divergence in a training step; None for a stage of the pipeline (each format words those
    as it always has)."""
    if fd.step is None:
        return None
    return f"training step {fd.step}, {fd.part} {code(fd.stage)}"


def quoted(name: str) -> str:
    """A name in quotes, for outputs without code spans (terminal, JUnit)."""
    return f"'{name}'"
