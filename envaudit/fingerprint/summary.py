"""The summary of a fingerprint: the dozen facts a maintainer asks for first, each with how it was
determined.

``summarize(fp)`` returns ``Fact``s in display order: TensorFlow (version, then its build: the
CUDA and cuDNN it was built with, its git version), the devices TensorFlow would use, the NVIDIA
driver and GPUs, the CPU and the instruction set that selects its kernels (oneDNN's level, and
whether TensorFlow turns oneDNN on here), Python, the OS, and the numerics variables that are set.
The renderers (terminal, Markdown, HTML) print these facts first, the whole tree after them.

Constraints the next editor must keep:
- Decided here, from the tree alone: nothing imports TensorFlow or calls NVML (the fingerprint
  must stay cheap), so "the devices TensorFlow would use" is inferred from NVML's recorded
  answers, the build info and ``CUDA_VISIBLE_DEVICES``, and the fact says so.
- At most ``MAX_FACTS`` facts, each one line (``envaudit report | head -15`` holds them all).
- Redaction is not done here: summarize the tree that is shown (a report redacts the tree first,
  so a host name in a variable's value is hidden in the summary as everywhere else).
- A fingerprint may be anyone's: any field may be missing, unavailable or of another type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envaudit.fingerprint import onednn
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.types import Fingerprint

MAX_FACTS = 12
MAX_VARIABLES = 6  # variables named in the summary; the rest are counted
MAX_VALUE_CHARS = 80  # a variable's value in the summary, cut with "…" (the detail has it whole)
NOT_IMPORTED = "TensorFlow not imported to check"
# When the fingerprint was captured in a process that had imported TensorFlow (its git version
# and loaded libraries are then recorded): the devices are still inferred.
INFERRED = "inferred: TensorFlow's own device list is not recorded"
GIT_NOT_READ = "git version: read only while TensorFlow runs (envaudit check)"


@dataclass(frozen=True)
class Fact:
    """One line of the summary: what, its value, and how envaudit determined it."""

    label: str  # "Devices TensorFlow would use"
    value: str  # "GPU:0 NVIDIA H100 80GB HBM3 (compute capability 9.0), and the CPU"
    source: str  # "NVML sees 2 GPUs; TensorFlow built with CUDA 12.5.1; ..."


def summarize(fp: Fingerprint) -> tuple[Fact, ...]:
    """The facts of ``fp`` in display order (at most ``MAX_FACTS``)."""
    facts = (_tensorflow(fp), _build(fp), _devices(fp), _gpus(fp), _cpu(fp), _kernels(fp),
             _runtimes(fp), _python(fp), _os(fp), _variables(fp))
    return facts[:MAX_FACTS]


def _text(value: Any) -> str:
    if is_unavailable(value):
        return f"unavailable ({value['reason']})"
    return "unknown" if value is None else str(value)


def _section(fp: Fingerprint, key: str) -> Mapping[str, Any]:
    """A section as a mapping ({} when absent or of another type); unavailable stays as is."""
    value = fp.get(key)
    return value if isinstance(value, Mapping) else {}


def _env(fp: Fingerprint) -> dict[str, str]:
    return {str(k): str(v) for k, v in _section(fp, "env").items()}


def _tensorflow(fp: Fingerprint) -> Fact:
    tf = _section(fp, "tensorflow")
    if is_unavailable(tf) or not tf:
        return Fact("TensorFlow", f"not found: {tf.get('reason', 'no tensorflow section')}",
                    "the installed distributions")
    distribution = tf.get("distribution")
    value = _text(tf.get("version")) + (f" ({distribution})" if distribution else "")
    return Fact("TensorFlow", value, "package metadata" + ("" if _imported(tf) else
                                                            f"; {NOT_IMPORTED}"))


def _imported(tf: Mapping[str, Any]) -> bool:
    """Whether the capturing process had imported TensorFlow (what only it can read is there)."""
    git = tf.get("git_version")
    return "loaded_libraries" in tf or bool(git and not is_unavailable(git))


def _build(fp: Fingerprint) -> Fact:
    tf = _section(fp, "tensorflow")
    build = tf.get("build_info")
    git = tf.get("git_version")
    git_text = GIT_NOT_READ if is_unavailable(git) or not git else f"git version {git}"
    source = "its build_info.py, read as text"
    if is_unavailable(tf) or not tf:
        return Fact("TensorFlow build", "none", "the installed distributions")
    if not isinstance(build, Mapping) or is_unavailable(build):
        return Fact("TensorFlow build", f"{_text(build)}; {git_text}", source)
    if build.get("is_rocm_build"):
        gpu = f"ROCm {build.get('rocm_version', '')}".strip()
    elif build.get("is_cuda_build"):
        gpu = f"CUDA {_text(build.get('cuda_version'))}, cuDNN {_text(build.get('cudnn_version'))}"
        arches = build.get("cuda_compute_capabilities")
        if isinstance(arches, list) and arches:
            gpu += f" (kernels for {', '.join(str(a) for a in arches)})"
    else:
        gpu = "CPU only (no CUDA)"
    return Fact("TensorFlow build", f"{gpu}; {git_text}", source)


def _devices(fp: Fingerprint) -> Fact:
    label = "Devices TensorFlow would use"
    tf, gpu = _section(fp, "tensorflow"), _section(fp, "gpu")
    build = tf.get("build_info") if isinstance(tf.get("build_info"), Mapping) else {}
    visible = _env(fp).get("CUDA_VISIBLE_DEVICES")
    count = 0 if is_unavailable(gpu) else len(_boards(gpu))
    seen = f"NVML sees {count or 'no'} GPU{'' if count == 1 else 's'}"
    how = [seen, f"CUDA_VISIBLE_DEVICES={visible}" if visible is not None
           else "CUDA_VISIBLE_DEVICES unset"]
    if is_unavailable(tf) or not tf:
        return Fact(label, "none: TensorFlow is not installed", "; ".join(how))
    if not build or is_unavailable(build):
        return Fact(label, "the CPU; GPUs not known (the build info is unreadable)",
                    "; ".join(how))
    if not build.get("is_cuda_build"):
        kind = "ROCm (AMD GPUs, not probed by envaudit)" if build.get("is_rocm_build") else \
            "no CUDA support"
        return Fact(label, "the CPU only", "; ".join([f"this TensorFlow build has {kind}", *how]))
    how = [f"built with CUDA {_text(build.get('cuda_version'))}", *how,
           *([_cuda_libraries(tf)] if count else []),
           INFERRED if _imported(tf) else NOT_IMPORTED]
    return Fact(label, _cuda_devices(gpu, build, visible), "; ".join(how))


def _version(fp: Fingerprint, package: str) -> str | None:
    found = _section(fp, "packages").get(package)
    version = found.get("version") if isinstance(found, Mapping) else None
    return str(version) if version else None


def _runtimes(fp: Fingerprint) -> Fact:
    """What would convert and run the deployment modes (tflite, onnx), from the installed
    distributions and envaudit's LiteRT variables (``tflite_settings``), never imported."""
    env = _env(fp)
    tensorflow, litert = _version(fp, "tensorflow"), _version(fp, "ai-edge-litert")
    if tensorflow is None:
        tflite = "TFLite: none (TensorFlow is not installed)"
    else:
        runtime = (f"ai-edge-litert {litert}" if litert else
                   "tf.lite.Interpreter (ai-edge-litert not installed)")
        threads = env.get("ENVAUDIT_TFLITE_THREADS")
        tflite = (f"TFLite: tensorflow {tensorflow} converter, {runtime},"
                  f" {env.get('ENVAUDIT_TFLITE_KERNELS', 'xnnpack')} kernels,"
                  f" {f'{threads} threads' if threads else 'default threads'}")
    onnx = [f"{name} {_version(fp, name)}" for name in ("tf2onnx", "onnxruntime")
            if _version(fp, name)]
    onnx_text = ("ONNX: " + ", ".join(onnx)) if onnx else "ONNX: not installed ('envaudit[onnx]')"
    return Fact("Deployment runtimes", f"{tflite}; {onnx_text}",
                "package metadata; ENVAUDIT_TFLITE_* variables")


def _boards(gpu: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    devices = gpu.get("devices")
    return [d for d in devices if isinstance(d, Mapping)] if isinstance(devices, list) else []


def _cuda_libraries(tf: Mapping[str, Any]) -> str:
    wheels = tf.get("nvidia_wheels")
    if isinstance(wheels, Mapping) and wheels and not is_unavailable(wheels):
        return f"CUDA libraries from {len(wheels)} nvidia-* wheel(s)"
    return "no nvidia-* CUDA wheels: the system's CUDA libraries are needed"


def _cuda_devices(gpu: Mapping[str, Any], build: Mapping[str, Any], visible: str | None) -> str:
    """What a CUDA build of TensorFlow would place ops on, from NVML's listing and the selection
    CUDA_VISIBLE_DEVICES makes (``gpu.cuda_devices``)."""
    if is_unavailable(gpu) or not gpu:
        return f"the CPU only: no GPU found ({_text(gpu.get('reason', 'no gpu section'))})"
    selected = gpu.get("cuda_devices")
    if is_unavailable(selected):
        return f"a GPU and the CPU ({selected['reason']})"
    if not isinstance(selected, list) or not selected:
        why = f"CUDA_VISIBLE_DEVICES={visible} selects none" if visible is not None else \
            "NVML lists no device CUDA can run on"
        return f"the CPU only: {why}"
    kinds = Counter((str(d.get("name")), str(d.get("compute_capability")))
                    for d in selected if isinstance(d, Mapping))
    first = selected[0] if isinstance(selected[0], Mapping) else {}
    parts = [f"{_times(n)}{name} (compute capability {cc}{_kernels_for(cc, build)})"
             for (name, cc), n in kinds.items()]
    where = "GPU:0" if len(selected) == 1 else f"GPU:0-{len(selected) - 1}"
    label = first.get("label")
    zero = f", GPU:0 is NVML's GPU {label}" if isinstance(label, str) else ""
    return f"{where}: {'; '.join(parts)}{zero}, and the CPU"


def _times(n: int) -> str:
    return "" if n == 1 else f"{n} × "


def _kernels_for(cc: str, build: Mapping[str, Any]) -> str:
    """Whether the build carries kernels for compute capability ``cc``: compiled for it (an
    ``sm_XY`` of the same major, minor at most the GPU's), compiled at first use from PTX (a
    ``compute_XY`` at most the GPU's), or none (TensorFlow ignores the GPU)."""
    arches = build.get("cuda_compute_capabilities")
    major, _, minor = cc.partition(".")
    if not isinstance(arches, list) or not (major.isdigit() and minor.isdigit()):
        return ""
    have = int(major) * 10 + int(minor)
    native = [a for a in arches if isinstance(a, str) and a.startswith("sm_")
              and a[3:].isdigit() and int(a[3:]) // 10 == int(major) and int(a[3:]) <= have]
    ptx = [a for a in arches if isinstance(a, str) and a.startswith("compute_")
           and a[8:].isdigit() and int(a[8:]) <= have]
    if native:
        return f"; kernels {native[-1]}"
    if ptx:
        return f"; no sm_{have} kernels: compiled from PTX {ptx[-1]} at first use"
    return "; the build has no kernels for it: TensorFlow ignores this GPU"


def _gpus(fp: Fingerprint) -> Fact:
    gpu = _section(fp, "gpu")
    if is_unavailable(gpu) or not gpu:
        return Fact("NVIDIA driver and GPUs", f"none found ({gpu.get('reason', 'no gpu section')})",
                    "NVML")
    boards = _boards(gpu)
    kinds = Counter((str(d.get("name")), str(d.get("compute_capability")), _gib(d))
                    for d in boards)
    listed = "; ".join(f"{_times(n)}{name} (compute capability {cc}{mem})"
                       for (name, cc, mem), n in kinds.items()) or "no GPU"
    mig = [str(d.get("index")) for d in boards if isinstance(d.get("mig_mode"), Mapping)
           and d["mig_mode"].get("current") == "enabled"]
    if mig:
        listed += f"; MIG mode on GPU {', '.join(mig)}"
    value = (f"driver {_text(gpu.get('driver_version'))} (CUDA "
             f"{_text(gpu.get('cuda_driver_version'))}); {listed}")
    return Fact("NVIDIA driver and GPUs", value, "NVML")


def _gib(device: Mapping[str, Any]) -> str:
    total = device.get("memory_total_bytes")
    return f", {total / 2**30:.0f} GiB" if isinstance(total, int) else ""


def _cpu(fp: Fingerprint) -> Fact:
    cpu = _section(fp, "cpu")
    if is_unavailable(cpu) or not cpu:
        return Fact("CPU", _text(cpu or None), "the cpu probe")
    ids = ", ".join(f"{k} {cpu[k]}" for k in ("family", "model") if cpu.get(k) is not None)
    vendor = " ".join(str(v) for v in (cpu.get("vendor"), ids) if v)
    cores = f"{_text(cpu.get('usable_cores'))} of {_text(cpu.get('logical_cores'))} cores usable"
    value = f"{_text(cpu.get('model_name'))} ({vendor}), {cores}" if vendor else \
        f"{_text(cpu.get('model_name'))}, {cores}"
    return Fact("CPU", value, _text(cpu.get("source")))


def _kernels(fp: Fingerprint) -> Fact:
    label = "CPU kernels"
    cpu, os_ = _section(fp, "cpu"), _section(fp, "os")
    flags = cpu.get("flags") if isinstance(cpu.get("flags"), list) else []
    flags = [str(f) for f in flags]
    env = _env(fp)
    level, capped_by = onednn.effective_isa(flags, env)
    default = onednn.default_on(flags, os_.get("system"), os_.get("arch"))
    forced = onednn.switched(env)
    has = [f for f in onednn.ONEDNN_DEFAULT_FLAGS if f in flags]
    if forced is not None:
        state = f"oneDNN {'on' if forced else 'off'}: {onednn.SWITCH}={env[onednn.SWITCH]}"
    elif default is None:
        state = "oneDNN default not known here (TensorFlow's rule is for Linux x86)"
    elif default:
        state = f"oneDNN on by default on this CPU (it has {', '.join(has)})"
    else:
        state = "oneDNN off by default on this CPU (no AVX512_VNNI, AVX512_BF16, AVX_VNNI, AMX)"
    on = forced if forced is not None else default
    if on is False:
        isa = "Eigen kernels (their instruction set is fixed when TensorFlow is built)"
    elif level is None:
        isa = "no x86 oneDNN instruction-set level"
    else:
        isa = f"oneDNN ISA {level}" + (f" (capped by {capped_by})" if capped_by else
                                       " (the highest this CPU has)")
    return Fact(label, f"{isa}; {state}",
                "CPU flags against oneDNN's ISA levels and TensorFlow's default rule")


def _python(fp: Fingerprint) -> Fact:
    py = _section(fp, "python")
    if is_unavailable(py) or not py:
        return Fact("Python", _text(py or None), "this interpreter")
    where = ("conda " if py.get("conda_prefix") else "") + (
        "virtual environment" if py.get("virtual_env") else "")
    value = f"{_text(py.get('version'))} {py.get('implementation') or ''}".strip()
    if where.strip():
        value += f", in a {where.strip()}"
    return Fact("Python", value, "this interpreter")


def _os(fp: Fingerprint) -> Fact:
    os_ = _section(fp, "os")
    if is_unavailable(os_) or not os_:
        return Fact("OS", _text(os_ or None), "the os probe")
    distro = os_.get("distro")
    name = distro.get("pretty_name") if isinstance(distro, Mapping) else None
    parts = [str(name or os_.get("system") or "unknown"), str(os_.get("arch") or "")]
    if os_.get("kernel"):
        parts.append(f"kernel {os_['kernel']}")
    libc = os_.get("libc")
    if isinstance(libc, Mapping) and libc.get("name") and not is_unavailable(libc):
        parts.append(f"{libc['name']} {libc.get('version')}")
    container = os_.get("container")
    if isinstance(container, Mapping) and container.get("detected"):
        parts.append(f"in a {container.get('runtime') or 'container'} container")
    return Fact("OS", ", ".join(p for p in parts if p), "os-release, uname, libc")


def _variables(fp: Fingerprint) -> Fact:
    label = "Numerics variables set"
    env = _section(fp, "env")
    if is_unavailable(env):
        return Fact(label, _text(env), "the environment")
    shown = [f"{name}={_cut(str(value))}" for name, value in list(env.items())[:MAX_VARIABLES]]
    more = len(env) - len(shown)
    value = ", ".join(shown) + (f", and {more} more (listed below)" if more > 0 else "")
    return Fact(label, value or "none",
                "the variables envaudit records (envaudit/settings.py)")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"

