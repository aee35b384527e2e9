"""A golden recorded on other hardware or another TensorFlow build says so first, in every format.

The decision (``provenance.recorded_elsewhere``) is driven by recorded fingerprints: the capture
stored in golden/reference, edited the way another machine would differ, and GPU sections rebuilt
from the NVML recordings in tests/data/nvml. The end-to-end tests forge a golden from the session
bundle (same arrays, another CPU in its fingerprint) and run the real CLI against it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli
from forge import reseal
from test_fingerprint_gpu import FakeNVML, load_recording
from test_render_check import make_result

from envaudit.fingerprint import Fingerprint, capture, gpu
from envaudit.provenance import recorded_elsewhere
from envaudit.render import check_html, check_json, check_junit, check_md, check_text
from envaudit.store import REFERENCE_BUNDLE, load_bundle

AVX2_ONLY = ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"]
AVX512 = [*AVX2_ONLY, "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"]
XEON = "Intel(R) Xeon(R) Platinum 8480+"
ELSEWHERE = "recorded on another machine"


def reference_tree() -> dict[str, Any]:
    """The fingerprint stored in the shipped reference (a real CPU-only capture), a fresh copy."""
    return copy.deepcopy(load_bundle(REFERENCE_BUNDLE).fingerprint.data)


def edited(tree: dict[str, Any], **cpu: Any) -> Fingerprint:
    other = copy.deepcopy(tree)
    other["cpu"].update(cpu)
    return Fingerprint(other)


def with_gpu(tree: dict[str, Any], recording: str) -> Fingerprint:
    other = copy.deepcopy(tree)
    other["gpu"] = gpu.probe(FakeNVML(load_recording(recording)), environ={})
    return Fingerprint(other)


# --- the decision ----------------------------------------------------------------------------


def test_the_same_machine_with_other_settings_and_packages_is_not_elsewhere():
    tree = reference_tree()
    other = copy.deepcopy(tree)
    other["env"] = {"TF_ENABLE_ONEDNN_OPTS": "0", "OMP_NUM_THREADS": "1"}
    other["cpu"]["usable_cores"] = 1  # a cgroup limit, not another CPU
    other["cpu"]["microcode"] = "0xdeadbeef"  # a microcode update on the same machine
    other["packages"] = {**other["packages"], "numpy": {"version": "0.0.1"}}
    assert recorded_elsewhere(Fingerprint(tree), Fingerprint(tree)) is None
    assert recorded_elsewhere(Fingerprint(tree), Fingerprint(other)) is None


def test_another_cpu_generation_names_the_cpus_and_the_widest_instruction_sets():
    tree = reference_tree()
    golden = edited(tree, model_name=XEON, flags=AVX512)
    here = edited(tree, model_name="AMD EPYC 7B13", flags=AVX2_ONLY)
    assert golden.get("cpu.model_name") != here.get("cpu.model_name")  # the setup
    found = recorded_elsewhere(golden, here, shipped=True)
    assert found is not None
    assert found.kinds == ("cpu", "instruction_sets")
    assert found.paths == ("cpu.model_name", "cpu.flags")
    assert found.details == (f"CPU {XEON} -> AMD EPYC 7B13", "AVX-512 -> AVX2")
    assert found.line.startswith("the shipped reference was recorded on another machine (")
    assert found.line.endswith("run: envaudit record") and "\n" not in found.line
    # a golden of the user's own is "this golden"; a user model's advice records a model
    mine = recorded_elsewhere(golden, here, user_model=True)
    assert mine is not None and mine.line.startswith("this golden was recorded on another")
    assert mine.advice == "envaudit record --model MODEL --inputs INPUTS"


def test_one_name_two_generations_and_flags_of_one_width():
    tree = reference_tree()
    golden = edited(tree, model_name="AMD EPYC", family=26, model=2,
                    flags=[*AVX512, "avx512_vnni", "avx512_vp2intersect", "avx_vnni",
                           "avx512_bf16"])
    here = edited(tree, model_name="AMD EPYC", family=25, model=17, flags=AVX512)
    found = recorded_elsewhere(golden, here)
    assert found is not None and found.paths == ("cpu.family", "cpu.model", "cpu.flags")
    assert found.details == ("CPU AMD EPYC family 26 model 2 -> family 25 model 17",
                             "no avx512_bf16, avx512_vnni, avx512_vp2intersect +1 more here")


def test_a_gpu_and_a_tensorflow_build_are_named():
    tree = reference_tree()
    cpu_only = Fingerprint(tree)
    h100 = with_gpu(tree, "h100_sxm5_x2.json")
    assert cpu_only.get("gpu.available") is not True and h100.get("gpu.available") is True
    found = recorded_elsewhere(cpu_only, h100)
    assert found is not None and found.kinds == ("gpu",)
    assert found.details == ("GPU none -> 2x NVIDIA H100 80GB HBM3",)
    a100 = recorded_elsewhere(with_gpu(tree, "a100_sxm4_mig.json"), h100)
    assert a100 is not None and a100.details == (
        "GPU NVIDIA A100-SXM4-80GB -> 2x NVIDIA H100 80GB HBM3",)

    older = copy.deepcopy(tree)
    older["tensorflow"].update(version="2.20.0", distribution="tensorflow-cpu")
    upgrade = recorded_elsewhere(Fingerprint(older), cpu_only)
    assert upgrade is not None and upgrade.kinds == ("tensorflow",)
    assert upgrade.line.startswith("this golden was recorded with another TensorFlow build")
    assert upgrade.details == (
        f"TensorFlow 2.20.0 (tensorflow-cpu) -> {tree['tensorflow']['version']}",)
    rebuilt = copy.deepcopy(tree)
    rebuilt["tensorflow"]["build_info"]["cuda_version"] = "11.8"
    build = recorded_elsewhere(Fingerprint(rebuilt), cpu_only)
    assert build is not None and build.paths == ("tensorflow.build_info.cuda_version",)
    assert build.details[0].startswith("TensorFlow build cuda_version 11.8 -> ")


def test_what_a_side_could_not_read_is_never_claimed_and_a_hostile_name_stays_one_line():
    tree = reference_tree()
    unread = copy.deepcopy(tree)
    unread["cpu"] = {"available": False, "reason": "no /proc/cpuinfo"}
    unread["tensorflow"] = {"available": False, "reason": "not installed"}
    assert recorded_elsewhere(Fingerprint(unread), Fingerprint(tree)) is None
    assert recorded_elsewhere(Fingerprint(tree), Fingerprint(unread)) is None
    hostile = recorded_elsewhere(edited(tree, model_name="Evil\nCPU\r\n\x1b[2J"),
                                 Fingerprint(tree))
    assert hostile is not None and "\n" not in hostile.line and "\r" not in hostile.line


def test_the_shipped_reference_is_named_as_such_by_where_it_is_not_by_its_content(tmp_path):
    from envaudit.pipeline.canary import is_shipped as _is_shipped

    link = tmp_path / "link"
    link.symlink_to(REFERENCE_BUNDLE, target_is_directory=True)
    copy_of_it = shutil.copytree(REFERENCE_BUNDLE, tmp_path / "copy")
    assert link.resolve() == REFERENCE_BUNDLE.resolve()  # the setup: a real link to it
    assert _is_shipped(REFERENCE_BUNDLE) and _is_shipped(link)
    assert not _is_shipped(copy_of_it)  # the same bytes elsewhere are someone's own golden


# --- every format shows the decision -----------------------------------------------------------


def test_every_format_shows_the_line_first_or_as_its_own_field():
    tree = reference_tree()
    found = recorded_elsewhere(edited(tree, model_name=XEON, flags=AVX512),
                               edited(tree, model_name="<b>AMD</b> | EPYC", flags=AVX2_ONLY))
    assert found is not None
    result = dataclasses.replace(make_result(), recorded_elsewhere=found)
    from rich.console import Console

    console = Console(record=True, width=400, no_color=True)
    console.print(check_text.render(result))
    lines = console.export_text().splitlines()
    assert lines[0] == found.line and lines[1].startswith("▲ Drift")
    document = json.loads(check_json.render(result))
    assert document["recorded_elsewhere"]["kinds"] == ["cpu", "instruction_sets"]
    assert document["recorded_elsewhere"]["line"] == found.line
    md = check_md.render(result).splitlines()
    assert md[0].startswith("## envaudit check")
    assert md[2].startswith("> ⚠️ this golden was recorded on another machine")
    assert "&lt;b>AMD&lt;/b> \\| EPYC" in md[2]  # a stranger's CPU name stays text
    suite = ET.fromstring(check_junit.render(result).encode())
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["recorded_elsewhere"] == found.line
    assert suite.find("system-out").text == found.line
    page = check_html.render(result)
    assert '<p id="recorded-elsewhere" class="note">this golden was recorded' in page
    assert page.index("recorded-elsewhere") < page.index('id="headline"')
    plain = make_result()
    assert json.loads(check_json.render(plain))["recorded_elsewhere"] is None
    assert "recorded_elsewhere" not in check_junit.render(plain)
    assert "recorded-elsewhere" not in check_html.render(plain)


# --- the real CLI against a forged reference and against this machine's own golden -------------


@pytest.fixture(scope="module")
def golden_from_elsewhere(golden_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session golden (this machine's arrays) with another CPU in its fingerprint: the
    widest instruction set of its flags is not this machine's."""
    here = capture()
    flags = here.get("cpu.flags")
    assert isinstance(flags, list) and flags, "this machine's CPU flags cannot be read"
    other_flags = AVX2_ONLY if "avx512f" in flags else AVX512
    target = tmp_path_factory.mktemp("elsewhere") / "golden"
    shutil.copytree(golden_bundle, target)

    def another_cpu(manifest: dict[str, Any]) -> None:
        manifest["fingerprint"]["cpu"].update(model_name=XEON, flags=other_flags)

    reseal(target, another_cpu)
    return target


def test_a_reference_from_another_cpu_says_so_first_and_still_exits_0(golden_from_elsewhere):
    here = capture()
    forged = load_bundle(golden_from_elsewhere).fingerprint
    assert forged.get("cpu.model_name") == XEON != here.get("cpu.model_name")  # the setup
    assert ("avx512f" in forged.get("cpu.flags")) != ("avx512f" in here.get("cpu.flags"))
    # wide enough for the line whatever a pipe's width is: it is one line, not a paragraph
    proc = run_cli("check", "--golden", str(golden_from_elsewhere), env=cli_env(COLUMNS="400"))
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()[:2]
    assert first.startswith(f"this golden was {ELSEWHERE} (CPU {XEON} -> ")
    assert first.endswith("envaudit record") and second.startswith("✔ Identical")
    proc = run_cli("check", "--golden", str(golden_from_elsewhere), "--format", "json")
    document = json.loads(proc.stdout)
    assert (proc.returncode, document["verdict"]) == (0, "identical")
    assert document["recorded_elsewhere"]["kinds"] == ["cpu", "instruction_sets"]
    assert document["recorded_elsewhere"]["advice"] == "envaudit record"


def test_a_golden_recorded_on_this_machine_says_nothing_of_the_kind(golden_bundle, check_same):
    assert all(report["recorded_elsewhere"] is None for _, report in check_same)
    proc = run_cli("check", "--golden", str(golden_bundle))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("✔ Identical") and ELSEWHERE not in proc.stdout


def test_a_user_model_golden_from_elsewhere_advises_recording_the_model(golden_from_elsewhere):
    from envaudit.pipeline.own_model import OwnModel

    subject = object.__new__(OwnModel)  # the model itself is not needed to judge provenance
    subject.bundle = load_bundle(golden_from_elsewhere)
    found = subject.provenance(capture())
    assert found is not None and found.kinds == ("cpu", "instruction_sets")
    assert found.line.endswith("run: envaudit record --model MODEL --inputs INPUTS")
