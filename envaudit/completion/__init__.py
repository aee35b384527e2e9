"""Shell completion for envaudit: ``envaudit completion bash|zsh|fish`` prints a script that
completes its commands, options, choices, paths and bundle names.

The script is static text written once from the real parser (``grammar`` reads it; one module per
shell writes it), so completing never starts Python: a TAB costs the shell a few builtins, and the
names of the user's bundles are listed by the shell itself from ``$XDG_DATA_HOME/envaudit/golden/``
(the folder ``store.default_bundle_path`` reads).

Constraints: standard library and TF-free modules only; every word taken from the parser is
quoted for the shell it lands in, and a bundle's folder name is never evaluated by a script.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from envaudit.completion import bash, fish, zsh
from envaudit.completion.grammar import Command, commands

# The shells, and the module that writes each one's script.
WRITERS: dict[str, Callable[[Sequence[Command]], str]] = {
    "bash": bash.script,
    "zsh": zsh.script,
    "fish": fish.script,
}


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` ("bash", "zsh" or "fish") of ``parser``'s grammar."""
    return WRITERS[shell](commands(parser))
