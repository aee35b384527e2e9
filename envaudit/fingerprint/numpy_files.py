"""NumPy's version, build configuration and SIMD dispatch, read from its installed files.

Importing NumPy costs about 100 ms of CPU, most of ``envaudit fingerprint``'s old cost; what a
fingerprint records of it is written down in files NumPy installs:
- the version: ``numpy/version.py`` (where ``numpy.__version__`` comes from);
- the build (compilers, BLAS/LAPACK): the ``CONFIG`` literal of the generated
  ``numpy/__config__.py``,
  evaluated by a small reader of its literal forms, never executed;
- the SIMD baseline and dispatch targets: compiled into ``_multiarray_umath``; NumPy's own messages
  about ``NPY_DISABLE_CPU_FEATURES`` quote both lists as text, which is read from the binary;
- which dispatch targets this CPU supports: NumPy's detection rules (``npy_cpu_features.c``)
  applied to the kernel's ``/proc/cpuinfo`` flags;
- the OpenBLAS NumPy runs: the one library its wheel bundles in ``numpy.libs``, loaded here so
  that ``numerics_libs.openblas_runtime`` asks it what it chose, as after ``import numpy``.

Constraint the next editor must keep: the section is the one importing NumPy gives, or
``NotExact`` is raised and the caller imports NumPy. Only NumPy releases whose detection rules are
transcribed below (``_RULES``) take this way, on x86-64 Linux, with neither
``NPY_ENABLE_CPU_FEATURES`` nor ``NPY_DISABLE_CPU_FEATURES`` set, nor ``LD_PRELOAD`` (which could
put another BLAS in front). ``tests/test_fingerprint_fast.py`` holds both ways equal.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import mmap
import os
import platform
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from envaudit.fingerprint.cpu import raw_flags

_BASELINE_TEXT = b"since it is part of the baseline optimizations:\n("
_DISPATCH_TEXT = b"they are not part of the dispatched optimizations\n("
_FEATURE_LIST = re.compile(rb"[A-Z0-9_]+( [A-Z0-9_]+)*")
_SECTIONS = ("Compilers", "Build Dependencies", "SIMD Extensions")


class NotExact(Exception):
    """This reader cannot promise what ``import numpy`` would say; import NumPy instead."""


def locate() -> Path | None:
    """NumPy's package folder, found without importing it; ``None`` when not installed."""
    spec = importlib.util.find_spec("numpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def version(package: Path) -> str:
    """``numpy.__version__``, from the ``version.py`` it is imported from."""
    names: dict[str, Any] = {}
    for node in ast.parse(_read(package / "version.py")).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                names[target.id] = value.value
            elif isinstance(value, ast.Name) and value.id in names:
                names[target.id] = names[value.id]
    if not isinstance(names.get("__version__"), str):
        raise NotExact("numpy/version.py sets no literal __version__")
    return names["__version__"]


def config(package: Path) -> dict[str, Any]:
    """The sections of ``numpy.show_config(mode="dicts")`` a fingerprint reads."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version(package))[:2])
    rules = _RULES.get(numbers)
    if rules is None:
        raise NotExact(f"no transcribed CPU detection rules for NumPy {numbers}")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise NotExact("SIMD detection is transcribed for x86-64 only")
    if os.environ.get("NPY_ENABLE_CPU_FEATURES") or os.environ.get("NPY_DISABLE_CPU_FEATURES"):
        raise NotExact("NumPy's CPU features are changed by NPY_*_CPU_FEATURES")
    baseline, dispatch = _simd_lists(_extension(package / "_core", "_multiarray_umath"))
    have = _cpu_features(rules, raw_flags())
    if not all(have.get(name, False) for name in baseline):
        raise NotExact("this CPU lacks part of NumPy's baseline: importing NumPy says what")
    if any(name not in have for name in dispatch):
        raise NotExact("a dispatch target without a transcribed rule")
    names = {"__cpu_baseline__": baseline, "__cpu_dispatch__": dispatch, "__cpu_features__": have}
    literal = _config_literal(_read(package / "__config__.py"))
    if any(key is None for key in literal.keys):
        raise NotExact("numpy/__config__.py unpacks a mapping into CONFIG")
    sections = {}
    for key, value in zip(literal.keys, literal.values, strict=True):
        if isinstance(key, ast.Constant) and key.value in _SECTIONS:
            sections[key.value] = _cleanup(_evaluate(value, names))
    return {key: value for key, value in sections.items() if value}


def bundled_openblas(package: Path) -> Path:
    """The one OpenBLAS NumPy's wheel bundles (``numpy.libs``, next to the package)."""
    if os.environ.get("LD_PRELOAD"):
        raise NotExact("LD_PRELOAD may put another BLAS in front of NumPy's")
    libs = package.parent / "numpy.libs"
    found = sorted(p for p in libs.glob("*openblas*") if ".so" in p.name) if libs.is_dir() else []
    if len(found) != 1:
        raise NotExact(f"{len(found)} OpenBLAS libraries in {libs}: NumPy links which?")
    return Path(os.path.realpath(found[0]))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotExact(f"{path}: {exc}") from None


def _extension(folder: Path, name: str) -> Path:
    """The file the import system would load for extension module ``name`` in ``folder``."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise NotExact(f"no {name} extension in {folder}")


def _simd_lists(binary: Path) -> tuple[list[str], list[str]]:
    """NumPy's baseline and dispatch targets, as its ``NPY_*_CPU_FEATURES`` messages quote them."""
    with open(binary, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return _quoted_list(m, _BASELINE_TEXT), _quoted_list(m, _DISPATCH_TEXT)


def _quoted_list(data: mmap.mmap, lead: bytes) -> list[str]:
    start = data.find(lead)
    end = data.find(b").", start) if start >= 0 else -1
    text = data[start + len(lead):end] if end >= 0 else b""
    if not _FEATURE_LIST.fullmatch(text):
        raise NotExact(f"no feature list after {lead!r} in NumPy's extension")
    return text.decode("ascii").split(" ")


def _cpu_features(rules: Callable[[frozenset[str]], dict[str, bool]],
                  flags: frozenset[str]) -> dict[str, bool]:
    if not flags:
        raise NotExact("no CPU flags in /proc/cpuinfo")
    return rules(flags)


def _rules_2_4(flags: frozenset[str]) -> dict[str, bool]:
    """``npy__cpu_init_features`` of NumPy 2.4 on x86-64, cpuid bits read as the kernel's flag
    names (the kernel hides AVX and AVX-512 flags whose register state the OS does not save, as
    NumPy's XCR0 check does)."""
    f = {name: name in flags for name in (
        "mmx", "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "f16c",
        "movbe", "avx", "fma", "lahf_lm", "abm", "xop", "fma4", "avx2", "bmi1", "bmi2", "gfni",
        "vaes", "vpclmulqdq", "avx512f")}
    h = {
        "MMX": f["mmx"], "SSE": f["sse"], "SSE2": f["sse2"], "SSE3": f["pni"],
        "SSSE3": f["ssse3"], "SSE41": f["sse4_1"], "SSE42": f["sse4_2"],
        "POPCNT": f["popcnt"] or f["abm"], "CX16": f["cx16"], "F16C": f["f16c"],
        "MOVBE": f["movbe"], "AVX": f["avx"], "FMA3": f["fma"], "LAHF": f["lahf_lm"],
        "LZCNT": f["abm"], "XOP": f["xop"] and f["avx"], "FMA4": f["fma4"] and f["avx"],
        "AVX2": f["avx2"] and f["avx"], "BMI": f["bmi1"], "BMI2": f["bmi2"] and f["bmi1"],
        "GFNI": f["gfni"], "VAES": f["vaes"], "VPCLMULQDQ": f["vpclmulqdq"],
        "AVX512F": f["avx512f"],
    }
    avx512 = {
        "AVX512CD": "avx512cd", "AVX512PF": "avx512pf", "AVX512ER": "avx512er",
        "AVX512VPOPCNTDQ": "avx512_vpopcntdq", "AVX5124VNNIW": "avx512_4vnniw",
        "AVX5124FMAPS": "avx512_4fmaps", "AVX512DQ": "avx512dq", "AVX512BW": "avx512bw",
        "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni", "AVX512IFMA": "avx512ifma",
        "AVX512VBMI": "avx512vbmi", "AVX512VBMI2": "avx512_vbmi2",
        "AVX512BITALG": "avx512_bitalg", "AVX512FP16": "avx512_fp16", "AVX512BF16": "avx512_bf16",
    }
    h.update({name: h["AVX512F"] and flag in flags for name, flag in avx512.items()})

    def every(*names: str) -> bool:
        return all(h[name] for name in names)

    h["X86_V2"] = every("SSE", "SSE2", "SSE3", "SSSE3", "SSE41", "SSE42", "POPCNT", "CX16", "LAHF")
    h["X86_V3"] = every("X86_V2", "AVX", "AVX2", "F16C", "FMA3", "BMI", "BMI2", "LZCNT", "MOVBE")
    h["X86_V4"] = every("X86_V3", "AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL")
    h["AVX512_ICL"] = every("X86_V4", "AVX512VNNI", "AVX512IFMA", "AVX512VBMI", "AVX512VBMI2",
                            "AVX512BITALG", "AVX512VPOPCNTDQ", "GFNI", "VAES", "VPCLMULQDQ")
    h["AVX512_SPR"] = every("AVX512_ICL", "AVX512FP16", "AVX512BF16")
    h["AVX512_KNL"] = every("AVX512F", "AVX512CD", "AVX512ER", "AVX512PF")
    h["AVX512_KNM"] = every("AVX512_KNL", "AVX5124FMAPS", "AVX5124VNNIW", "AVX512VPOPCNTDQ")
    h["AVX512_CLX"] = every("X86_V4", "AVX512VNNI")
    h["AVX512_CNL"] = every("X86_V4", "AVX512IFMA", "AVX512VBMI")
    return h


# NumPy (major, minor) -> its x86-64 detection rules. A release missing here imports NumPy.
_RULES: Mapping[tuple[int, ...], Callable[[frozenset[str]], dict[str, bool]]] = {
    (2, 4): _rules_2_4,
}


def _config_literal(source: str) -> ast.Dict:
    """The dict literal in ``CONFIG = _cleanup({...})``."""
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "CONFIG"
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "_cleanup" and len(node.value.args) == 1
                and isinstance(node.value.args[0], ast.Dict)):
            return node.value.args[0]
    raise NotExact("numpy/__config__.py has no CONFIG = _cleanup({...})")


def _cleanup(value: Any) -> Any:
    """NumPy's ``__config__._cleanup``: empty values removed, recursively."""
    if isinstance(value, dict):
        return {k: _cleanup(v) for k, v in value.items() if v and _cleanup(v)}
    return value


def _evaluate(node: ast.AST, names: Mapping[str, Any]) -> Any:
    """The value of the literal forms NumPy's generated config uses; anything else is NotExact."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_evaluate(k, names): _evaluate(v, names)  # type: ignore[arg-type]
                for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.List):
        return [_evaluate(e, names) for e in node.elts]
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Subscript):
        return _evaluate(node.value, names)[_evaluate(node.slice, names)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand, names)
    if isinstance(node, ast.ListComp) and len(node.generators) == 1:
        loop = node.generators[0]
        if isinstance(loop.target, ast.Name) and not loop.is_async:
            out = []
            for item in _evaluate(loop.iter, names):
                scope = {**names, loop.target.id: item}
                if all(_evaluate(test, scope) for test in loop.ifs):
                    out.append(_evaluate(node.elt, scope))
            return out
    if isinstance(node, ast.Call) and not node.keywords:
        args = [_evaluate(a, names) for a in node.args]
        if isinstance(node.func, ast.Name) and node.func.id == "bool" and len(args) == 1:
            return bool(args[0])
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("lower", "replace"):
            text = _evaluate(node.func.value, names)
            if isinstance(text, str) and all(isinstance(a, str) for a in args):
                return getattr(text, node.func.attr)(*args)
    raise NotExact(f"numpy/__config__.py uses {type(node).__name__} where a literal was expected")
