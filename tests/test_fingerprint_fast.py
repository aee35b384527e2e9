"""The fast fingerprint says what the complete way says.

``envaudit fingerprint`` reads files instead of importing NumPy, ``importlib.metadata`` and
``pynvml`` (``numpy_files``, ``dist_index``, ``gpu.nvml_library_loads``). Each test here first
makes the situation real (a fresh interpreter where nothing is imported yet, a zip on sys.path,
a folded header, a NumPy told to drop a CPU feature) and checks it really is what it claims,
then compares the fast answer with the complete one.
"""

from __future__ import annotations

import email
import importlib.metadata
import json
import subprocess
import sys
import textwrap
import zipfile
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from conftest import cli_env
from hypothesis import given
from hypothesis import strategies as st

from envaudit.fingerprint import capture, dist_index, fields, numpy_files, packages
from envaudit.fingerprint.fields import _RULES, FieldKind

ROOT = Path(__file__).resolve().parents[1]

# Both ways in one fresh interpreter: the fast capture first (nothing imported yet), then the
# complete one with every probe forced to import what it describes.
_BOTH_WAYS = """
import json, sys
from envaudit.fingerprint import capture, gpu, numerics_libs, packages
fast = capture().data
watched = ("numpy", "importlib.metadata", "pynvml", "tensorflow", "rich")
loaded_fast = sorted(name for name in watched if name in sys.modules)
driver = gpu.nvml_library_loads()
import pynvml
numerics_libs.probe = numerics_libs.probe_complete
packages.probe = packages.probe_complete
plain_gpu = gpu.probe
gpu.probe = lambda: plain_gpu(pynvml)
complete = capture().data
loaded_complete = sorted(name for name in watched if name in sys.modules)
print(json.dumps({"fast": fast, "complete": complete, "loaded_fast": loaded_fast,
                  "loaded_complete": loaded_complete, "driver": driver}))
"""


def both_ways(**env: str | None) -> dict:
    result = subprocess.run([sys.executable, "-c", _BOTH_WAYS], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=cli_env(**env))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def without_volatile(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data.pop("captured_at")
    data["memory"].pop("available_bytes")
    return data


@pytest.fixture(scope="module")
def captured_both_ways() -> dict:
    # OpenBLAS answers from what it chose at load time: a forced core type and one thread show
    # that the library the fast way loads is asked, not guessed.
    return both_ways(OPENBLAS_CORETYPE="Haswell", OPENBLAS_NUM_THREADS="1")


def test_the_fast_capture_equals_the_complete_one(captured_both_ways):
    out = captured_both_ways
    # The complete way really imports what the fast way only reads.
    assert {"numpy", "importlib.metadata", "pynvml"} <= set(out["loaded_complete"])
    assert out["loaded_fast"] == (["pynvml"] if out["driver"] else [])
    assert without_volatile(out["fast"]) == without_volatile(out["complete"])
    assert out["fast"]["fingerprint_id"] == out["complete"]["fingerprint_id"]


def test_numpy_and_openblas_facts_come_from_the_loaded_library(captured_both_ways):
    libs = captured_both_ways["fast"]["numerics_libs"]
    runtime = libs["openblas_runtime"]
    assert runtime["corename"] == "Haswell" and runtime["num_threads"] == 1
    assert libs["numpy"]["build"]["simd_baseline"]  # read from NumPy's extension, not guessed
    assert libs == captured_both_ways["complete"]["numerics_libs"]


def test_without_a_driver_nvml_is_not_imported_and_says_what_pynvml_says(captured_both_ways):
    out = captured_both_ways
    if out["driver"]:
        pytest.skip("libnvidia-ml.so.1 loads here: pynvml is imported and answers itself")
    assert out["complete"]["gpu"] == {"available": False,
                                      "reason": "NVML: NVML Shared Library Not Found"}
    assert out["fast"]["gpu"] == out["complete"]["gpu"]


def test_a_numpy_told_to_drop_a_cpu_feature_is_imported():
    """NPY_DISABLE_CPU_FEATURES changes what NumPy dispatches to; the files cannot know it."""
    found = both_ways()["complete"]["numerics_libs"]["numpy"]["build"]["simd_found"]
    if not found:
        pytest.skip("this CPU supports none of NumPy's dispatch targets: nothing to drop")
    target = found[-1]
    out = both_ways(NPY_DISABLE_CPU_FEATURES=target)
    complete = out["complete"]["numerics_libs"]["numpy"]["build"]
    assert target in complete["simd_not_found"]  # the variable really moves NumPy's answer
    assert "numpy" in out["loaded_fast"]  # so the fast way imported NumPy
    assert out["fast"]["numerics_libs"] == out["complete"]["numerics_libs"]


def test_the_config_reader_never_runs_code(tmp_path):
    marker = tmp_path / "ran"
    source = f'CONFIG = _cleanup({{"Compilers": open({str(marker)!r}, "w")}})\n'
    literal = numpy_files._config_literal(source)
    with pytest.raises(numpy_files.NotExact):
        numpy_files._evaluate(literal.values[0], {})
    assert not marker.exists()


def test_numpy_detection_rules_on_known_cpus():
    haswell = frozenset("sse sse2 pni ssse3 sse4_1 sse4_2 popcnt cx16 lahf_lm avx avx2 f16c fma "
                        "bmi1 bmi2 abm movbe".split())
    rules = numpy_files._RULES[(2, 4)]
    assert rules(haswell)["X86_V3"] and not rules(haswell)["X86_V4"]
    icelake = haswell | set("avx512f avx512cd avx512bw avx512dq avx512vl avx512_vnni avx512ifma "
                            "avx512vbmi avx512_vbmi2 avx512_bitalg avx512_vpopcntdq gfni vaes "
                            "vpclmulqdq".split())
    assert rules(icelake)["AVX512_ICL"] and not rules(icelake)["AVX512_SPR"]
    assert rules(icelake | {"avx512_fp16", "avx512_bf16"})["AVX512_SPR"]
    # AVX-512 flags count only with AVX512F, as NumPy reads them only then.
    assert not rules(haswell | {"avx512cd"})["AVX512CD"]


# --- installed distributions ------------------------------------------------------------------


def make_dist(site: Path, folder: str, metadata: str, direct_url: dict | None = None) -> Path:
    info = site / folder
    info.mkdir(parents=True)
    (info / ("PKG-INFO" if folder.endswith(".egg-info") else "METADATA")).write_text(metadata)
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return info


def in_a_fresh_interpreter(code: str, *paths: Path) -> None:
    """Run ``code`` in a new interpreter with ``paths`` first on sys.path. The finders a test
    process holds are not a fresh one's: importing Dask imports the importlib_metadata backport,
    which adds its own finder and deletes the standard library's (under which the fast way
    rightly declines)."""
    prelude = (f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
               "from envaudit.fingerprint import dist_index, packages\n")
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_index_lists_what_importlib_metadata_lists_here():
    in_a_fresh_interpreter("""
        assert dist_index.scan() is not None  # this environment takes the fast way
        assert packages.probe() == packages.probe_complete()
    """)


def test_a_second_distribution_finder_makes_the_fast_way_decline(tmp_path):
    pytest.importorskip("importlib_metadata")  # Dask brings it
    make_dist(tmp_path, "no_version-2.0.dist-info",
              "Metadata-Version: 2.1\nName: no-version\n\nx\n")
    in_a_fresh_interpreter("""
        assert dist_index.scan() is not None
        import importlib_metadata  # what importing Dask does
        assert dist_index.scan() is None
        # the backport's distributions raise KeyError for a missing Version: still None here
        assert packages.probe()["no-version"] == {"version": None}
    """, tmp_path)


def test_a_source_checkout_shadowing_an_install_keeps_importlib_order(tmp_path):
    checkout, site = tmp_path / "checkout", tmp_path / "site"
    make_dist(checkout, "shadow.egg-info", "Metadata-Version: 2.1\nName: shadow\nVersion: 1.0\n")
    make_dist(site, "shadow-1.0.dist-info", "Metadata-Version: 2.1\nName: Shadow\nVersion: 1.0\n",
              {"url": "file:///src/shadow", "dir_info": {"editable": True}})
    make_dist(site, "no_version-2.0.dist-info", "Metadata-Version: 2.1\nName: no-version\n\nx\n")
    in_a_fresh_interpreter("""
        import importlib.metadata
        first = next(d for d in importlib.metadata.distributions()
                     if d.metadata["Name"] in ("shadow", "Shadow"))
        assert first.read_text("direct_url.json") is None  # the egg-info, without provenance
        fast = packages.probe()
        assert fast == packages.probe_complete()
        assert fast["shadow"]["direct_url"]["editable"] is True
        assert fast["no-version"] == {"version": None}
    """, checkout, site)


@pytest.mark.parametrize("metadata", [
    "Metadata-Version: 2.1\nName: odd\nVersion: 1.0\n  .post1\n",  # a folded version
    "From someone\nName: odd\nVersion: 1.0\n",  # an mbox envelope line
    ": nameless\nName: odd\nVersion: 1.0\n",
])
def test_a_header_the_reader_does_not_reproduce_falls_back(tmp_path, monkeypatch, metadata):
    make_dist(tmp_path, "odd-1.0.dist-info", metadata)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(dist_index.NotExact):
        dist_index.header_fields(metadata)
    assert dist_index.scan() is None
    assert packages.probe() == packages.probe_complete()


def test_a_zip_on_sys_path_falls_back(tmp_path, monkeypatch):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped-3.0.dist-info/METADATA",
                        "Metadata-Version: 2.1\nName: zipped\nVersion: 3.0\n")
    monkeypatch.syspath_prepend(str(archive))
    assert any(d.metadata["Name"] == "zipped" for d in importlib.metadata.distributions())
    assert dist_index.scan() is None
    fast = packages.probe()
    assert fast["zipped"] == {"version": "3.0"} and fast == packages.probe_complete()


_HEADER_LINES = st.sampled_from([
    "Name: a", "Version: 1", "name:b", "VERSION:\t2 ", "Name :c", "Summary: s", "Version:",
    " folded", "\tfolded", "", "no colon", "Classifier: x", "From: f", "Name: d\u00e9j\u00e0",
])


@given(st.lists(_HEADER_LINES, max_size=8), st.sampled_from(["", "\n", "\n\nbody\nName: z"]))
def test_header_fields_agree_with_the_email_parser(lines, tail):
    text = "\n".join(lines) + tail
    try:
        fields_read = dist_index.header_fields(text)
    except dist_index.NotExact:
        return  # the caller asks importlib.metadata
    message = importlib.metadata._adapters.Message(email.message_from_string(text))
    assert fields_read.get("name") == message["Name"]
    assert fields_read.get("version") == message["Version"]


# --- the field table --------------------------------------------------------------------------


def reference_describe(path: str) -> FieldKind | None:
    """The rule loop as it was, with ``fnmatchcase`` per segment (None: no rule matched)."""
    parts = path.split(".")
    for prefix, category, numerics, origin, minutia in _RULES:
        rule = prefix.split(".")
        if len(parts) >= len(rule) and all(map(fnmatchcase, parts, rule)):
            return FieldKind(category, numerics, origin, minutia)
    return None


def test_compiled_rules_match_as_fnmatch_did():
    paths = {path for path, _ in fields.leaves(capture().data)}
    for prefix, *_ in _RULES:
        for filler in ("x", "0", "simd_found", "nvidia-cudnn-cu12", "libcudnn_ops"):
            paths.add(prefix.replace("*", filler) + ".leaf")
            paths.add(prefix.replace("*", filler))
    checked = 0
    for path in sorted(paths):
        if path.split(".")[0] in ("packages", "env"):
            continue  # answered before the rule loop
        expected = reference_describe(path) or FieldKind("info", False, "other", False)
        assert fields.describe(path) == expected, path
        checked += 1
    assert checked > 100
    for name in ("numpy", "tensorflow-cpu", "onnxruntime-gpu", "opencv-python", "absl-py", "jaxx"):
        assert fields.is_numerics_package(name) == any(
            fnmatchcase(name, pattern) for pattern in fields._NUMERICS_PACKAGES)


def test_the_fingerprint_command_imports_neither_numpy_nor_tensorflow(tmp_path):
    """What ``envaudit fingerprint`` imports on the way to its answer, from the CLI's own entry:
    a default of another command (its options are declared in the same parser) once pulled
    NumPy into every command."""
    out = str(tmp_path / "f.json")
    code = ("import runpy, sys\n"
            f"sys.argv = ['envaudit', 'fingerprint', '--format', 'json', '-o', {out!r}]\n"
            "try:\n    runpy.run_module('envaudit', run_name='__main__')\n"
            "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(sorted(m for m in ('numpy', 'tensorflow') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=cli_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "f.json").is_file()
