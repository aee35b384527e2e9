"""The re-run allowlist: which golden values a confirmation re-run may put back.

A golden bundle's fingerprint is data from someone else: its checksums prove that nobody changed
it, not who wrote it. A re-run's child process therefore gets this process's own environment with
at most the variables the settings table allows changed, each to a value its rule accepts (or
removed). Anything else the golden fingerprint records -- ``LD_PRELOAD``, ``LD_LIBRARY_PATH``,
``PYTHONPATH``, ``PYTHONWARNINGS``, ``BROWSER``, ``CUDA_VISIBLE_DEVICES`` -- chooses code,
libraries, files or devices rather than arithmetic, so it is reported as "not restored" and never
applied.

Constraints for the next editor:

- Allowlists only. A value must match its setting's pattern in full (no paths, no shell
  metacharacters, no blanks but where the setting is a list), and every number in it must be
  within its bound: thread and device counts at most ``thread_limit()`` (a huge count costs memory
  and time per child and changes nothing a smaller one cannot show), ``PYTHONHASHSEED`` within what
  Python accepts at start-up (a larger seed makes the child fail before it runs).
- An empty or blank value is refused. For ``XLA_FLAGS`` and ``TF_XLA_FLAGS`` this is a guard, not
  tidiness: XLA reads a value whose first non-blank character is not ``-`` as the NAME OF A FILE of
  flags, relative to the working folder, so ``" "`` would run whatever flags a file called ``" "``
  holds (``--xla_dump_to=`` and worse).
- Inside ``XLA_FLAGS``/``TF_XLA_FLAGS`` every token must be a flag listed in ``XLA_FLAGS_ALLOWED``
  or ``TF_XLA_FLAGS_ALLOWED`` with an argument its rule accepts. A flag is listed only when it
  changes arithmetic or code generation and reads, writes or loads nothing
  (``--xla_gpu_load_autotune_results_from=`` is not listed though no word in it says "file").
  Tokens are split on the blanks XLA splits on (space, tab, CR, LF) and nothing else.

The variables and their value rules are the records of the settings table
(``envaudit/settings.py``); the flags inside ``XLA_FLAGS`` and ``TF_XLA_FLAGS`` are the records
listed here. Add a flag -> add its record here. Standard library and the settings table only.
"""

from __future__ import annotations

import re

from envaudit.settings import THREAD_BOUND, Bound, Setting, named

INT32_MAX = 2_147_483_647  # TensorFlow reads its cluster sizes as int32
_INT32 = Bound(lambda: INT32_MAX, "the largest size TensorFlow reads")

# A flag's argument. A switch (a boolean flag) may also be given alone, "--flag"; XLA's parser
# takes true/false in any case, and 1/0.
_SWITCH = r"(?i:true|false)|[01]"
_OPS = r"[A-Za-z0-9_]{1,60}(,[A-Za-z0-9_]{1,60}){0,99}"


def _switches(why: str, *names: str) -> tuple[Setting, ...]:
    return tuple(Setting(name, _SWITCH, why) for name in names)


XLA_FLAGS_ALLOWED: tuple[Setting, ...] = (
    *_switches("reassociation and approximations in XLA:CPU math", "--xla_cpu_enable_fast_math",
               "--xla_enable_fast_math", "--xla_cpu_fast_math_honor_infs",
               "--xla_cpu_fast_math_honor_nans", "--xla_cpu_fast_math_honor_division",
               "--xla_cpu_fast_math_honor_functions"),
    *_switches("NaN handling of min and max", "--xla_cpu_enable_fast_min_max",
               "--xla_gpu_enable_fast_min_max"),
    *_switches("exact or platform math in XLA:CPU", "--xla_cpu_strict_dot_conv_math",
               "--xla_cpu_enable_platform_dependent_math", "--xla_allow_excess_precision"),
    *_switches("which XLA:CPU code generator or kernel library runs",
               "--xla_cpu_multi_thread_eigen", "--xla_cpu_use_thunk_runtime",
               "--xla_cpu_use_fusion_emitters", "--xla_cpu_use_onednn", "--xla_cpu_use_xnnpack",
               "--xla_cpu_use_acl", "--xla_llvm_disable_expensive_passes"),
    *_switches("deterministic XLA:GPU kernels", "--xla_gpu_deterministic_ops",
               "--xla_gpu_exclude_nondeterministic_ops",
               "--xla_gpu_enable_scatter_determinism_expander"),
    *_switches("which XLA:GPU kernels or libraries compute", "--xla_gpu_enable_cublaslt",
               "--xla_gpu_enable_triton_gemm", "--xla_gpu_cublas_fallback",
               "--xla_gpu_enable_split_k_autotuning", "--xla_gpu_enable_reduction_epilogue_fusion",
               "--xla_gpu_use_runtime_fusion", "--xla_gpu_strict_conv_algorithm_picker",
               "--xla_gpu_enable_xla_runtime_executable", "--xla_gpu_enable_cudnn_fmha",
               "--xla_gpu_enable_cudnn_layer_norm", "--xla_gpu_enable_bf16_6way_gemm",
               "--xla_gpu_enable_bf16_3way_gemm"),
    Setting("--xla_backend_optimization_level", r"[0-3]", "LLVM optimization level"),
    Setting("--xla_gpu_autotune_level", r"[0-5]", "XLA:GPU autotuning: which kernels are chosen"),
    Setting("--xla_gpu_cudnn_gemm_fusion_level", r"[0-3]", "cuDNN fusions for matrix products"),
    Setting("--xla_cpu_prefer_vector_width", r"128|256|512", "XLA:CPU vector width"),
    Setting("--xla_cpu_max_isa", r"(?i:SSE4_2|AVX|AVX2|AVX512|AVX512_VNNI|AVX512_BF16|AMX"
            r"|AMX_FP16|NEON|SVE|SVE2)", "the instruction set XLA:CPU may use"),
    Setting("--xla_force_host_platform_device_count", r"[1-9][0-9]{0,3}",
            "CPU devices: how work is split", THREAD_BOUND),
)
TF_XLA_FLAGS_ALLOWED: tuple[Setting, ...] = (
    Setting("--tf_xla_auto_jit", r"-1|0|1|2|(?i:fusible)", "which graphs XLA compiles"),
    *_switches("which ops XLA compiles", "--tf_xla_cpu_global_jit", "--tf_xla_enable_xla_devices",
               "--tf_xla_compile_on_demand", "--tf_xla_disable_constant_folding"),
    Setting("--tf_xla_min_cluster_size", r"[1-9][0-9]{0,9}", "which ops XLA compiles", _INT32),
    Setting("--tf_xla_max_cluster_size", r"[1-9][0-9]{0,9}", "which ops XLA compiles", _INT32),
    Setting("--tf_xla_ops_to_cluster", _OPS, "which ops XLA compiles"),
    Setting("--tf_xla_cluster_exclude_ops", _OPS, "which ops XLA does not compile"),
)
_FLAGS = {"XLA_FLAGS": ("--xla_", {s.name: s for s in XLA_FLAGS_ALLOWED}),
          "TF_XLA_FLAGS": ("--tf_xla_", {s.name: s for s in TF_XLA_FLAGS_ALLOWED})}
# Only to word a refusal: an unlisted flag whose name says it touches files or code.
_FILE_WORDS = re.compile(r"dump|dir|path|file|_to$|_from$|cache|plugin|profile|log|so_name"
                         r"|library|load|save")
_TOKEN = re.compile(r"(--[a-z0-9_]{1,100})(?:=([A-Za-z0-9_.,:+-]{0,200}))?")
_XLA_BLANKS = re.compile(r"[ \t\r\n]+")  # what XLA splits a flag string on, and nothing else


def refusal(name: str, value: str | None) -> str | None:
    """Why ``name`` may not be set to ``value`` (None: removed) in a re-run, or None if it may."""
    setting = named(name)
    if setting is None or not setting.restorable:
        return (f"not restored: {name} is not a numerics setting envaudit puts back (it may"
                " choose code, libraries, files or devices)")
    if value is None:
        return None
    if not isinstance(value, str):
        return f"not restored: the golden value of {name} is not text"
    if name in _FLAGS:
        return _flags_refusal(name, value)
    if not re.fullmatch(setting.value or "", value):
        return f"not restored: {_shown(value)} is not a valid value of {name}"
    if not value.strip():
        return f"not restored: the golden value of {name} is empty or blank"
    return _bound_refusal(setting, value, name)


def _flags_refusal(name: str, value: str) -> str | None:
    prefix, allowed = _FLAGS[name]
    if not value.strip(" \t\r\n"):
        return (f"not restored: the golden value of {name} is empty or blank (XLA would read"
                " flags from a file of that name)")
    for token in _XLA_BLANKS.split(value.strip(" \t\r\n")):
        shape = _TOKEN.fullmatch(token)
        if shape is None or not token.startswith(prefix):
            return f"not restored: {_shown(token)} in {name} is not a plain numerics flag"
        flag, argument = shape.group(1), shape.group(2)
        rule = allowed.get(flag)
        if rule is None:
            if _FILE_WORDS.search(flag):
                return f"not restored: {flag} in {name} names files or code, not arithmetic"
            return (f"not restored: {flag} in {name} is not a flag envaudit knows to change"
                    " arithmetic only")
        if argument is None and rule.value == _SWITCH:
            continue
        if argument is None:
            return f"not restored: {flag} in {name} has no value"
        if not re.fullmatch(rule.value, argument):
            return f"not restored: {_shown(argument)} is not a valid value of {flag} in {name}"
        why = _bound_refusal(rule, argument, f"{flag} in {name}")
        if why:
            return why
    return None


def _bound_refusal(setting: Setting, value: str, where: str) -> str | None:
    if setting.bound is None:
        return None
    most = setting.bound.most()
    if any(int(number) > most for number in re.findall(r"[0-9]+", value)):
        return (f"not restored: {_shown(value)} is above {most} for {where}"
                f" ({setting.bound.why})")
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")
