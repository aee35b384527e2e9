"""What a user sees on every run, quiet where there is nothing to say.

Each test first sets up the case a user met (an identical check with no history, two captures of
one machine, a model with one output, a golden of the other model kind, a report sent to a file,
a pipe, a TensorFlow 2.19 golden on another CPU) and checks the setup is real, then shows what is
printed now. The real CLI runs as a subprocess where the terminal, the pipe or TensorFlow matter,
in-process (``cli.main``) where only the words do.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli
from rich.console import Console
from test_change_table import _assert_whole_segments, _print, _shown
from test_render_check import make_result
from test_render_user_model import FULL, KERAS, _array

from envaudit import cli, history
from envaudit.compare.verdict import model_headline
from envaudit.errors import EnvauditError
from envaudit.fingerprint import Fingerprint, capture, diff
from envaudit.fingerprint.identity import fingerprint_id
from envaudit.render import check_text, diff_text
from envaudit.store import read_manifest
from envaudit.usermodel.golden import locate

PIPE_WIDTH = 120  # what the CLI lays tables out to off a terminal


@pytest.fixture(scope="module")
def piped_check(golden_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``envaudit check`` against a golden recorded here, stdout a pipe, a fresh history: the
    first check a user runs after recording."""
    data = tmp_path_factory.mktemp("history")
    sha = str(read_manifest(golden_bundle)["manifest_sha256"])
    # the setup: nothing on record, so the old "since" line would have been printed
    assert history.runs(data / "envaudit" / "history.sqlite") == []
    proc = run_cli("check", "--golden", str(golden_bundle), "--no-confirm",
                   env=cli_env(XDG_DATA_HOME=str(data)))
    assert proc.returncode == 0, proc.stderr
    return {"proc": proc, "history": data / "envaudit" / "history.sqlite", "sha": sha}


# --- an identical check ------------------------------------------------------------------------


def test_an_identical_check_has_no_since_line(piped_check):
    out = piped_check["proc"].stdout
    assert out.startswith("✔ Identical: ")
    assert "no identical check against this golden on record" not in out
    assert "last identical check" not in out
    # the run was remembered: the next non-identical check has something to say
    runs = history.runs(piped_check["history"])
    assert [r.verdict for r in runs] == ["identical"]


def test_the_since_line_stays_for_a_check_that_is_not_identical(tmp_path):
    drift = dataclasses.replace(make_result(), verdict="drift")
    assert history.since_last_identical(drift, "a" * 64, tmp_path / "h.sqlite") == \
        "no identical check against this golden on record"
    same = dataclasses.replace(drift, verdict="identical")
    assert history.since_last_identical(same, "a" * 64, tmp_path / "h.sqlite") is None


# --- two captures of one machine ---------------------------------------------------------------


def _second_capture(tmp_path: Path) -> tuple[str, str]:
    """Two fingerprint files of this machine, taken at different times with different free
    memory, as two 'envaudit fingerprint' runs give."""
    first = capture().to_dict()
    second = copy.deepcopy(first)
    second["captured_at"] = "2030-01-01T00:00:00Z"
    second["memory"]["available_bytes"] = first["memory"]["available_bytes"] // 2 + 1
    paths = []
    for name, data in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text(json.dumps(data))
        paths.append(str(tmp_path / name))
    return paths[0], paths[1]


def test_a_diff_of_two_captures_of_one_machine_reports_no_change(tmp_path, capsys):
    a, b = _second_capture(tmp_path)
    changes = diff(Fingerprint(json.loads(Path(a).read_text())),
                   Fingerprint(json.loads(Path(b).read_text())))
    assert {c.path for c in changes} == {"captured_at", "memory.available_bytes"}  # the setup
    assert cli.main(["diff", a, b]) == 0
    out = capsys.readouterr().out
    assert "identical fingerprints (only the capture time and free memory differ)" in out
    assert "field changed" not in out and "informational" not in out
    assert cli.main(["diff", a, b, "-v"]) == 0  # -v still lists them, and counts them
    out = capsys.readouterr().out
    assert "no numerics-relevant change; 2 informational" in out and "captured_at" in out


def test_a_check_whose_environment_differs_only_in_capture_time_says_so(piped_check):
    out = piped_check["proc"].stdout
    assert "envaudit: 1 field changed" not in out and "captured_at" not in out
    assert "Environment: no fingerprint changes (only the capture time" in out


# --- a user model's wording --------------------------------------------------------------------


def test_a_model_with_one_output_is_the_output_not_all_1_output():
    stages = (_array("output.scores"),)
    headline = model_headline("identical", stages, (), None, FULL)
    assert headline.startswith("Identical: the output is bit-identical to golden")
    two = model_headline("identical", (_array("output.a"), _array("output.b")), (), None, FULL)
    assert two.startswith("Identical: all 2 outputs are bit-identical")


def test_a_golden_of_the_other_model_kind_names_both_kinds(tmp_path):
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")  # a SavedModel folder, as far as its kind goes
    assert KERAS.kind == "keras"  # the setup: the golden was recorded from a Keras model
    with pytest.raises(EnvauditError) as refused:
        locate(KERAS, str(saved))
    message = str(refused.value)
    assert "is a SavedModel, the golden was recorded from a Keras model" in message
    assert "model model" not in message and "saved model" not in message


# --- -o and pipes -----------------------------------------------------------------------------


def test_a_report_written_with_o_leaves_one_summary_line_on_stderr(golden_bundle, tmp_path):
    report = tmp_path / "report.xml"
    proc = run_cli("check", "--golden", str(golden_bundle), "--no-confirm", "--modes", "eager",
                   "--format", "junit", "-o", str(report), "--no-history")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == f"envaudit: identical (exit 0); report written to {report}\n"
    assert report.read_text().startswith("<?xml")


def test_piped_text_keeps_the_headline_on_one_line_and_tables_in_120_columns(piped_check):
    lines = piped_check["proc"].stdout.splitlines()
    headline = lines[0]
    # the setup: a headline longer than the width the tables keep to
    assert len(headline) > PIPE_WIDTH
    assert headline.endswith("in all 3 modes (eager, graph and xla).")
    table = [line for line in lines if line.startswith(("#   stage", "0   decode", "12  nms"))]
    assert table and all(len(line) <= PIPE_WIDTH for line in table)


# --- the change table against a TensorFlow 2.19 golden from another CPU ------------------------

AVX512 = ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx512_vnni",
          "avx512_bf16", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_bitalg",
          "avx512_vpopcntdq", "avx512_fp16", "amx_bf16"]


def _tf(version: str, distribution: str, build_info: dict[str, Any]) -> dict[str, Any]:
    return {"available": True, "distribution": distribution, "version": version,
            "git_version": f"v{version}-rc0-6-ge36baa30292", "compiler": "Clang 18.1.8",
            "location": "/opt/venv/lib/python3.11/site-packages/tensorflow",
            "build_info": build_info, "nvidia_wheels": {}}


@pytest.fixture(scope="module")
def tf219_pair() -> tuple[Fingerprint, Fingerprint]:
    """(golden, current): the CPU-only TensorFlow 2.19 on an AVX-512 machine against the CUDA
    build of 2.21 on one without AVX-512; everything else is this machine's capture."""
    base = capture().to_dict()
    sides = []
    for version, flags, tf, packages in (
        ("2.19.0", AVX512, _tf("2.19.0", "tensorflow-cpu", {
            "cpu_compiler": "/usr/lib/llvm-18/bin/clang", "is_cuda_build": False}),
         {"tensorflow-cpu": "2.19.0", "keras": "3.9.2", "ml-dtypes": "0.5.1",
          "tensorboard": "2.19.0", "tensorflow-io-gcs-filesystem": "0.37.1"}),
        ("2.21.0", [], _tf("2.21.0", "tensorflow", {
            "cpu_compiler": "clang", "is_cuda_build": True, "cuda_version": "12.5.1",
            "cudnn_version": "9",
            "cuda_compute_capabilities": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]}),
         {"tensorflow": "2.21.0", "keras": "3.15.1", "ml-dtypes": "0.6.0"}),
    ):
        data = copy.deepcopy(base)
        data["cpu"]["flags"] = sorted({f for f in base["cpu"]["flags"] if f not in AVX512}
                                      | set(flags))
        data["tensorflow"] = tf
        data["packages"] = {k: v for k, v in data["packages"].items()
                            if k not in ("tensorflow", "tensorflow-cpu", "keras", "ml-dtypes",
                                         "tensorboard", "tensorflow-io-gcs-filesystem")}
        data["packages"].update({name: {"version": v} for name, v in packages.items()})
        data["captured_at"] = "2025-04-01T00:00:00Z" if version == "2.19.0" else \
            "2026-11-29T10:00:00Z"
        data["fingerprint_id"] = fingerprint_id(data)
        sides.append(Fingerprint(data))
    return sides[0], sides[1]


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("width", [80, 120])
def test_paths_against_a_tf_2_19_golden_break_only_at_dots(tf219_pair, width, verbose):
    changes = diff(*tf219_pair)
    paths = {c.path for c in changes}
    # the setup the user met: 32 or more paths, the longest one among them
    assert len(changes) >= 32
    assert "tensorflow.build_info.cuda_compute_capabilities.compute_90" in paths
    shown = _shown(changes, verbose)
    for renderable in (diff_text.render(*tf219_pair, changes, verbose=verbose),
                       check_text.render(dataclasses.replace(make_result(),
                                                             fingerprint_changes=changes),
                                         verbose=verbose)):
        out = _print(renderable, width)
        _assert_whole_segments(out, shown, width)


def test_paths_break_only_at_dots_through_the_cli_console(tf219_pair, tmp_path, capsys):
    files = []
    for name, fp in zip(("golden.json", "current.json"), tf219_pair, strict=True):
        (tmp_path / name).write_text(fp.to_json())
        files.append(str(tmp_path / name))
    assert cli.main(["diff", *files, "-v"]) == 1
    out = capsys.readouterr().out
    _assert_whole_segments(out, _shown(diff(*tf219_pair), True), PIPE_WIDTH)
    # the longest path does not fit beside its values here: it takes two lines, split at a dot
    assert "tensorflow.build_info.cuda_compute_capabilities." in out


def test_text_sent_to_a_file_is_not_wrapped_either():
    result = dataclasses.replace(make_result(), headline="Drift: " + "long words " * 30)
    wrapped = io.StringIO()  # the setup: a console of 120 columns wraps it
    Console(file=wrapped, width=PIPE_WIDTH, no_color=True).print(check_text.headline(result))
    assert wrapped.getvalue().count("\n") > 1
    buffer = io.StringIO()
    cli._console(buffer).print(check_text.headline(result))
    assert buffer.getvalue().count("\n") == 1
