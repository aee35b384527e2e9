"""The roles stay apart: renderers format decisions made elsewhere, and decide nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RENDER = Path(__file__).resolve().parents[1] / "envaudit" / "render"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", sorted(RENDER.glob("*.py")), ids=lambda p: p.name)
def test_renderers_take_only_types_from_compare_and_attribute(module):
    """No threshold, metric or ranking logic can reach a renderer: from compare/ and attribute/
    it may import the data types (``model``) and nothing else."""
    deciding = {m for m in imported_modules(module)
                if m.startswith(("envaudit.compare", "envaudit.attribute"))}
    assert deciding <= {"envaudit.compare.types", "envaudit.attribute.types"}, deciding


def test_the_import_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from envaudit.compare.noise import at_noise_floor\n")
    assert "envaudit.compare.noise" in imported_modules(bad)


DECIDING = ("compare", "attribute")


@pytest.mark.parametrize("module", sorted(p for role in DECIDING
                                          for p in (RENDER.parent / role).glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_deciding_code_never_imports_a_renderer_or_the_fleet(module):
    """compare/ and attribute/ decide; render/ and fleet/ show and gather what they decided. An
    import the other way would be a circle (verdict -> formatting -> fleet report -> verdict):
    how a number is spelled lives in the leaf ``envaudit.spelling``."""
    outward = {m for m in imported_modules(module)
               if m.startswith(("envaudit.render", "envaudit.fleet", "envaudit.cli"))}
    assert not outward, outward


def test_the_spelling_module_is_a_leaf():
    spelling = RENDER.parent / "spelling.py"
    assert not {m for m in imported_modules(spelling) if m.startswith("envaudit")}


def test_every_format_offered_is_a_module_that_renders():
    from envaudit.render import formats

    for report, offered in formats.FORMATS.items():
        assert next(iter(offered)) == "text", report  # the default comes first
        for fmt in offered:
            assert callable(formats.writer(report, fmt).render), (report, fmt)


def test_the_cli_offers_exactly_the_registered_formats():
    from envaudit.cli import build_parser
    from envaudit.render import formats

    parser = build_parser()
    for argv, report in ((["check"], "check"), (["diff", "a", "b"], "diff"),
                         (["fingerprint"], "fingerprint")):
        for fmt in formats.choices(report):
            assert parser.parse_args([*argv, "--format", fmt]).format == fmt
