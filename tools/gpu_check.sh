#!/usr/bin/env bash
# What can be verified where the GPU is, without TensorFlow there: the lent GPU machine has Python
# with numpy, psutil, py-cpuinfo, rich and nvidia-ml-py, reaches no package registry and gets the
# repository as a copy. So nothing is installed: the machine's own python3 (or $PYTHON) runs
# envaudit from this checkout on PYTHONPATH.
#
#   OUT=folder bash tools/gpu_check.sh      (OUT defaults to a new temporary folder)
#
# Steps, each printing one status line "STEP: ok", "STEP: unavailable: why" or "STEP: failed: why"
# followed by its findings (indented): python, nvidia-smi, fingerprint (the NVML branch against
# the real driver; $OUT/fingerprint.json), report ($OUT/report.md), fleet GPUs (what a fleet node
# runs one check on), nvml recording ($OUT/nvml.json, tools/record_nvml.py: NVML's raw answers
# with fake UUIDs and serials, ready for tests/data/nvml/) and its replay through the tests'
# stand-in pynvml, and training (where TensorFlow is installed: a golden of the canary's training
# steps recorded here, then checked with --repeat 2, which trains again in a fresh process: is
# training bit-reproducible on this GPU, which device computed it, and, where it is not, the
# first step and array that differ, what op determinism said and the kernels suspected). A step
# that needs TensorFlow says "unavailable: TensorFlow is not installed here" and the script
# carries on.
#
# Constraints: read-only on the GPU (NVML queries and nvidia-smi queries only, no setting
# changed); each step has a time limit, the whole script stays under two minutes (four where
# TensorFlow is installed: the training step has two of its own); it writes only
# those few small files under $OUT (no bytecode in the checkout); UUIDs printed here are
# shortened. The exit status is 0 whatever the machine lacks; 1 only when the script cannot run
# at all (no usable python).
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
py="${PYTHON:-python3}"
out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/envaudit-gpu-check.XXXXXX")}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
budget=110  # seconds for the whole script; each command gets at most 15 of what is left
left() { local l=$((budget - (SECONDS - started))); echo $((l < 1 ? 1 : (l > 15 ? 15 : l))); }

say() { echo "$1: ${*:2}"; }  # say STEP STATUS... : the step's one status line

why() {  # why RC OUTPUT: the status of a command that failed
  if [ "$1" = 124 ]; then echo "failed: timed out (at most 15 s a step, ${budget} s in all)"
  elif grep -qiE "no module named '?tensorflow|tensorflow is not installed" <<<"$2"; then
    echo "unavailable: TensorFlow is not installed here"
  else echo "failed: exit $1: $(grep -v '^\s*$' <<<"$2" | tail -n 1)"
  fi
}

shorten() { sed -E 's/\b(GPU|MIG)-([0-9a-fA-F]{8})[0-9a-fA-F-]{20,}/\1-\2.../g'; }

if ! version=$(timeout "$(left)" "$py" -c '
import importlib.util as u, platform
have = [m for m in ("numpy", "psutil", "cpuinfo", "rich", "pynvml", "tensorflow", "torch", "jax")
        if u.find_spec(m)]
print(platform.python_version(), "with", ", ".join(have) or "no packages we look for")' 2>&1)
then
  say python "failed: $py does not run: $version"
  exit 1
fi
say python ok
echo "  $py: Python $version"

if ! command -v nvidia-smi >/dev/null; then
  say nvidia-smi "unavailable: nvidia-smi is not on PATH"
elif smi=$(timeout "$(left)" nvidia-smi --format=csv,noheader \
    --query-gpu=index,name,driver_version,compute_cap,memory.total,mig.mode.current 2>&1); then
  say nvidia-smi ok
  sed 's/^/  /' <<<"$smi"
else
  say nvidia-smi "$(why $? "$smi")"
fi

if fp=$(timeout "$(left)" "$py" -m envaudit fingerprint --format json \
    -o "$out/fingerprint.json" 2>&1); then
  say fingerprint "ok: $out/fingerprint.json"
  timeout "$(left)" "$py" - "$out/fingerprint.json" <<'PY' | shorten
import json, sys
def short(value):  # one finding per line, never a screenful
    text = json.dumps(value)
    return text if len(text) <= 160 else text[:157] + "..."
d = json.load(open(sys.argv[1]))
g, tf = d["gpu"], d["tensorflow"]
print("  fingerprint_id:", d["fingerprint_id"])
if not g.get("available"):
    print("  gpu: unavailable:", g.get("reason"))
else:
    print(f"  gpu: driver {g.get('driver_version')}, CUDA driver {g.get('cuda_driver_version')},"
          f" {g.get('device_count')} device(s)")
    for dev in g.get("devices", []):
        keys = ("name", "uuid", "compute_capability", "memory_total_bytes", "mig_mode")
        print("   ", dev.get("index"), "; ".join(f"{k}={short(dev.get(k))}" for k in keys))
        migs = dev.get("mig_devices", [])
        for mig in migs if isinstance(migs, list) else [migs]:
            keys = [k for k in ("profile", "multiprocessor_count", "memory_total_bytes", "uuid")
                    if k in mig] or list(mig)
            print("      mig:", "; ".join(f"{k}={short(mig[k])}" for k in keys))
    for key in sorted(set(g) - {"available", "devices", "driver_version", "cuda_driver_version"}):
        print(f"  gpu.{key}: {short(g[key])}")
print("  tensorflow:", tf.get("version") if tf.get("available") else f"unavailable: {tf.get('reason')}")
PY
else
  say fingerprint "$(why $? "$fp")"
fi

if rp=$(timeout "$(left)" "$py" -m envaudit report -o "$out/report.md" 2>&1); then
  say report "ok: $out/report.md, $(wc -l <"$out/report.md") lines (redacted)"
  awk '/^### /{on = /GPU/} on && NF' "$out/report.md" | head -n 14 | sed 's/^/  /'
else
  say report "$(why $? "$rp")"
fi

if fleet=$(timeout "$(left)" "$py" -c '
import json
from envaudit.fleet.node import visible_gpus
print(json.dumps(visible_gpus()))' 2>&1); then
  # The listing's shape is the fleet's: {"gpus": [...]} of CUDA_VISIBLE_DEVICES values or records.
  "$py" - "$fleet" <<'PY' | shorten
import json, sys
listing = json.loads(sys.argv[1])
gpus = listing.get("gpus", listing) if isinstance(listing, dict) else listing
if not gpus:
    print("fleet GPUs: unavailable: the fleet lists no GPU on this host")
else:
    print(f"fleet GPUs: ok: {len(gpus)} listed, one check each")
    for gpu in gpus:
        print("  ", json.dumps(gpu))
PY
else
  say "fleet GPUs" "$(why $? "$fleet")"
fi

if rec=$(timeout "$(left)" "$py" tools/record_nvml.py "$out/nvml.json" 2>&1); then
  echo "$rec"
else
  say "nvml recording" "$(why $? "$rec")"
fi

# The recording must replay, through the tests' stand-in pynvml, to the section the fingerprint's
# probe gave while it was recorded (kept in the file as _fingerprint_gpu, identifiers faked alike).
if [ -f "$out/nvml.json" ]; then
  replay=$(timeout "$(left)" "$py" - "$out/nvml.json" <<'PY' 2>&1
import json, sys
sys.path.insert(0, "tests")
from nvml_replay import FakeNVML
from envaudit.fingerprint import gpu
recording = json.load(open(sys.argv[1]))
expected = recording.get("_fingerprint_gpu")
replayed = gpu.probe(FakeNVML(recording))
if expected is None:
    print("nvml replay: unavailable: the recording has no fingerprint section to compare")
elif replayed == expected:
    print("nvml replay: ok: the recording replays to the fingerprint's gpu section")
else:
    keys = sorted(k for k in set(replayed) | set(expected) if replayed.get(k) != expected.get(k))
    print("nvml replay: failed: the replayed gpu section differs in", ", ".join(keys))
PY
  ) && echo "$replay" || say "nvml replay" "$(why $? "$replay")"
else
  say "nvml replay" "unavailable: no recording to replay"
fi

if ! "$py" -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("tensorflow"))'; then
  say training "unavailable: TensorFlow is not installed here"
elif ! rec=$(timeout 60 "$py" -m envaudit record --golden "$out/golden" --no-history 2>&1); then
  say training "$(why $? "$rec")"
elif tr=$(timeout 120 "$py" -m envaudit check --golden "$out/golden" --repeat 2 --no-confirm \
    --no-history --format json -o "$out/training.json" 2>&1) || [ $? = 1 ]; then
  "$py" - "$out/training.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = d.get("training") or {}
det = t.get("determinism") or {}
modes = ", ".join(f"{m['mode']} on {m.get('device') or 'an unknown device'}"
                  for m in t.get("modes", []))
print(f"training: ok: {t.get('steps')} steps, {modes}")
print(f"  repeat in {det.get('processes')} processes: "
      + ("bit-identical" if det.get("deterministic") else
         f"differ from step {det.get('first_step')} ({det.get('first_array')})"))
if det.get("suspects"):
    print("  suspected kernels:", "; ".join(det["suspects"]))
if det.get("op_determinism"):
    print("  op determinism:", json.dumps(det["op_determinism"]))
PY
else
  say training "$(why $? "$tr")"
fi

echo "done in $((SECONDS - started)) s; files in $out: $(cd "$out" && ls | tr '\n' ' ')"
