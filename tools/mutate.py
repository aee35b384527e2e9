"""``make mutate``: mutation testing of the deciding code with mutmut, a score per module.

Each group below is mutated in its own copy of the checkout under ``.mutate/<group>`` (mutmut
works in a ``mutants/`` folder of the current directory, so groups must not share one), against
its fast unit tests only: no TensorFlow subprocess runs in the inner loop. A mutant counts as
killed when mutmut says killed or timeout; survived or untested mutants count against the score.
Survivors that are truly equivalent (no test could tell them from the original) are listed, each
with its reason, in ``tests/mutation/equivalent-<group>.txt`` (one line each: the mutant's name,
a space, the reason); they leave the denominator, and a listed mutant that is killed or no longer
exists is reported as stale.

    python tools/mutate.py [GROUP ...] [--jobs N]   # all groups by default

Prints one line per module (killed / counted, score), writes every survivor's name to
``.mutate/survivors.txt`` (``cd .mutate/GROUP && mutmut show NAME`` shows its diff) and exits 1
when a module listed in ``TARGETS`` scores below ``TARGET_SCORE``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutate"
EQUIVALENT = ROOT / "tests" / "mutation"  # equivalent*.txt, one file per group
TARGET_SCORE = 0.85

# group -> (files to mutate (globs), the fast tests that judge them)
GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "compare": (
        ("envaudit/compare/*.py",),
        ("tests/test_compare_tensors.py", "tests/test_compare_detections.py",
         "tests/test_verdict.py", "tests/test_compare_boundaries.py",
         "tests/test_compare_properties.py"),
    ),
    "attribute": (
        ("envaudit/attribute/*.py",),
        ("tests/test_attribute.py", "tests/test_attribute_boundaries.py"),
    ),
    "fingerprint": (
        ("envaudit/fingerprint/fields.py", "envaudit/fingerprint/diff.py",
         "envaudit/fingerprint/redact.py"),
        ("tests/test_diff.py", "tests/test_redaction.py", "tests/test_fingerprint_rules.py"),
    ),
    "store": (
        ("envaudit/store.py",),
        ("tests/test_store.py", "tests/test_store_boundaries.py"),
    ),
    "cli": (
        ("envaudit/cli.py",),
        ("tests/test_cli_exit_codes.py",),
    ),
}
# Modules whose score must reach TARGET_SCORE (issue 14); other mutated modules are reported.
TARGETS = ("envaudit.compare", "envaudit.attribute", "envaudit.fingerprint.fields",
           "envaudit.fingerprint.diff", "envaudit.fingerprint.redact", "envaudit.store",
           "envaudit.cli")
KILLED = {1, 3, 24, 36, -24, 152, 255}  # mutmut: killed, or timed out (an endless loop caught)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"one or more of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    started = time.monotonic()
    results: dict[str, int] = {}
    for group in args.groups or list(GROUPS):
        results.update(_run_group(group, args.jobs))
    return _report(results, time.monotonic() - started)


def _run_group(group: str, jobs: int) -> dict[str, int]:
    """Mutate one group in its own copy; the exit code of every mutant by name."""
    mutate, tests = GROUPS[group]
    tests = tuple(t for t in tests if (ROOT / t).exists())
    work = WORK / group
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("envaudit", "tests", "golden"):
        shutil.copytree(ROOT / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config = {"source_paths": ["envaudit"], "only_mutate": list(mutate),
              "pytest_add_cli_args_test_selection": list(tests),
              "pytest_add_cli_args": ["-p", "no:randomly", "-q", "-m", "not slow"],
              "also_copy": ["golden/"]}
    (work / "pyproject.toml").write_text(
        (ROOT / "pyproject.toml").read_text() + "\n[tool.mutmut]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items()))
    sys.stderr.write(f"mutating {group}: {', '.join(mutate)} against {len(tests)} test files\n")
    proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
                          cwd=work, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"mutmut failed for group {group} (exit {proc.returncode})")
    codes: dict[str, int] = {}
    for meta in (work / "mutants").rglob("*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def _equivalents() -> dict[str, str]:
    """Mutant name -> why it is equivalent, from ``tests/mutation/equivalent*.txt``."""
    listed: dict[str, str] = {}
    for file in sorted(EQUIVALENT.glob("equivalent*.txt")):
        for line in file.read_text().splitlines():
            name, _sep, why = line.partition(" ")
            if name and not name.startswith("#"):
                listed[name] = why.strip()
    return listed


def _module(mutant: str) -> str:
    return mutant.split(".x_")[0].split(".xǁ")[0]


def _report(codes: dict[str, int], seconds: float) -> int:
    equivalent = _equivalents()
    per_module: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # killed, counted
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, code in sorted(codes.items()):
        if name in equivalent and code not in KILLED:
            continue
        module = _module(name)
        per_module[module][1] += 1
        if code in KILLED:
            per_module[module][0] += 1
        else:
            survivors[module].append(name)
    ran = {_module(name) for name in codes}  # a listed mutant of a group not run is not stale
    stale = sorted(n for n in equivalent
                   if _module(n) in ran and (n not in codes or codes[n] in KILLED))
    failing = []
    print(f"{'module':40} {'killed':>7} {'counted':>8} {'score':>7}")
    for module, (killed, counted) in sorted(per_module.items()):
        score = killed / counted if counted else 1.0
        targeted = module.startswith(TARGETS)
        mark = "" if not targeted else ("  ok" if score >= TARGET_SCORE else "  BELOW TARGET")
        if targeted and score < TARGET_SCORE:
            failing.append(module)
        print(f"{module:40} {killed:7d} {counted:8d} {score:7.1%}{mark}")
    for module in failing:
        listed = survivors[module]
        print(f"survivors in {module} ({len(listed)}): {', '.join(listed[:8])}"
              + (" ..." if len(listed) > 8 else ""))
    WORK.mkdir(exist_ok=True)
    (WORK / "survivors.txt").write_text(  # the last run's survivors, all groups it ran
        "".join(f"{name}\n" for module in sorted(survivors) for name in survivors[module]))
    if stale:
        print(f"stale entries in {EQUIVALENT.relative_to(ROOT)}/equivalent*.txt:"
              f" {', '.join(stale)}")
    print(f"{len(codes)} mutants, {len(equivalent)} listed as equivalent, {seconds:.0f} s; "
          f"target {TARGET_SCORE:.0%} per module: {'met' if not failing else 'NOT met'}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
