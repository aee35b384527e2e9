#!/usr/bin/env bash
# The checks that need a GPU, as one script for the lent GPU machine (the `device` tool):
#   install, fingerprint (the NVML branch against a real driver), record and check on the GPU in
#   every mode, TF32 forced on and off through NVIDIA_TF32_OVERRIDE, the shipped CPU golden
#   checked on the GPU, and a user's Keras model recorded and checked with TF32 on and off (the
#   precision witness must see TF32). Everything it finds is printed; JSON reports go to $OUT (or /tmp).
# It never changes the GPU's settings. On a machine without a GPU it still runs (the fingerprint
# then says why NVML is unavailable), which is how it is tested before a GPU is lent.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/envaudit-gpu-check}"
mkdir -p "$out"
envaudit=.venv/bin/envaudit

step() { printf '\n== %s\n' "$*"; }

summary() {  # verdict, per-mode verdicts, headline and top cause of a check JSON
  .venv/bin/python - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("verdict:", r["verdict"], "exit:", r["exit_code"])
print("modes:", ", ".join(f"{m['mode']}={m['verdict']}" for m in r["modes"]))
print("headline:", r["headline"])
if r.get("witness"):
    w = r["witness"]
    print("witness: full precision" if w["full_precision"] else "witness: NOT full precision",
          f"worst {w['worst_error_ulps']:.1f} ulps at {w['worst_probe']}, lossy {w['lossy']}")
for c in r["causes"][:3]:
    print(f"cause: [{c['confidence']}] {c['change']}")
PY
}

step "install"
make venv >/dev/null || { echo "make venv failed"; exit 1; }
step "nvidia-smi"
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv \
  || echo "(no nvidia-smi)"
step "envaudit fingerprint: gpu section and TensorFlow build"
"$envaudit" fingerprint --format json -o "$out/fingerprint.json"
.venv/bin/python - "$out/fingerprint.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps(d["gpu"], indent=1)[:6000])
print("tensorflow:", d["tensorflow"].get("version"), d["tensorflow"].get("build_info"))
PY
step "record on this machine (every mode)"
"$envaudit" record --golden "$out/golden" --force
step "check against it, same environment"
"$envaudit" check --golden "$out/golden" --no-confirm --format json -o "$out/same.json"
summary "$out/same.json"
for tf32 in 1 0; do
  step "NVIDIA_TF32_OVERRIDE=$tf32 (confirming)"
  NVIDIA_TF32_OVERRIDE=$tf32 "$envaudit" check --golden "$out/golden" --format json \
    -o "$out/tf32-$tf32.json"
  summary "$out/tf32-$tf32.json"
done
step "the shipped CPU golden checked here"
"$envaudit" check --golden golden/reference --no-confirm --format json -o "$out/cpu-golden.json"
summary "$out/cpu-golden.json"
step "a user's Keras model (tools/example_models.py), recorded with TF32 off"
.venv/bin/python tools/example_models.py "$out/models" >/dev/null
NVIDIA_TF32_OVERRIDE=0 "$envaudit" record --model "$out/models/classifier.keras" \
  --inputs "$out/models/images" --golden "$out/golden-model" --force
for tf32 in 0 1; do
  step "the user model checked with NVIDIA_TF32_OVERRIDE=$tf32"
  NVIDIA_TF32_OVERRIDE=$tf32 "$envaudit" check --golden "$out/golden-model" --format json \
    -o "$out/model-tf32-$tf32.json"
  summary "$out/model-tf32-$tf32.json"
done
echo
echo "reports in $out"
