"""The fingerprint change table (issue 8): changes grouped by origin with counts, numerics-relevant
groups first, build minutiae folded behind --verbose, dotted paths broken only at dots.

The fixture is the issue's case: a golden captured with another TensorFlow wheel and another NumPy
build (other SIMD lists, compilers and OpenBLAS) against this machine's real capture.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from typing import Any

import pytest
from conftest import run_cli
from rich.console import Console
from test_render_check import make_result

from envaudit.fingerprint import Fingerprint, capture, diff
from envaudit.fingerprint.diff import group
from envaudit.fingerprint.fields import describe, leaves
from envaudit.fingerprint.identity import fingerprint_id
from envaudit.fingerprint.types import ORIGINS, Change
from envaudit.render import check_json, check_md, check_text, diff_text
from envaudit.render.change_table import heading
from envaudit.shipped import shipped

OPENBLAS = "OpenBLAS {}  USE64BITINT DYNAMIC_ARCH NO_AFFINITY {} MAX_THREADS=64"


def _tensorflow(version: str, git: str, compiler: str, cuda: str, cudnn: str,
                capabilities: list[str]) -> dict[str, Any]:
    return {
        "available": True, "distribution": "tensorflow", "version": version, "git_version": git,
        "compiler": compiler, "location": "/opt/venv/lib/python3.11/site-packages/tensorflow",
        "build_info": {"cpu_compiler": "clang", "cuda_compute_capabilities": capabilities,
                       "cuda_version": cuda, "cudnn_version": cudnn, "is_cuda_build": True,
                       "is_rocm_build": False, "is_tensorrt_build": False},
        "nvidia_wheels": {},
    }


def _numpy(version: str, blas: str, core: str, baseline: list[str], found: list[str],
           not_found: list[str], gcc: str, cython: str) -> dict[str, Any]:
    library = {"name": "scipy-openblas", "found": True, "version": blas,
               "openblas_configuration": OPENBLAS.format(blas, core)}
    return {
        "numpy": {"version": version, "build": {
            "blas": library, "lapack": dict(library), "simd_baseline": baseline,
            "simd_found": found, "simd_not_found": not_found,
            "compilers": {"c": f"gcc {gcc}", "cython": f"cython {cython}", "c++": f"gcc {gcc}"},
        }},
        # the same OpenBLAS kernel family at run time on both sides: this machine did not change
        "openblas_runtime": {"library": "libscipy_openblas64_.so", "corename": "Haswell",
                             "config": OPENBLAS.format("0.3.31.188.0", "Haswell"),
                             "num_threads": 2},
    }


def _side(base: dict[str, Any], *, captured_at: str, tensorflow: dict[str, Any],
          numerics_libs: dict[str, Any], versions: dict[str, str]) -> Fingerprint:
    data = copy.deepcopy(base)
    data["captured_at"] = captured_at
    data["tensorflow"] = tensorflow
    data["numerics_libs"] = numerics_libs
    for name, version in versions.items():
        data["packages"][name] = {"version": version}
    data["fingerprint_id"] = fingerprint_id(data)
    return Fingerprint(data)


@pytest.fixture(scope="module")
def pair() -> tuple[Fingerprint, Fingerprint]:
    """(golden, current): TF 2.18 with NumPy 2.2 (SSE-era SIMD names, gcc 10, OpenBLAS 0.3.28)
    against TF 2.21 with NumPy 2.4 (X86_V* names, gcc 14, OpenBLAS 0.3.31); everything else is
    this machine's capture on both sides."""
    base = capture().to_dict()
    golden = _side(
        base, captured_at="2026-01-05T09:00:00Z",
        tensorflow=_tensorflow("2.18.0", "v2.18.0-rc2-4-g6550e4bd802", "Clang 17.0.6", "12.3.0",
                               "8", ["sm_60", "sm_70", "sm_80", "compute_90"]),
        numerics_libs=_numpy(
            "2.2.6", "0.3.28.0.0", "SkylakeX", ["SSE", "SSE2", "SSE3"],
            ["SSSE3", "SSE41", "POPCNT", "SSE42", "AVX", "F16C", "FMA3", "AVX2", "AVX512F",
             "AVX512CD", "AVX512_SKX", "AVX512_CLX", "AVX512_CNL", "AVX512_ICL"],
            ["AVX512_KNL", "AVX512_KNM", "AVX512_SPR"], "10.2.1", "3.0.12"),
        versions={"tensorflow": "2.18.0", "numpy": "2.2.6", "protobuf": "4.25.1"})
    current = _side(
        base, captured_at="2026-11-29T10:00:00Z",
        tensorflow=_tensorflow("2.21.0", "v2.21.0-rc1-5-ga481b10260d", "Clang 18.1.8", "12.5.1",
                               "9", ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]),
        numerics_libs=_numpy("2.4.6", "0.3.31.188.0", "Haswell", ["X86_V2"],
                             ["X86_V3", "X86_V4", "AVX512_ICL"], ["AVX512_SPR"], "14.2.1",
                             "3.2.4"),
        versions={"tensorflow": "2.21.0", "numpy": "2.4.6", "protobuf": "5.29.3"})
    return golden, current


@pytest.fixture(scope="module")
def changes(pair) -> tuple[Change, ...]:
    return diff(*pair)


# (heading, listed paths, folded count) per group, in display order.
EXPECTED = [
    ("tensorflow: 1 field changed (numerics-relevant)", ["tensorflow.version"], 0),
    ("tensorflow build: 5 fields changed (3 numerics-relevant)",
     ["tensorflow.build_info.cuda_version", "tensorflow.build_info.cudnn_version"], 3),
    ("numpy: 1 field changed (numerics-relevant)", ["numerics_libs.numpy.version"], 0),
    ("numpy build: 28 fields changed (all numerics-relevant)",
     ["numerics_libs.numpy.build.blas.version", "numerics_libs.numpy.build.lapack.version"], 26),
    ("packages: 3 fields changed (2 numerics-relevant)",
     ["packages.numpy.version", "packages.tensorflow.version"], 1),
    ("envaudit: 1 field changed (informational)", [], 1),
]


def test_groups_count_by_origin_with_numerics_first(changes):
    assert len(changes) == 39 and sum(c.numerics for c in changes) == 35
    groups = group(changes)
    assert [(heading(g), [c.path for c in g.listed], len(g.folded)) for g in groups] == EXPECTED
    numpy_build = groups[3]
    # every SIMD rename and compiler is still numerics-relevant: folded, not dropped
    assert all(c.numerics and c.minutia for c in numpy_build.folded)
    assert {c.path.rsplit(".", 1)[0] for c in numpy_build.folded} == {
        "numerics_libs.numpy.build.simd_baseline", "numerics_libs.numpy.build.simd_found",
        "numerics_libs.numpy.build.simd_not_found", "numerics_libs.numpy.build.compilers",
        "numerics_libs.numpy.build.blas", "numerics_libs.numpy.build.lapack"}
    tf_build = {c.path: (c.numerics, c.minutia) for c in groups[1].changes}
    assert tf_build == {
        "tensorflow.build_info.cuda_version": (True, False),
        "tensorflow.build_info.cudnn_version": (True, False),
        "tensorflow.build_info.cuda_compute_capabilities.sm_89": (True, True),
        "tensorflow.git_version": (False, True),
        "tensorflow.compiler": (False, True),
    }


def test_field_table_gives_every_path_a_known_origin(pair, changes):
    assert all(c.origin in ORIGINS for c in changes)
    assert {describe(p).origin for p, _ in leaves(pair[1].data)} <= set(ORIGINS)
    assert describe("env.TF_ENABLE_ONEDNN_OPTS") == describe("env.OMP_NUM_THREADS")
    assert describe("env.TF_CPP_MIN_LOG_LEVEL").minutia  # logging: folded
    assert describe("cpu.flags.avx512f").origin == "cpu flags"
    assert not describe("cpu.flags.avx512f").minutia  # every recorded flag selects kernels
    assert describe("gpu.nvml_version").origin == "driver"
    assert describe("packages.nvidia-cudnn-cu12.version").origin == "cuda libraries"
    assert describe("packages.rich.version").minutia
    assert not describe("packages.ml-dtypes.version").minutia
    assert not describe("tensorflow.loaded_libraries.libcudnn.path").minutia  # loaded vs installed


# --- fingerprint_id is untouched ------------------------------------------------------------

UNREADABLE = {"available": False, "reason": "PermissionError: /sys/class/dmi/id/sys_vendor"}
# A fingerprint touching every rule the origin/minutia columns split; its id was computed with the
# field table as it stood before those columns existed.
PINNED = {
    "schema": "envaudit.fingerprint/1", "fingerprint_id": "", "captured_at": "2026-11-29T05:00:28Z",
    "envaudit_version": "0.1.0",
    "python": {"version": "3.11.7", "implementation": "CPython", "compiler": "GCC 12.2.0",
               "build": "main May  9 2026 07:35:25", "executable": "/opt/venv/bin/python"},
    "os": {"system": "Linux", "arch": "x86_64", "libc": {"name": "glibc", "version": "2.36"},
           "distro": {"id": "debian", "version_id": "12", "pretty_name": "Debian 12"},
           "kernel": "6.1.0", "hostname": "gpu-node-3",
           "container": {"detected": True, "runtime": "docker", "evidence": ["/.dockerenv"]},
           "virtualization": {"hypervisor_flag": True, "dmi_vendor": UNREADABLE},
           "limits": {"cgroup_version": "v2", "cpu_quota_cores": 4.0}},
    "cpu": {"vendor": "GenuineIntel", "family": 6, "model": 143, "stepping": 8,
            "microcode": "0x2b000590", "usable_cores": 8, "caches": {"L2": 2097152},
            "flags": ["amx_bf16", "avx2", "avx512f", "fma"], "source": "/proc/cpuinfo"},
    "memory": {"total_bytes": 68719476736, "available_bytes": 60000000000},
    "gpu": {"available": True, "driver_version": "550.54.15", "cuda_driver_version": "12.4",
            "nvml_version": "12.550.54.15", "device_count": 1,
            "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1234",
                         "compute_capability": "9.0", "memory_total_bytes": 85520809984,
                         "mig_mode": {"current": "disabled", "pending": "disabled"},
                         "max_clocks_mhz": {"sm": 1980}, "vbios_version": "96.00.74.00.01"}]},
    "tensorflow": {"available": True, "distribution": "tensorflow", "version": "2.18.0",
                   "git_version": "v2.18.0-rc2-4-g6550e4bd802", "compiler": "Clang 17.0.6",
                   "location": "/opt/venv/lib/python3.11/site-packages/tensorflow",
                   "build_info": {"cpu_compiler": "clang", "cuda_version": "12.3.0",
                                  "cudnn_version": "8",
                                  "cuda_compute_capabilities": ["sm_60", "sm_80", "compute_90"],
                                  "is_cuda_build": True},
                   "nvidia_wheels": {"nvidia-cudnn-cu12": "8.9.7.29",
                                     "nvidia-cublas-cu12": "12.3.4.1"},
                   "loaded_libraries": {"libcudnn": {"version": "8", "path": "/usr/lib/x.so"}}},
    "numerics_libs": {
        "numpy": {"version": "2.2.6", "build": {
            "blas": {"name": "scipy-openblas", "found": True, "version": "0.3.28.0.0",
                     "openblas_configuration": "OpenBLAS 0.3.28  DYNAMIC_ARCH SkylakeX"},
            "simd_baseline": ["SSE", "SSE2", "SSE3"], "simd_found": ["AVX2", "AVX512F"],
            "compilers": {"c": "gcc 10.2.1", "cython": "cython 3.0.12"}}},
        "openblas_runtime": {"library": "libscipy_openblas64_.so", "corename": "SkylakeX",
                             "num_threads": 8}},
    "env": {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "4"},
    "packages": {"tensorflow": {"version": "2.18.0"}, "numpy": {"version": "2.2.6"},
                 "protobuf": {"version": "4.25.1"}, "nvidia-cudnn-cu12": {"version": "8.9.7.29"},
                 "nvidia-ml-py": {"version": "12.550.52"}, "rich": {"version": "13.7.1"}},
}


def test_fingerprint_id_is_what_it_was_before_origins():
    assert fingerprint_id(PINNED) == "fp-2645ed73579aed43"
    # and the shipped reference bundle's id, written by an earlier envaudit, still recomputes
    manifest = json.loads((shipped("reference") / "manifest.json").read_text())
    assert fingerprint_id(manifest["fingerprint"]) == manifest["fingerprint"]["fingerprint_id"]


# --- the terminal tables ----------------------------------------------------------------------


def _print(renderable, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True, force_terminal=False).print(renderable)
    return buffer.getvalue()


def _path_cells(out: str) -> list[str]:
    """The path column's cell lines of the change table in ``out``, top to bottom."""
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if line.split() == ["path", "golden", "current"])
    start, end = lines[top].index("path"), lines[top].index("golden")
    cells = []
    for line in lines[top + 1:]:
        if not line.strip():
            break  # the change table ends at the blank line after it
        if line.startswith("  ") and not line.startswith("  +"):  # a row, not a heading
            assert line[:start].strip() in ("", "numerics"), line
            cell = line[start:end].strip()
            if cell:
                cells.append(cell)
    return cells


def _assert_whole_segments(out: str, shown: list[str], width: int) -> list[str]:
    assert all(len(line.rstrip()) <= width for line in out.splitlines())
    cells = _path_cells(out)
    for cell in cells:
        assert any(f".{cell}".rstrip(".") + "." in f".{path}." for path in shown), cell
    # nothing lost or reordered: the cells, joined, are the shown paths, one after another
    assert "".join(cells) == "".join(shown)
    return cells


def _shown(changes, verbose: bool) -> list[str]:
    return [c.path for g in group(changes) for c in (g.changes if verbose else g.listed)]


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("width", [80, 120])
def test_diff_text_breaks_paths_only_at_dots(pair, changes, width, verbose):
    out = _print(diff_text.render(*pair, changes, verbose=verbose), width)
    shown = _shown(changes, verbose)
    cells = _assert_whole_segments(out, shown, width)
    if verbose and width == 80:  # the SIMD paths do not fit: some rows take two lines
        assert len(cells) > len(shown)


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("width", [80, 120])
def test_check_text_breaks_paths_only_at_dots(changes, width, verbose):
    result = dataclasses.replace(make_result(), fingerprint_changes=changes)
    out = _print(check_text.render(result, verbose=verbose), width)
    # the capture time differs in any two captures: no change, counted and listed only with -v
    assert f"Environment changes ({39 if verbose else 38}, 35 numerics-relevant)" in out
    shown = _shown(changes, verbose)
    cells = _assert_whole_segments(out, shown, width)
    if verbose and width == 80:
        assert len(cells) > len(shown)


def test_text_folds_minutiae_unless_verbose(pair, changes):
    out = _print(diff_text.render(*pair, changes), 120)
    lines = [line.rstrip() for line in out.splitlines()]
    headings = [line for line in lines if line and not line.startswith(" ")][2:]
    assert headings == [
        "tensorflow: 1 field changed (numerics-relevant)",
        "tensorflow build: 5 fields changed (3 numerics-relevant)",
        "numpy: 1 field changed (numerics-relevant)",
        "numpy build: 28 fields changed (all numerics-relevant)",
        "packages: 3 fields changed (2 numerics-relevant)",
    ]  # no "envaudit: 1 field changed": the capture time differs in any two captures
    assert "  + 26 more fields folded (26 numerics-relevant): --verbose lists them" in lines
    assert "  + 3 more fields folded (1 numerics-relevant): --verbose lists them" in lines
    assert "  + 1 more field folded: --verbose lists it" in lines
    assert "simd" not in out and "compilers" not in out and "protobuf" not in out
    rows = [line.split()[:2] for line in lines if line.startswith("  numerics")]
    assert rows[0] == ["numerics", "tensorflow.version"]

    verbose = _print(diff_text.render(*pair, changes, verbose=True), 120)
    assert "--verbose" not in verbose
    assert "numerics_libs.numpy.build.simd_found.AVX512_SKX" in verbose
    assert "packages.protobuf.version" in verbose and "captured_at" in verbose
    assert "envaudit: 1 field changed (informational)\n" in verbose


def test_markdown_keeps_minutiae_in_collapsed_blocks(changes):
    result = dataclasses.replace(make_result(), fingerprint_changes=changes)
    md = check_md.render(result)
    assert "**numpy build: 28 fields changed (all numerics-relevant)**" in md
    assert "<details><summary>+ 26 more fields folded (26 numerics-relevant)</summary>" in md
    assert "<details><summary>envaudit: 1 field changed (informational)</summary>" in md
    assert md.index("**tensorflow: 1 field") < md.index("**numpy build:") < md.index("envaudit: 1")
    assert "numerics_libs.numpy.build.simd_found.AVX512_SKX" in md  # folded, still there


# --- JSON and the command line ----------------------------------------------------------------


def test_diff_json_carries_origin_and_minutia(pair, tmp_path):
    paths = []
    for name, fp in zip(("golden", "current"), pair):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(fp.to_json())
    proc = run_cli("diff", *map(str, paths), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    listed = {c["path"]: c for c in json.loads(proc.stdout)["changes"]}
    assert len(listed) == 39
    assert listed["numerics_libs.numpy.build.simd_found.X86_V3"] == {
        "path": "numerics_libs.numpy.build.simd_found.X86_V3", "golden": None,
        "current": "X86_V3", "category": "packages", "numerics": True,
        "origin": "numpy build", "minutia": True}
    assert listed["tensorflow.version"]["origin"] == "tensorflow"
    assert listed["tensorflow.version"]["minutia"] is False
    assert all(c["origin"] in ORIGINS and isinstance(c["minutia"], bool)
               for c in listed.values())

    text = run_cli("diff", *map(str, paths), "--verbose")
    assert text.returncode == 1 and "simd_found.X86_V3" in text.stdout


def test_check_json_carries_origin_and_minutia(check_knob_moved, moving_knob, changes):
    _, report = check_knob_moved
    knob = next(c for c in report["fingerprint_changes"] if c["path"] == moving_knob.path)
    assert knob["origin"] == "environment variables" and knob["minutia"] is False
    assert all(c["origin"] in ORIGINS and isinstance(c["minutia"], bool)
               for c in report["fingerprint_changes"])
    rendered = json.loads(check_json.render(
        dataclasses.replace(make_result(), fingerprint_changes=changes)))
    assert [(c["origin"], c["minutia"]) for c in rendered["fingerprint_changes"]] == [
        (c.origin, c.minutia) for c in changes]


def test_check_verbose_lists_what_it_folds(golden_bundle):
    proc = run_cli("check", "--golden", str(golden_bundle), "--no-confirm", "--verbose")
    assert proc.returncode in (0, 1), proc.stderr
    # the capture time always differs and is a minutia: only --verbose gives it a row
    assert "--verbose lists" not in proc.stdout
    assert any(line.split()[:1] == ["captured_at"] for line in proc.stdout.splitlines())
