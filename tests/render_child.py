"""Every check format of one golden, rendered in a fresh process under an environment that moves
something: the check runs plain, then ``--strict``, and each format is written with the registry's
writers, as the CLI would (the render tests read what a real moved check writes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import sys
from pathlib import Path
from rich.console import Console
from envaudit.pipeline.compose import check
from envaudit.render import formats

out = Path(sys.argv[2])
for label, strict in (("plain", False), ("strict", True)):
    result = check(golden=sys.argv[1], confirm=False, strict=strict)
    for fmt in formats.choices("check"):
        writer = formats.writer("check", fmt)
        if fmt == "text":
            console = Console(width=140, no_color=True, record=True, file=open("/dev/null", "w"))
            console.print(writer.render(result))
            text = console.export_text()
        else:
            text = writer.render(result)
        (out / f"{label}.{fmt}").write_text(text)
    (out / f"{label}.exit").write_text(str(result.exit_code))
"""


def every_format(golden: Path, out: Path, env: dict[str, str]) -> dict[str, str]:
    """``{"plain.json": ..., "strict.html": ..., "plain.exit": ...}`` for ``golden`` under
    ``env``."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(golden), str(out)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.name: p.read_text() for p in out.iterdir()}
