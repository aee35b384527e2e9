"""The summary a maintainer reads first (``fingerprint/summary.py``), in ``envaudit report``,
``envaudit fingerprint`` text and Markdown: on this machine (through the CLI), and under a
fingerprint whose GPU section is a GPU machine's recorded NVML answers (tests/data/nvml/,
replayed by ``FakeNVML``). The facts are asserted as data; the rendered lines by one key phrase.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import re

import pytest
from conftest import cli_env, run_cli
from rich.console import Console
from test_fingerprint_gpu import FakeNVML, load_recording

from envaudit.fingerprint import Fingerprint, gpu, onednn
from envaudit.fingerprint.summary import GIT_NOT_READ, MAX_FACTS, MAX_VARIABLES, summarize
from envaudit.render import fingerprint_md, fingerprint_text

LABELS = ["TensorFlow", "TensorFlow build", "Devices TensorFlow would use",
          "NVIDIA driver and GPUs", "CPU", "CPU kernels", "Deployment runtimes", "Python", "OS",
          "Numerics variables set"]
CUDA_BUILD = {"is_cuda_build": True, "is_rocm_build": False, "cuda_version": "12.5.1",
              "cudnn_version": "9",
              "cuda_compute_capabilities": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]}
H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def here(tmp_path_factory) -> dict:
    """This machine's fingerprint as a fresh ``envaudit fingerprint`` captures it (in this test
    process TensorFlow may already be imported by other tests, which changes what the summary
    can say), with no numerics variable set (CI sets some: the tests that want one add it)."""
    out = tmp_path_factory.mktemp("here") / "fp.json"
    proc = run_cli("fingerprint", "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    data["env"] = {}
    return data


def machine(base: dict, nvml: str | None = None, environ: dict[str, str] | None = None,
            build: dict | None = None, **sections) -> Fingerprint:
    """``base`` with the GPU section NVML's recorded answers give (``environ`` as the process's
    CUDA variables, also recorded in ``env``), a TensorFlow build, and sections replaced."""
    data = copy.deepcopy(base)
    environ = environ or {}
    if nvml:
        data["gpu"] = gpu.probe(FakeNVML(load_recording(nvml)), environ=environ)
    data["env"] = {**data["env"], **environ}
    if build is not None:
        data["tensorflow"] = {**data["tensorflow"], "available": True, "build_info": build}
    data.update(sections)
    return Fingerprint(data)


def facts(fp: Fingerprint) -> dict[str, str]:
    return {f.label: f.value for f in summarize(fp)}


def _head_holds_the_summary(text: str, fp: Fingerprint) -> list[str]:
    head = text.splitlines()[:15]
    for fact in summarize(fp):
        assert any(line.startswith(f"- **{fact.label}:**") for line in head), fact.label
    return head


# --- the report and the fingerprint, on this machine ---------------------------------------


def test_report_head_holds_the_summary_on_this_machine(here):
    proc = run_cli("report")
    assert proc.returncode == 0, proc.stderr
    head = _head_holds_the_summary(proc.stdout, Fingerprint(here))
    assert [line.split(":**")[0][4:] for line in head if line.startswith("- **")] == LABELS
    tf = next(line for line in head if line.startswith("- **TensorFlow:**"))
    assert here["tensorflow"]["version"] in tf and "not imported to check" in tf
    assert GIT_NOT_READ in proc.stdout  # the report runs no TensorFlow
    # the whole fingerprint follows, folded
    last = [line for line in head if line.startswith("- **")][-1]
    assert proc.stdout.index("<details><summary>Full fingerprint") > proc.stdout.index(last)
    assert "| build_info.cuda_version |" in proc.stdout


def test_this_machines_cpu_kernels_and_devices(here):
    got = facts(Fingerprint(here))
    flags = here["cpu"]["flags"]
    has = [f for f in onednn.ONEDNN_DEFAULT_FLAGS if f in flags]
    if has:  # oneDNN on by default (here: AVX512_VNNI and BF16): its ISA level picks kernels
        assert got["CPU kernels"].startswith(f"oneDNN ISA {onednn.max_isa(flags)} (the highest")
        assert f"oneDNN on by default on this CPU (it has {', '.join(has)})" in got["CPU kernels"]
    else:  # an AVX2-only CPU: TensorFlow's own Eigen kernels
        assert got["CPU kernels"].startswith("Eigen kernels")
        assert "oneDNN off by default on this CPU" in got["CPU kernels"]
    assert got["Devices TensorFlow would use"].startswith("the CPU only: no GPU found (NVML: ")
    assert got["Numerics variables set"] == "none"  # the suite's environment is hermetic


def test_fingerprint_text_shows_the_summary_first(here):
    buffer = io.StringIO()
    Console(file=buffer, width=250, no_color=True).print(fingerprint_text.render(Fingerprint(here)))
    lines = buffer.getvalue().splitlines()
    assert lines[1].strip() == "Summary"
    assert [line.strip().split("  ")[0] for line in lines[2:2 + len(LABELS)]] == LABELS
    assert "(package metadata; TensorFlow not imported to check)" in lines[2]
    sections = [i for i, line in enumerate(lines) if line.rstrip() == "Python"]
    assert sections and sections[0] >= 2 + len(LABELS)  # the section tables come after


def test_fingerprint_markdown_through_the_cli_has_it_too():
    proc = run_cli("fingerprint", "--format", "md")
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.splitlines()[:15]
    assert sum(line.startswith("- **") for line in head) == len(LABELS)


# --- under a GPU machine's NVML answers ----------------------------------------------------


def test_report_head_holds_the_summary_under_an_h100_nodes_nvml(here):
    fp = machine(here, "h100_sxm5_x2.json",
                 {"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, CUDA_BUILD)
    text = fingerprint_md.render(fp, redact=True)
    head = _head_holds_the_summary(text, fp)
    devices = next(line for line in head if "Devices TensorFlow would use" in line)
    assert f"GPU:0-1: 2 × {H100} (compute capability 9.0; no sm_90 kernels: compiled from PTX" \
           " compute_90 at first use), GPU:0 is NVML's GPU 1, and the CPU" in devices
    assert "built with CUDA 12.5.1; NVML sees 2 GPUs; CUDA_VISIBLE_DEVICES=1,0" in devices
    assert "not imported to check" in devices
    driver = next(line for line in head if "NVIDIA driver and GPUs" in line)
    assert f"driver 550.54.15 (CUDA 12.4); 2 × {H100} (compute capability 9.0, 80 GiB)" in driver
    uuids = [d["nvmlDeviceGetUUID"] for d in load_recording("h100_sxm5_x2.json")["devices"]]
    assert not any(u in line for u in uuids for line in head)


@pytest.mark.parametrize("nvml, environ, build, expected", [
    ("rtx4090_geforce.json", {}, CUDA_BUILD,
     "GPU:0: NVIDIA GeForce RTX 4090 (compute capability 8.9; kernels sm_89), GPU:0 is NVML's"
     " GPU 0, and the CPU"),
    ("h100_sxm5_x2.json", {"CUDA_VISIBLE_DEVICES": "-1"}, CUDA_BUILD,
     "the CPU only: CUDA_VISIBLE_DEVICES=-1 selects none"),
    ("h100_sxm5_x2.json", {}, {"is_cuda_build": False, "is_rocm_build": False}, "the CPU only"),
    ("a100_sxm4_mig.json", {}, CUDA_BUILD, "a GPU and the CPU (which device CUDA numbers first"),
    ("driver_not_loaded.json", {}, CUDA_BUILD, "the CPU only: no GPU found (NVML: Driver Not"
     " Loaded)"),
])
def test_devices_tensorflow_would_use(here, nvml, environ, build, expected):
    got = facts(machine(here, nvml, environ, build))["Devices TensorFlow would use"]
    assert got.startswith(expected), got


def test_a_cpu_build_says_why_and_an_a100_in_mig_mode_says_so(here):
    cpu_build = summarize(machine(here, "h100_sxm5_x2.json", {}, {"is_cuda_build": False}))
    assert "this TensorFlow build has no CUDA support; NVML sees 2 GPUs" in cpu_build[2].source
    mig = facts(machine(here, "a100_sxm4_mig.json", {}, CUDA_BUILD))["NVIDIA driver and GPUs"]
    assert mig.endswith("; MIG mode on GPU 0")


@pytest.mark.parametrize("cc, arches, expected", [
    ("8.6", ["sm_80", "compute_80"], "kernels sm_80"),  # same major, lower minor: runs as is
    ("9.0", ["sm_80", "compute_90"], "no sm_90 kernels: compiled from PTX compute_90"),
    ("9.0", ["sm_80", "compute_80"], "no sm_90 kernels: compiled from PTX compute_80"),
    ("5.0", ["sm_60", "compute_60"], "the build has no kernels for it"),
])
def test_kernels_for_a_gpus_compute_capability(here, cc, arches, expected):
    fp = machine(here, "rtx4090_geforce.json", {},
                 {**CUDA_BUILD, "cuda_compute_capabilities": arches})
    fp.data["gpu"]["cuda_devices"][0]["compute_capability"] = cc
    assert expected in facts(fp)["Devices TensorFlow would use"]


# --- the CPU's kernels: oneDNN's level, its cap, TensorFlow's default ----------------------

AVX512 = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "sse4_1"]


@pytest.mark.parametrize("flags, env, expected", [
    (AVX512, {}, "oneDNN off by default on this CPU (no AVX512_VNNI"),
    ([*AVX512, "avx512_vnni"], {}, "oneDNN on by default on this CPU (it has avx512_vnni)"),
    (["avx", "avx2", "fma", "avx_vnni"], {}, "oneDNN on by default on this CPU (it has avx_vnni)"),
    ([*AVX512, "avx512_vnni"], {"TF_ENABLE_ONEDNN_OPTS": "0"},
     "oneDNN off: TF_ENABLE_ONEDNN_OPTS=0"),
    (AVX512, {"TF_ENABLE_ONEDNN_OPTS": "True"}, "oneDNN on: TF_ENABLE_ONEDNN_OPTS=True"),
    (AVX512, {"TF_ENABLE_ONEDNN_OPTS": "maybe"}, "oneDNN off by default"),  # TensorFlow ignores it
])
def test_onednn_on_or_off(here, flags, env, expected):
    fp = machine(here, environ=env, cpu={**here["cpu"], "flags": flags})
    assert expected in facts(fp)["CPU kernels"]


@pytest.mark.parametrize("flags, env, expected", [
    ([*AVX512, "avx512_vnni"], {}, "oneDNN ISA AVX512_CORE_VNNI (the highest this CPU has)"),
    ([*AVX512, "avx512_vnni"], {"ONEDNN_MAX_CPU_ISA": "avx2"},
     "oneDNN ISA AVX2 (capped by ONEDNN_MAX_CPU_ISA)"),
    ([*AVX512, "avx512_vnni"], {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"},
     "oneDNN ISA AVX512_CORE_VNNI (the highest"),  # a cap above the CPU caps nothing
    ([*AVX512, "avx512_vnni"], {"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "AVX"},
     "oneDNN ISA AVX512_CORE_VNNI (the highest"),  # oneDNN reads ONEDNN_ first
    (AVX512, {}, "Eigen kernels"),  # oneDNN off: its level selects nothing
])
def test_the_isa_that_selects_kernels(here, flags, env, expected):
    fp = machine(here, environ=env, cpu={**here["cpu"], "flags": flags})
    assert facts(fp)["CPU kernels"].startswith(expected)


def test_the_default_rule_is_linux_x86s():
    assert onednn.default_on(["avx512_vnni"], "Linux", "x86_64") is True
    assert onednn.default_on(["avx2"], "Linux", "x86_64") is False
    assert onednn.default_on(["asimd"], "Linux", "aarch64") is None
    assert onednn.default_on(["avx512_vnni"], "Darwin", "x86_64") is None


# --- TensorFlow's build and git version ----------------------------------------------------


def test_git_version_is_said_to_need_a_running_tensorflow_until_a_check_records_it(here):
    build = facts(machine(here, build=CUDA_BUILD))["TensorFlow build"]
    assert build == ("CUDA 12.5.1, cuDNN 9 (kernels for sm_60, sm_70, sm_80, sm_89, compute_90);"
                     f" {GIT_NOT_READ}")
    checked = copy.deepcopy(here)
    checked["tensorflow"]["git_version"] = "v2.21.0-rc1-42-gabcdef"
    checked["tensorflow"]["build_info"] = {"is_cuda_build": False}
    assert facts(Fingerprint(checked))["TensorFlow build"] == \
        "CPU only (no CUDA); git version v2.21.0-rc1-42-gabcdef"
    # captured where TensorFlow ran: no claim that it was not imported
    checked["tensorflow"]["build_info"] = CUDA_BUILD
    sources = {f.label: f.source for f in summarize(Fingerprint(checked))}
    assert sources["TensorFlow"] == "package metadata"
    assert sources["Devices TensorFlow would use"].endswith(
        "inferred: TensorFlow's own device list is not recorded")


# --- variables, redaction, strangers' fingerprints -----------------------------------------


def test_variables_set_are_named_with_values_long_ones_cut_many_counted(here):
    env = {f"OMP_VAR_{i}": str(i) for i in range(MAX_VARIABLES + 2)}
    env["OMP_VAR_0"] = "x" * 200
    got = facts(machine(here, env=env))["Numerics variables set"]
    assert got.startswith("OMP_VAR_0=" + "x" * 79 + "…, OMP_VAR_1=1")
    assert got.endswith(", and 2 more (listed below)")


def test_a_host_in_a_variables_value_is_hidden_in_the_reports_summary_too():
    env = cli_env(NCCL_COMM_ID="trainer-7.corp.example.com:5555",
                  TF_CONFIG=json.dumps({"cluster": {"worker": ["10.20.30.40:2222"]}}))
    proc = run_cli("report", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = next(line for line in proc.stdout.splitlines()
                   if line.startswith("- **Numerics variables set:**"))
    assert "NCCL_COMM_ID=[host]:5555" in summary and "[host]:2222" in summary
    assert "trainer-7" not in proc.stdout and "10.20.30.40" not in proc.stdout
    unredacted = run_cli("report", "--no-redact", env=env).stdout
    assert "NCCL_COMM_ID=trainer-7.corp.example.com:5555" in unredacted


def test_the_machines_hostname_in_a_value_is_hidden_in_the_summary(here):
    tree = machine(here, env={"LD_LIBRARY_PATH": "/mnt/gpubox-17/cuda/lib64"},
                   os={**here["os"], "hostname": "gpubox-17"})
    text = fingerprint_md.render(tree, redact=True)
    summary = next(line for line in text.splitlines() if "Numerics variables set" in line)
    assert "LD_LIBRARY_PATH=/mnt/[hostname]/cuda/lib64" in summary
    assert "gpubox-17" not in text


def test_a_strangers_odd_fingerprint_still_summarizes():
    odd = Fingerprint({"schema": "envaudit.fingerprint/1", "fingerprint_id": "fp-x",
                       "cpu": {"available": False, "reason": "no /proc/cpuinfo"},
                       "gpu": {"available": True, "devices": "many", "cuda_devices": [7]},
                       "tensorflow": {"available": True, "build_info": {"is_cuda_build": True}},
                       "os": ["not", "a", "mapping"], "env": {"A": 1}})
    got = summarize(odd)
    assert len(got) <= MAX_FACTS and [f.label for f in got] == LABELS
    assert dict((f.label, f.value) for f in got)["CPU"] == "unavailable (no /proc/cpuinfo)"


# --- the HTML report's environment section -------------------------------------------------


def test_the_html_environment_section_starts_with_the_summary(here):
    from test_render_check import make_result

    from envaudit.redact_result import shareable
    from envaudit.render import check_html

    data = copy.deepcopy(here)
    data["env"]["NCCL_COMM_ID"] = "trainer-7.example.com:5555"
    result = shareable(dataclasses.replace(make_result(), current_fingerprint=Fingerprint(data)))
    page = check_html.render(result)
    section = page[page.index('<h2 id="environment">Environment</h2>'):]
    rows = re.findall(r'<tr data-fact="([^"]+)"><th>[^<]*</th><td>([^<]*)', section)
    assert [label for label, _ in rows] == LABELS
    assert dict(rows)["Numerics variables set"] == "NCCL_COMM_ID=[host]:5555 "
    assert "trainer-7" not in page
    assert section.index("</table>") < section.index("<h3>Changes from the golden</h3>") < \
        section.index("<details><summary>current fingerprint (whole)</summary>")


def test_the_deployment_runtimes_are_read_from_packages_and_variables():
    """What would convert and run the tflite and onnx modes, never imported to find out."""
    fp = Fingerprint({"packages": {"tensorflow": {"version": "2.21.0"},
                                   "ai-edge-litert": {"version": "1.4.0"},
                                   "onnxruntime": {"version": "1.20.1"}},
                      "env": {"ENVAUDIT_TFLITE_KERNELS": "reference",
                              "ENVAUDIT_TFLITE_THREADS": "2"}})
    assert facts(fp)["Deployment runtimes"] == (
        "TFLite: tensorflow 2.21.0 converter, ai-edge-litert 1.4.0, reference kernels,"
        " 2 threads; ONNX: onnxruntime 1.20.1")
    plain = Fingerprint({"packages": {"tensorflow": {"version": "2.21.0"}}, "env": {}})
    assert facts(plain)["Deployment runtimes"] == (
        "TFLite: tensorflow 2.21.0 converter, tf.lite.Interpreter (ai-edge-litert not"
        " installed), xnnpack kernels, default threads; ONNX: not installed ('envaudit[onnx]')")
    odd = Fingerprint({"packages": ["not", "a", "mapping"]})
    assert facts(odd)["Deployment runtimes"].startswith("TFLite: none (TensorFlow is not")
