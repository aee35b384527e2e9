"""The table of numerics settings: one record per environment variable (or family of variables)
that can change numerics, with every fact about it -- whether the fingerprint records it, whether a
confirmation re-run may put it back and to which values, what it changes, and what it reaches.

Four readers, one table: the fingerprint probe (``fingerprint/env_vars.py`` records exactly the
names and families listed here), the re-run allowlist (``attribute/allowlist.py``, used by
``attribute/confirm.py``), the ranking (``attribute/rank.py``: probe families, and the modes a
setting reaches, derived from the code it reaches and the code each mode runs, ``modes.py``) and
the device reach (``attribute/reach.py``).

A record with a ``value`` is put back by re-runs: read the constraints of
``attribute/allowlist.py`` first (allowlists only, the tightest pattern that fits, a bound on
every number).

The same records say what each variable can reach, for the ranking (``rank.py``) and the device
reach (``reach.py``): the op-probe families it can move, the kinds of device, the code it reaches
(TensorFlow's kernels, the traced graph, XLA's generated code: the execution modes it reaches
follow from the code each mode runs, so a new mode needs no edit here), and which computation
reads it at all -- TensorFlow (every array a check compares) or only NumPy's
float64 references (the twin and the probes' references: OpenBLAS, ``GOTO_*``, NumPy's SIMD
dispatch). A float64 reference is compared with a float32 run at float32's noise floor, ten
million times above float64's, so a setting that only reaches it can never explain an array that
moved. Records whose ``value`` is None are never put back: family prefixes (ending in ``_``) and
variables that choose code, libraries or devices, listed for the fingerprint and what they reach.

Never list the bare ``TF_`` prefix: Terraform's variables share it (``TF_VAR_*`` holds the inputs
of a plan, passwords included; ``TF_CLI_ARGS*`` command lines; ``TF_TOKEN_*`` credentials), and
none of them is TensorFlow's. Nor ``NVIDIA_``, which NVIDIA's services use for keys and endpoints.
A family is listed only where no other tool writes variables with that prefix; a new TensorFlow
variable is added by name.

Add a setting -> add its record here, with what it changes and reaches; the fingerprint
records it from then on. Standard library only, no envaudit import: ``envaudit fingerprint``
reads this table without TensorFlow, and it is plain data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

# Thread and device counts: four per core this process may use, and never less than 64 (a golden
# machine may have had more cores than this one; 64 threads cost little anywhere, where the 9999
# the value patterns allow cost several times the memory and time of a child).
THREADS_PER_CORE = 4
THREAD_FLOOR = 64
HASH_SEED_MAX = 4_294_967_295  # Python refuses a larger PYTHONHASHSEED before it runs anything


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def thread_limit() -> int:
    """The largest thread or device count a re-run may set on this machine."""
    return max(THREAD_FLOOR, THREADS_PER_CORE * usable_cores())


@dataclass(frozen=True)
class Bound:
    """The largest number each integer in a value may be, and why."""

    most: Callable[[], int]
    why: str


THREAD_BOUND = Bound(thread_limit, f"{THREADS_PER_CORE} per usable core, at least {THREAD_FLOOR}")
_HASH_SEED = Bound(lambda: HASH_SEED_MAX, "the largest seed Python accepts")

_BOOL = r"(?i:0|1|true|false|yes|no|on|off)"
_COUNT = r"[1-9][0-9]{0,3}"  # a thread count: 1..9999 as text, then bounded by THREAD_BOUND
_ISA = (r"(?i:ALL|DEFAULT|AVX10_1_512_AMX_FP16|AVX10_1_512_AMX|AVX10_1_512|AVX512_CORE_AMX_FP16"
        r"|AVX512_CORE_AMX|AVX512_CORE_FP16|AVX512_CORE_BF16|AVX512_CORE_VNNI|AVX512_CORE"
        r"|AVX2_VNNI_2|AVX2_VNNI|AVX2|AVX|SSE41)")
_FPMATH = r"(?i:STRICT|BF16|F16|TF32|ANY)"
_WORD = r"[A-Za-z0-9_]{1,40}"


# What a setting can reach. The op-probe families of the canary (``workload/probes.py``), the kinds
# of device, the code that computes (each execution mode says which code it runs, ``modes.py``)
# and the computations.
KERNELS = frozenset({"conv", "matmul", "reduction", "softmax"})
THREADED = frozenset({"reduction", "matmul", "conv"})  # a thread count changes summation order
PRECISION = KERNELS | {"precision"}  # may compute fp32 ops in reduced precision
CODE = KERNELS | {"transcendental"}
CPU = frozenset({"cpu"})
GPU = frozenset({"gpu"})
CPU_AND_GPU = CPU | GPU
# The code that computes a mode's arrays: TensorFlow's own op kernels (oneDNN, Eigen, cuDNN,
# cuBLAS), the traced graph (what tf.function builds and rewrites, auto-clustering included) and
# the code XLA generates.
Code = Literal["tensorflow_kernels", "traced_graph", "xla_code", "tflite_kernels", "onnx_runtime"]
# XLA compiles its own CPU code: TensorFlow's kernel switches (oneDNN, its fp-math mode) do not
# reach it -- measured: TF_ENABLE_ONEDNN_OPTS=0 moves eager and graph, xla stays bit-identical.
TF_KERNELS: frozenset[Code] = frozenset({"tensorflow_kernels"})
TRACED_GRAPH: frozenset[Code] = frozenset({"traced_graph"})
XLA_CODE: frozenset[Code] = frozenset({"xla_code"})
# A converted deployment model runs in its own runtime, on kernels TensorFlow's switches do not
# reach: LiteRT's (the XNNPACK delegate or its built-in kernels) and ONNX Runtime's. The
# conversion itself is TensorFlow's code, but it folds no arithmetic of these models a TensorFlow
# kernel setting moves -- measured: TF_ENABLE_ONEDNN_OPTS=0 writes the same flatbuffer, byte for
# byte, and a converter change shows as a flatbuffer of another hash.
TFLITE_CODE: frozenset[Code] = frozenset({"tflite_kernels"})
ONNX_CODE: frozenset[Code] = frozenset({"onnx_runtime"})
Computation = Literal["tensorflow", "float64"]
TENSORFLOW: frozenset[Computation] = frozenset({"tensorflow"})
FLOAT64: frozenset[Computation] = frozenset({"float64"})  # only NumPy's float64 references
BOTH_COMPUTATIONS: frozenset[Computation] = TENSORFLOW | FLOAT64


@dataclass(frozen=True)
class Setting:
    """A variable (or, in the flag tables, a flag), the values it may take and what it reaches."""

    name: str  # a family of variables when it ends in "_" (then ``value`` is None)
    value: str | None  # a regular expression the whole value (a flag's argument) must match;
    #                   None: never put back
    why: str  # what it changes: evidence of a cause ("<change> — <why>")
    bound: Bound | None = None  # every number in the value at most this
    families: frozenset[str] = KERNELS  # the op-probe families it is known to move
    devices: frozenset[str] = CPU_AND_GPU  # the kinds of device whose arithmetic it reaches
    codes: frozenset[Code] | None = None  # the code it reaches; None: all code, whatever runs
    #                                       it (a thread count, a determinism switch)
    computes: frozenset[Computation] = TENSORFLOW  # which computation reads it
    selects_devices: bool = False  # only chooses which devices the process sees: recorded, but
    #                                never numerics by itself (``fingerprint/fields.py``)

    def reaches_code(self, codes: Iterable[str]) -> bool:
        """Whether it reaches any of ``codes`` (the code one execution mode runs)."""
        return self.codes is None or not self.codes.isdisjoint(codes)

    @property
    def restorable(self) -> bool:
        """Whether a re-run may put it back (with a value its rule accepts)."""
        return self.value is not None and not self.name.endswith("_")


_ONEDNN = "the instruction set oneDNN kernels may use"
_FPMATH_WHY = "lets oneDNN compute fp32 ops in reduced precision (bf16/tf32)"
_THREADS_WHY = "changes the thread count, so the summation order"

_GPU_CONV = "selects GPU convolution algorithms"
_GPU_MATMUL = "selects GPU matrix-product algorithms"
_GPU_MEMORY = "changes GPU memory or stream handling, so which kernels and algorithms fit"
_FP16_COMPUTE = "chooses fp16 or fp32 accumulation in GPU kernels"
_JIT = "compiles traced functions with XLA by default"
_TF32_OVERRIDE_WHY = ("0 forces TF32 off in cuBLAS and cuDNN (1 forces nothing on: TensorFlow's own"
                      " switch decides); TensorFlow's cuBLAS path was reported not to honour it"
                      " (tensorflow#53742): envaudit's --tf32 off is the switch it puts back")
_TF32_UNREAD_WHY = ("is not read by current TensorFlow (TF32 is its API switch since 2.4,"
                    " envaudit's --tf32): setting it changes nothing")

# TensorFlow's variables that a re-run never puts back (read from TensorFlow's sources and its
# shared libraries): recorded by name, with what they change and reach.
_TENSORFLOW_VARIABLES: tuple[Setting, ...] = (
    # CPU kernels: oneDNN, ZenDNN or Eigen
    Setting("TF_ENABLE_ONEDNN_SPMM", None, "switches sparse matrix products to oneDNN",
            families=frozenset({"matmul"}), devices=CPU, codes=TF_KERNELS),
    Setting("TF_ENABLE_ZENDNN_OPTS", None, "switches TensorFlow to AMD's ZenDNN kernels",
            devices=CPU, codes=TF_KERNELS),
    Setting("TF_DISABLE_MKL", None, "switches TensorFlow's oneDNN (MKL) kernels off",
            devices=CPU, codes=TF_KERNELS),
    # determinism
    Setting("TF_DETERMINISTIC_ORDER", None, "forces a deterministic order of work",
            families=THREADED),
    Setting("TF_DETERMINISTIC_ALLOCATOR", None, "makes GPU memory allocation deterministic",
            devices=GPU),
    Setting("TF_DISABLE_SCATTER_OP_DETERMINISM", None, "lets scatter kernels run"
            " nondeterministically", families=THREADED),
    Setting("TF_USE_DETERMINISTIC_SEGMENT_REDUCTIONS", None, "forces deterministic segment"
            " reductions", families=frozenset({"reduction"}), devices=GPU),
    Setting("TF_DISABLE_SEGMENT_REDUCTION_OP_DETERMINISM_EXCEPTIONS", None, "lets segment"
            " reductions run nondeterministically", families=frozenset({"reduction"}),
            devices=GPU),
    # GPU kernel selection and autotuning
    Setting("TF_USE_CUDNN", None, "switches cuDNN on or off for GPU ops", devices=GPU),
    Setting("TF_USE_CUBLASLT", None, "switches GPU matrix products to cuBLASLt",
            families=frozenset({"matmul"}), devices=GPU),
    Setting("TF_USE_DEEP_CONV2D", None, "selects the DeepConv2D convolution algorithm",
            families=frozenset({"conv"})),
    Setting("TF_USE_DEFAULT_CONV_ALGO", None, _GPU_CONV, families=frozenset({"conv"}),
            devices=GPU),
    Setting("TF_USE_ROCM_NHWC", None, "selects the layout of ROCm convolutions",
            families=frozenset({"conv"}), devices=GPU),
    Setting("TF_AVGPOOL_USE_CUDNN", None, "selects cuDNN's average pooling", devices=GPU),
    Setting("TF_ENABLE_WINOGRAD_NONFUSED", None, _GPU_CONV, families=frozenset({"conv"}),
            devices=GPU),
    Setting("TF_ENABLE_MAXPOOL_NANPROP", None, "changes how GPU max pooling treats NaN",
            devices=GPU),
    Setting("TF_ENABLE_FFT_TILING_FORWARD", None, _GPU_CONV, families=frozenset({"conv"}),
            devices=GPU),
    Setting("TF_AUTOTUNE_THRESHOLD", None, _GPU_CONV, families=frozenset({"conv"}),
            devices=GPU),
    Setting("TF_AUTOTUNE_MIN_WARMUP_ITERATIONS", None, _GPU_CONV, families=frozenset({"conv"}),
            devices=GPU),
    Setting("TF_MATMUL_AUTOTUNE_ENABLE", None, _GPU_MATMUL, families=frozenset({"matmul"}),
            devices=GPU),
    Setting("TF_MATMUL_AUTOTUNE_MAX_ALGORITHMS", None, _GPU_MATMUL,
            families=frozenset({"matmul"}), devices=GPU),
    Setting("TF_CUBLAS_WORKSPACE_LIMIT_IN_MB", None, _GPU_MATMUL, families=frozenset({"matmul"}),
            devices=GPU),
    Setting("TF_CUFFT_WORKSPACE_LIMIT_IN_MB", None, "selects cuFFT algorithms", devices=GPU),
    Setting("TF_DEBUG_CUDNN_RNN", None, "selects cuDNN RNN algorithms", devices=GPU),
    Setting("TF_DEBUG_CUDNN_RNN_ALGO", None, "selects cuDNN RNN algorithms", devices=GPU),
    Setting("TF_DEBUG_CUDNN_RNN_USE_TENSOR_OPS", None, "lets cuDNN RNNs use tensor cores",
            families=PRECISION, devices=GPU),
    # reduced precision
    Setting("TF_CONV2D_USE_FP16_ACCUMULATE", None, "accumulates fp16 convolutions in fp16",
            families=PRECISION, devices=GPU),
    Setting("TF_FP16_CONV_USE_FP32_COMPUTE", None, _FP16_COMPUTE, families=PRECISION,
            devices=GPU),
    Setting("TF_FP16_MATMUL_USE_FP32_COMPUTE", None, _FP16_COMPUTE, families=PRECISION,
            devices=GPU),
    Setting("TF_FP16_RNN_USE_FP32_COMPUTE", None, _FP16_COMPUTE, families=PRECISION,
            devices=GPU),
    # threads: summation order
    Setting("TF_OVERRIDE_GLOBAL_THREADPOOL", None, _THREADS_WHY, families=THREADED),
    Setting("TF_USE_EIGEN_PARALLEL_FOR_IN_WORK_SHARDER", None, "changes how Eigen splits work"
            " between threads, so the summation order", families=THREADED),
    # XLA and compilation: which traced functions XLA compiles
    Setting("TF_FUNCTION_JIT_COMPILE_DEFAULT", None, _JIT, families=CODE, codes=TRACED_GRAPH),
    Setting("TF_JIT_COMPILE_REWRITE", None, _JIT, families=CODE, codes=TRACED_GRAPH),
    Setting("TF_DISABLE_JIT_KERNELS", None, "keeps XLA's kernels out of traced functions",
            families=CODE, codes=TRACED_GRAPH),
    # devices and memory: which device runs an op, and which algorithms fit
    Setting("TF_GPU_ALLOCATOR", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_FORCE_GPU_ALLOW_GROWTH", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_GPU_THREAD_MODE", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_GPU_THREAD_COUNT", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_GPU_HOST_MEM_LIMIT_IN_MB", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_FORCE_UNIFIED_MEMORY", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_PER_DEVICE_MEMORY_LIMIT_MB", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE", None, _GPU_MEMORY, devices=GPU),
    Setting("TF_ENABLED_DEVICE_TYPES", None, "changes which device (GPU or CPU) runs the ops",
            families=CODE, devices=GPU),
    Setting("TF_MIN_GPU_MULTIPROCESSOR_COUNT", None, "changes which GPUs TensorFlow uses",
            families=CODE, devices=GPU),
    # the cluster of a distributed run (its hosts are hidden by the redaction), and Keras 2 or 3
    Setting("TF_CONFIG", None, "changes the cluster a distributed run spans"),
    Setting("TF_USE_LEGACY_KERAS", None, "chooses Keras 2 or Keras 3, whose layers run other"
            " ops", families=CODE),
)

SETTINGS: tuple[Setting, ...] = (
    Setting("TF_ENABLE_ONEDNN_OPTS", _BOOL, "switches TensorFlow between oneDNN and Eigen kernels"
            " for convolutions, matmuls, softmax", devices=CPU, codes=TF_KERNELS),
    Setting("TF_DETERMINISTIC_OPS", _BOOL, "forces deterministic kernels", families=THREADED),
    Setting("TF_CUDNN_DETERMINISTIC", _BOOL, "forces deterministic cuDNN algorithms",
            families=frozenset({"conv"}), devices=GPU),
    Setting("TF_CUDNN_USE_AUTOTUNE", _BOOL, "selects cuDNN convolution algorithms",
            families=frozenset({"conv"}), devices=GPU),
    Setting("TF_CUDNN_USE_FRONTEND", _BOOL, "selects cuDNN convolution algorithms (frontend API)",
            families=frozenset({"conv"}), devices=GPU),
    Setting("TF_CUDNN_USE_RUNTIME_FUSION", _BOOL, "lets cuDNN fuse kernels at run time",
            families=frozenset({"conv"}), devices=GPU),
    Setting("TF_USE_CUDNN_BATCHNORM_SPATIAL_PERSISTENT", _BOOL, "selects cuDNN's batch-norm"
            " kernel", devices=GPU),
    # TF32 is TensorFlow's own switch (tf.config.experimental.enable_tensor_float_32_execution,
    # envaudit's --tf32, ``envaudit/tf32.py``), not a variable. NVIDIA's libraries read this one;
    # only 0 overrides (TF32 off in cuBLAS and cuDNN), 1 forces nothing on.
    Setting("NVIDIA_TF32_OVERRIDE", r"[01]", _TF32_OVERRIDE_WHY, families=PRECISION,
            devices=GPU),
    Setting("TF_ENABLE_AUTO_MIXED_PRECISION", _BOOL, "rewrites graphs to mixed precision",
            families=PRECISION),
    Setting("TF_ENABLE_AUTO_MIXED_PRECISION_GRAPH_REWRITE", _BOOL, "rewrites graphs to mixed"
            " precision", families=PRECISION),
    Setting("TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_LEVEL", _WORD, "chooses the op lists of the"
            " mixed precision rewrite", families=PRECISION),
    Setting("TF_SET_ONEDNN_FPMATH_MODE", _FPMATH, "lets oneDNN compute fp32 ops in reduced"
            " precision", families=PRECISION, devices=CPU, codes=TF_KERNELS),
    Setting("ONEDNN_DEFAULT_FPMATH_MODE", _FPMATH, _FPMATH_WHY, families=PRECISION, devices=CPU,
            codes=TF_KERNELS),
    Setting("DNNL_DEFAULT_FPMATH_MODE", _FPMATH, _FPMATH_WHY, families=PRECISION, devices=CPU,
            codes=TF_KERNELS),
    Setting("ONEDNN_MAX_CPU_ISA", _ISA, f"caps {_ONEDNN}", devices=CPU, codes=TF_KERNELS),
    Setting("DNNL_MAX_CPU_ISA", _ISA, f"caps {_ONEDNN}", devices=CPU, codes=TF_KERNELS),
    Setting("ONEDNN_CPU_ISA_HINTS", r"(?i:NO_HINTS|PREFER_YMM)", "sets oneDNN's vector width",
            devices=CPU, codes=TF_KERNELS),
    Setting("DNNL_CPU_ISA_HINTS", r"(?i:NO_HINTS|PREFER_YMM)", "sets oneDNN's vector width",
            devices=CPU, codes=TF_KERNELS),
    Setting("TF_NUM_INTRAOP_THREADS", _COUNT, _THREADS_WHY, THREAD_BOUND, families=THREADED),
    Setting("TF_NUM_INTEROP_THREADS", _COUNT, _THREADS_WHY, THREAD_BOUND, families=THREADED),
    # OpenMP: oneDNN's threads where TensorFlow was built with OpenMP, and OpenBLAS's (NumPy).
    Setting("OMP_NUM_THREADS", rf"{_COUNT}(,{_COUNT}){{0,3}}", _THREADS_WHY, THREAD_BOUND,
            families=THREADED, devices=CPU, computes=BOTH_COMPUTATIONS),
    Setting("MKL_NUM_THREADS", _COUNT, _THREADS_WHY, THREAD_BOUND, families=THREADED, devices=CPU),
    Setting("OPENBLAS_NUM_THREADS", _COUNT, "changes OpenBLAS's thread count (NumPy's float64"
            " references)", THREAD_BOUND, families=THREADED, devices=CPU, computes=FLOAT64),
    Setting("OMP_DYNAMIC", _BOOL, "lets OpenMP adjust its thread count", devices=CPU,
            computes=BOTH_COMPUTATIONS),
    Setting("OMP_PROC_BIND", r"(?i:true|false|close|spread|master|primary)(,[a-z]{1,8}){0,3}",
            "places OpenMP threads", devices=CPU, computes=BOTH_COMPUTATIONS),
    Setting("KMP_BLOCKTIME", r"[0-9]{1,6}|(?i:infinite)", _THREADS_WHY, families=THREADED,
            devices=CPU),
    Setting("KMP_AFFINITY", r"[A-Za-z0-9,=:._-]{1,100}", _THREADS_WHY, families=THREADED,
            devices=CPU),
    Setting("OPENBLAS_CORETYPE", _WORD, "picks OpenBLAS's kernel family (NumPy's float64"
            " references)", devices=CPU, computes=FLOAT64),
    Setting("OPENBLAS_L2_SIZE", r"[0-9]{1,10}", "sets OpenBLAS's blocking (NumPy's float64"
            " references)", devices=CPU, computes=FLOAT64),
    Setting("NPY_DISABLE_CPU_FEATURES", r"[A-Za-z0-9_, ]{0,200}", "turns off NumPy's SIMD"
            " dispatch (NumPy's float64 references)", devices=CPU, computes=FLOAT64),
    Setting("CUBLAS_WORKSPACE_CONFIG", r"(:[0-9]{1,8}:[0-9]{1,4}){1,4}", "makes cuBLAS"
            " deterministic", devices=GPU),
    # LiteRT's interpreter, as envaudit runs the tflite modes (``tflite_settings.py``): which
    # kernels compute and how many threads split the work.
    Setting("ENVAUDIT_TFLITE_KERNELS", r"(?i:xnnpack|builtin|reference)", "chooses LiteRT's"
            " kernels: the XNNPACK delegate, the built-in optimized kernels or the reference"
            " kernels", devices=CPU, codes=TFLITE_CODE),
    Setting("ENVAUDIT_TFLITE_THREADS", _COUNT, "changes the LiteRT interpreter's thread count, so"
            " how its kernels split the work", THREAD_BOUND, families=THREADED, devices=CPU,
            codes=TFLITE_CODE),
    Setting("PYTHONHASHSEED", r"random|[0-9]{1,10}", "changes hash order (set iteration)",
            _HASH_SEED),
    # The two flag strings: checked flag by flag (``attribute/allowlist.py``).
    # TF_XLA_FLAGS turn auto-clustering on in traced graphs, the jit-compiled function included.
    Setting("XLA_FLAGS", "", "changes how XLA compiles and fuses ops", families=CODE,
            codes=XLA_CODE),
    Setting("TF_XLA_FLAGS", "", "turns XLA auto-clustering on or off", families=CODE,
            codes=TRACED_GRAPH),
    # Never put back, listed for what they reach: families (by prefix, the longest that matches
    # wins over a shorter one; a name listed above wins over every family) and variables that
    # choose code, libraries or devices.
    Setting("TF_CUDNN_", None, "selects cuDNN convolution algorithms",
            families=frozenset({"conv"}), devices=GPU),
    Setting("TF_ONEDNN_", None, "changes TensorFlow's oneDNN kernels", devices=CPU,
            codes=TF_KERNELS),
    Setting("TF_MKL_", None, "changes TensorFlow's oneDNN (MKL) kernels", devices=CPU,
            codes=TF_KERNELS),
    Setting("ONEDNN_", None, "changes oneDNN's kernels", devices=CPU, codes=TF_KERNELS),
    Setting("DNNL_", None, "changes oneDNN's kernels", devices=CPU, codes=TF_KERNELS),
    Setting("MKL_", None, "changes MKL's kernels", devices=CPU),
    Setting("KMP_", None, _THREADS_WHY, families=THREADED, devices=CPU),
    Setting("OMP_", None, "changes OpenMP's threads", devices=CPU, computes=BOTH_COMPUTATIONS),
    Setting("OPENBLAS_", None, "changes OpenBLAS (NumPy's float64 references)", devices=CPU,
            computes=FLOAT64),
    Setting("GOTO_", None, "changes OpenBLAS, which reads GotoBLAS's variables (NumPy's float64"
            " references)", devices=CPU, computes=FLOAT64),
    Setting("NPY_", None, "changes NumPy (its float64 references)", devices=CPU,
            computes=FLOAT64),
    Setting("CUDA_", None, "changes the CUDA runtime", devices=GPU),
    Setting("CUDNN_", None, "changes cuDNN", families=frozenset({"conv"}), devices=GPU),
    Setting("CUBLAS_", None, "changes cuBLAS", devices=GPU),
    Setting("CUBLASLT_", None, "changes cuBLASLt", devices=GPU),
    Setting("NCCL_", None, "changes NCCL's collectives", devices=GPU),
    # Device selection: which GPUs (or MIG instances) the process sees and in which order. They
    # are recorded but never count toward fingerprint_id nor make a change a finding by
    # themselves (``selects_devices``): two GPUs of one host, or Kubernetes pods given one GPU
    # each, run the same numbers with different values here, and fleet runs set
    # CUDA_VISIBLE_DEVICES per GPU. What they select is recorded where it can change numerics
    # (the GPU section's ``cuda_devices``: model, compute capability, a MIG slice's SMs), and
    # the devices that computed each array stay the evidence (``TensorComparison.device``).
    Setting("CUDA_VISIBLE_DEVICES", None, "changes which device (GPU or CPU) runs the ops",
            families=CODE, devices=GPU, selects_devices=True),
    Setting("CUDA_DEVICE_ORDER", None, "changes the order in which CUDA numbers the GPUs",
            families=CODE, devices=GPU, selects_devices=True),
    Setting("NVIDIA_VISIBLE_DEVICES", None, "changes which GPUs the container sees",
            families=CODE, devices=GPU, selects_devices=True),
    Setting("ROCR_VISIBLE_DEVICES", None, "changes which AMD GPUs the ROCm runtime sees",
            families=CODE, devices=GPU, selects_devices=True),
    Setting("HIP_VISIBLE_DEVICES", None, "changes which AMD GPUs HIP sees",
            families=CODE, devices=GPU, selects_devices=True),
    Setting("GPU_DEVICE_ORDINAL", None, "changes which AMD GPUs ROCm's OpenCL and HIP see",
            families=CODE, devices=GPU, selects_devices=True),
    Setting("LD_PRELOAD", None, "loads other library code into the process",
            families=CODE | {"decode"}, computes=BOTH_COMPUTATIONS),
    Setting("LD_LIBRARY_PATH", None, "can load other CUDA/cuDNN/BLAS libraries",
            families=CODE | {"decode"}, computes=BOTH_COMPUTATIONS),
    *_TENSORFLOW_VARIABLES,
    # Families of TensorFlow's own: the mixed precision rewrite's op lists, and its logging (read
    # by no arithmetic: recorded because it explains a report's logs, ``fingerprint/fields.py``).
    Setting("TF_AUTO_MIXED_PRECISION_", None, "changes the mixed precision rewrite's op lists",
            families=PRECISION),
    Setting("TF_CPP_", None, "changes TensorFlow's logging, not its arithmetic",
            families=frozenset()),
    # Not read by current TensorFlow: TF32 moved to its API switch in TensorFlow 2.4 (the names
    # are in neither its Python sources nor its shared libraries, 2.21 with CUDA 12.5 checked).
    # Recorded, since deployment scripts still set them believing TF32 off; never put back, and
    # known to move nothing.
    *(Setting(name, None, _TF32_UNREAD_WHY, families=frozenset(), devices=GPU)
      for name in ("TF_ENABLE_TF32", "TF_ENABLE_CUBLAS_TENSOR_OP_MATH_FP32",
                   "TF_ENABLE_CUDNN_TENSOR_OP_MATH_FP32",
                   "TF_ENABLE_CUDNN_RNN_TENSOR_OP_MATH_FP32")),
    # Read by PyTorch, not TensorFlow; recorded because a process may load both.
    Setting("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", None, "enables TF32 math in cuBLAS (PyTorch's"
            " switch)", families=PRECISION, devices=GPU),
)

_BY_NAME = {s.name: s for s in SETTINGS if not s.name.endswith("_")}
_FAMILIES = sorted((s for s in SETTINGS if s.name.endswith("_")), key=lambda s: -len(s.name))
# A recorded variable with no record of its own (a TensorFlow variable such as
# TF_USE_DEFAULT_CONV_ALGO): it may reach anything TensorFlow computes.
_UNLISTED = Setting("", None, "a numerics-relevant variable changed")


def named(name: str) -> Setting | None:
    """The record listed under exactly ``name`` (a variable's own, never a family's)."""
    return _BY_NAME.get(name)


def setting(name: str) -> Setting:
    """The record of a variable: its own, else its family's (the longest prefix), else one that
    says it may reach every TensorFlow computation."""
    found = _BY_NAME.get(name) or next((s for s in _FAMILIES if name.startswith(s.name)), None)
    return found or _UNLISTED


# What the fingerprint records (``fingerprint/env_vars.py``): every variable and family listed.
RECORDED_NAMES = frozenset(_BY_NAME)
# The variables that only select devices: recorded, never numerics (``fingerprint/fields.py``).
DEVICE_SELECTION = frozenset(s.name for s in SETTINGS if s.selects_devices)
RECORDED_FAMILIES = tuple(s.name for s in SETTINGS if s.name.endswith("_"))
