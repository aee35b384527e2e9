"""The README's quick start runs as shown: every ``$`` line of its first console block, in a fresh
folder, through a shell, with the envaudit this test suite runs.

Each command must do its job (exit 0 or 1, never 2, no traceback) and start its output the way the
README shows. The record and the first check are deterministic on the machine running them, so
their first words must match; the third command's verdict depends on the CPU (which oneDNN default
TensorFlow chose), so any verdict line is accepted there. The docs pages' links must point at
files that exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

from envaudit.render.check_text import VERDICT_STYLE

README = ROOT / "README.md"
VERDICT_MARKS = tuple(mark for mark, _style in VERDICT_STYLE.values())


def quick_start() -> list[tuple[str, str]]:
    """``(command, first line of its shown output)`` of the quick start's console block."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, str]] = []
    lines = block.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("$ "):
            shown = lines[index + 1] if index + 1 < len(lines) else ""
            steps.append((line[2:], "" if shown.startswith("$ ") else shown))
    return steps


def test_the_quick_start_is_three_commands_record_then_check():
    commands = [command for command, _ in quick_start()]
    assert len(commands) == 3
    assert "envaudit record" in commands[0] and "envaudit check" in commands[1]


@pytest.mark.slow
def test_the_quick_start_runs_as_shown(tmp_path):
    env = cli_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for number, (command, shown) in enumerate(quick_start()):
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode in (0, 1), (command, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, command
        first = (proc.stdout or proc.stderr).splitlines()[0]  # record says its line on stderr
        if number < 2:
            assert first.split(":")[0] == shown.split(":")[0], (command, first)
        else:
            assert first.startswith(VERDICT_MARKS), (command, first)


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), (page.name, target)
