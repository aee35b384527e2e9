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
    it may import the data types (``types``) and nothing else."""
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


# --- the import graph -----------------------------------------------------------------------

PACKAGE = RENDER.parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``: imports for annotations, never executed."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Module -> the envaudit modules it imports, at the top or inside a function alike (a lazy
    import is still a dependency). ``from pkg import sub`` is an edge to the submodule ``sub``,
    not to the package."""
    names = _module_names()

    def known(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                edges.update(filter(None, (known(a.name) for a in node.names
                                           if a.name.startswith("envaudit"))))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        here = here.rpartition(".")[0]
                    base = f"{here}.{base}" if base else here
                if not base.startswith("envaudit"):
                    continue
                for alias in node.names:
                    whole = f"{base}.{alias.name}"
                    target = whole if whole in names else known(base)
                    if target:
                        edges.add(target)
        edges.discard(module)
        graph[module] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_import_graph_has_no_circle():
    """Every module of envaudit/, lazy imports included: no module reaches itself again."""
    graph = import_graph()
    assert len(graph) > 100 and "envaudit.errors" in graph["envaudit.store"]
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


# --- array roles are data, never parsed back out of names ----------------------------------------

# How a user model's arrays are spelled in a bundle (``usermodel.spec.array_name``); their roles
# travel as data (``TensorComparison.role``, ``ModelInfo.arrays``), so nothing reads these back.
ROLE_PREFIXES = ("input.", "layer.", "output.")


def _is_prefix(node: ast.AST) -> bool:
    if isinstance(node, ast.Tuple):
        return any(_is_prefix(e) for e in node.elts)
    return isinstance(node, ast.Constant) and node.value in ROLE_PREFIXES


def role_parsing(source: str) -> list[int]:
    """The lines of ``source`` that read a role out of an array's name: ``startswith("output.")``
    (or ``removeprefix``, a tuple of prefixes), or a slice from ``len("output.")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("startswith", "removeprefix") and \
                any(_is_prefix(a) for a in node.args):
            found.append(node.lineno)
        elif isinstance(node, ast.Slice) and isinstance(node.lower, ast.Call) and \
                isinstance(node.lower.func, ast.Name) and node.lower.func.id == "len" and \
                any(_is_prefix(a) for a in node.lower.args):
            found.append(node.lineno)
    return sorted(found)


def test_no_module_parses_a_role_out_of_an_array_name():
    parsing = {str(path.relative_to(PACKAGE.parent)): lines
               for path in sorted(PACKAGE.rglob("*.py"))
               if (lines := role_parsing(path.read_text(encoding="utf-8")))}
    assert parsing == {}


def test_the_role_check_sees_each_way_of_parsing_a_name():
    source = "\n".join((
        'outputs = [k for k in stages if k.startswith("output.")]',
        'name = stage[len("layer."):]',
        'either = name.startswith(("input.", "probe/"))',
        'bare = name.removeprefix("output.")',
        'spelled = array_name("output", name)  # spelling a name is fine',
        'other = name.startswith("stage/") and name[len("xla."):]',
    ))
    assert role_parsing(source) == [1, 2, 3, 4]


# --- size and single construction ---------------------------------------------------------------

MAX_FUNCTION_LINES = 60
# Declarations, not logic: every option of every command, read top to bottom.
DECLARATIONS = {("cli_parser.py", "build_parser")}


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_a_screen():
    long = [f"{path.relative_to(PACKAGE)}:{name} ({lines} lines)"
            for path in sorted(PACKAGE.rglob("*.py"))
            for name, lines in _functions(path)
            if lines > MAX_FUNCTION_LINES and (path.name, name) not in DECLARATIONS]
    assert long == []


def test_the_length_check_measures_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    assert dict(_functions(tmp_path / "long.py"))["long"] == 71


def _constructions(name: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_a_check_result_is_built_in_one_place():
    """Every subject's result comes out of the one composer (``pipeline/compose.py``)."""
    built = _constructions("CheckResult")
    assert len(built) == 1 and built[0].startswith("pipeline/compose.py"), built


# --- one definition of the fp32 noise floor --------------------------------------------------


def _powers_of_two(path: Path, root: Path = PACKAGE) -> list[str]:
    """Where ``2 ** -24`` (or ``2.0 ** -24``) is written out in code: the fp32 unit roundoff."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and \
                ast.unparse(node.left) in ("2", "2.0") and ast.unparse(node.right) == "-24":
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_the_fp32_roundoff_is_defined_once():
    """The noise floor every threshold is a multiple of, which the charts also draw, is written
    once (``compare/types.py``) and agrees with ``units.unit_roundoff`` of float32."""
    import numpy as np

    from envaudit.compare.types import FP32_UNIT_ROUNDOFF
    from envaudit.compare.units import unit_roundoff

    assert FP32_UNIT_ROUNDOFF == unit_roundoff(np.float32) == 2.0 ** -24
    spelled = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _powers_of_two(path)]
    assert len(spelled) == 1 and spelled[0].startswith("compare/types.py"), spelled


def test_the_roundoff_check_sees_a_second_spelling(tmp_path):
    (tmp_path / "again.py").write_text("FLOOR = 2 ** -24  # fp32\nHALF = 2.0 ** -1\n")
    assert _powers_of_two(tmp_path / "again.py", tmp_path) == ["again.py:1"]


# --- the history's formats come from the one registry ---------------------------------------


def test_every_history_format_renders_the_runs_and_one_run():
    """A history format is one module plus one line in ``render/formats.py``: it writes the runs
    on record (``render``) and one run (``render_run``), and the CLI offers exactly those."""
    from envaudit.cli import build_parser
    from envaudit.render import formats

    offered = formats.choices("history")
    assert offered[:2] == ("text", "json")
    parser = build_parser()
    for fmt in offered:
        module = formats.writer("history", fmt)
        assert callable(module.render) and callable(module.render_run), fmt
        assert parser.parse_args(["history", "--format", fmt]).format == fmt
        assert parser.parse_args(["history", "show", "3", "--format", fmt]).format == fmt
    with pytest.raises(SystemExit):
        parser.parse_args(["history", "--format", "junit"])  # a check's format, not the history's


def test_every_subject_has_the_whole_protocol():
    """The composer calls only what ``Subject`` declares; each subject answers all of it, with the
    same parameters (a member missing or misnamed would fail only on that subject's path)."""
    import inspect

    from envaudit.pipeline.canary import Canary
    from envaudit.pipeline.own_model import OwnModel
    from envaudit.pipeline.subject import Subject

    members = [n for n, v in vars(Subject).items()
               if inspect.isfunction(v) and not n.startswith("_")]
    assert {"run", "compare", "describe", "headline", "rerun_child", "identity"} <= set(members)
    for subject in (Canary, OwnModel):
        for name in members:
            declared = list(inspect.signature(getattr(Subject, name)).parameters)
            assert list(inspect.signature(getattr(subject, name)).parameters) == declared, (
                subject.__name__, name)
