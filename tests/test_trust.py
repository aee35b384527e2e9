"""Issue 7: a golden bundle is data from someone else. Each finding is reproduced with a bundle
forged through envaudit's own writer (so every checksum matches), then shown fixed: the bundle
picks no code, no path outside itself and no process environment; --force destroys nothing
envaudit did not write; a golden that cannot be compared is refused, not compared.

Bundles that are refused fail before TensorFlow is imported, so those checks run in-process.
"""

from __future__ import annotations

import grp
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from forge import copy_bundle, forge, one_ulp_up, reseal
from test_output import needs_namespace
from test_store import arrays, kill_mid_swap, write

from envaudit import bundle_files, cli, store
from envaudit.attribute.allowlist import refusal
from envaudit.attribute.confirm import Experiment, _rerun, limits, plan
from envaudit.errors import EnvauditError
from envaudit.fingerprint import Change, Fingerprint, capture, diff


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("envaudit: error: "), lines[0]
    return lines[0]


# --- 1. a bundle can run code through a confirmation re-run -------------------------------------


def weapons(tmp_path: Path) -> tuple[dict[str, str], list[Path]]:
    """Environment values that run a command in any Python child that receives them."""
    evil = tmp_path / "evil"
    evil.mkdir()
    by_path, by_browser = tmp_path / "ran-sitecustomize", tmp_path / "ran-browser"
    (evil / "sitecustomize.py").write_text(f"open({str(by_path)!r}, 'w').write('ran')\n")
    env = {
        "PYTHONPATH": str(evil),
        "PYTHONWARNINGS": "ignore::antigravity.Boom",
        "BROWSER": f"sh -c 'touch {by_browser}' %s",
        "LD_PRELOAD": str(tmp_path / "libnothing.so"),
        "TF_ENABLE_ONEDNN_OPTS": "0; touch pwned",  # an allowed name with a value that is not
    }
    return env, [by_path, by_browser]


def test_the_forged_variables_are_live_weapons(tmp_path):
    """What the old re-run did (this environment plus every golden variable) runs the command."""
    env, markers = weapons(tmp_path)
    child_env = {**cli_env(), **env}
    child_env.pop("LD_PRELOAD")  # a missing preload only prints a warning; not needed here
    subprocess.run([sys.executable, "-c", "pass"], env=child_env, capture_output=True,
                   timeout=60, check=False)
    assert markers[0].exists()  # PYTHONPATH -> sitecustomize ran
    assert markers[1].exists()  # PYTHONWARNINGS -> antigravity -> BROWSER ran


@pytest.mark.slow
def test_a_forged_bundle_runs_nothing_during_a_plain_check(golden_bundle, tmp_path):
    env, markers = weapons(tmp_path)
    stages = store.load_bundle(golden_bundle).stages
    forged = forge(golden_bundle, tmp_path / "forged", env=env,
                   stages={"class_logits": one_ulp_up(stages["class_logits"])})
    proc = run_cli("check", "--golden", str(forged), "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    assert [m.exists() for m in markers] == [False, False]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "equivalent"  # one ulp at one stage: the arrays were compared
    assert result["confirmation_ran"] is False  # nothing the bundle asked for may be put back
    evidence = {c["change"].split(":")[0]: " ".join(c["evidence"]) for c in result["causes"]}
    for name in ("PYTHONPATH", "PYTHONWARNINGS", "BROWSER", "LD_PRELOAD"):
        assert f"not restored: {name} is not a numerics setting" in evidence[f"env.{name}"]
    assert "not restored: '0; touch pwned' is not a valid value of TF_ENABLE_ONEDNN_OPTS" in \
        evidence["env.TF_ENABLE_ONEDNN_OPTS"]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("TF_ENABLE_ONEDNN_OPTS", "0", None),
    ("TF_ENABLE_ONEDNN_OPTS", None, None),  # unset it: always safe for an allowed name
    ("TF_ENABLE_ONEDNN_OPTS", "0 ", "not restored: '0 ' is not a valid value of"
                                    " TF_ENABLE_ONEDNN_OPTS"),
    ("OMP_NUM_THREADS", "64", None),
    ("OMP_NUM_THREADS", "9999", "not restored: '9999' is above"),  # thousands of threads a child
    ("OMP_NUM_THREADS", "10000", "not restored: '10000' is not a valid value of OMP_NUM_THREADS"),
    ("OMP_NUM_THREADS", "0", "not restored: '0' is not a valid value of OMP_NUM_THREADS"),
    ("OMP_NUM_THREADS", "4,2", None),
    ("ONEDNN_MAX_CPU_ISA", "AVX2", None),
    ("ONEDNN_MAX_CPU_ISA", "AVX2/..", "not restored: 'AVX2/..' is not a valid value of"
                                      " ONEDNN_MAX_CPU_ISA"),
    ("NVIDIA_TF32_OVERRIDE", "0", None),
    ("NVIDIA_TF32_OVERRIDE", "2", "not restored: '2' is not a valid value of"
                                  " NVIDIA_TF32_OVERRIDE"),
    ("XLA_FLAGS", "--xla_cpu_enable_fast_math=false --xla_gpu_autotune_level=0", None),
    ("XLA_FLAGS", "--xla_dump_to=/tmp/x", "not restored: '--xla_dump_to=/tmp/x' in XLA_FLAGS is"
                                          " not a plain numerics flag"),
    ("XLA_FLAGS", "--xla_dump_hlo_as_text", "not restored: --xla_dump_hlo_as_text in XLA_FLAGS"
                                            " names files or code, not arithmetic"),
    ("XLA_FLAGS", "--tf_xla_auto_jit=2", "not restored: '--tf_xla_auto_jit=2' in XLA_FLAGS is not"
                                         " a plain numerics flag"),
    ("TF_XLA_FLAGS", "--tf_xla_auto_jit=2", None),
    ("ENVAUDIT_TFLITE_KERNELS", "reference", None),
    ("ENVAUDIT_TFLITE_KERNELS", "XNNPACK", None),
    ("ENVAUDIT_TFLITE_KERNELS", "/tmp/libdelegate.so", "not restored: '/tmp/libdelegate.so' is"
                                " not a valid value of ENVAUDIT_TFLITE_KERNELS"),
    ("ENVAUDIT_TFLITE_THREADS", "2", None),
    ("ENVAUDIT_TFLITE_THREADS", "0", "not restored: '0' is not a valid value of"
                                     " ENVAUDIT_TFLITE_THREADS"),
    ("ENVAUDIT_TFLITE_THREADS", "99999", "not restored: '99999' is not a valid value of"
                                         " ENVAUDIT_TFLITE_THREADS"),
    ("ENVAUDIT_ASSETS", "/tmp/x", "not restored: ENVAUDIT_ASSETS is not a numerics setting"
                                  " envaudit puts back (it may choose code, libraries, files or"
                                  " devices)"),
    ("LD_PRELOAD", None, "not restored: LD_PRELOAD is not a numerics setting envaudit puts back"
                         " (it may choose code, libraries, files or devices)"),
    ("CUDA_VISIBLE_DEVICES", "0", "not restored: CUDA_VISIBLE_DEVICES is not a numerics setting"
                                  " envaudit puts back (it may choose code, libraries, files or"
                                  " devices)"),
    ("tf_enable_onednn_opts", "0", "not restored: tf_enable_onednn_opts is not a numerics setting"
                                   " envaudit puts back (it may choose code, libraries, files or"
                                   " devices)"),
])
def test_which_settings_a_rerun_may_put_back(name, value, expected):
    if expected and expected.endswith("is above"):  # the bound depends on this machine's cores
        assert refusal(name, value).startswith(expected)
    else:
        assert refusal(name, value) == expected


def test_plan_puts_back_only_allowed_settings_and_says_why_not_the_rest():
    fp = capture()
    changes = [
        Change("env.TF_ENABLE_ONEDNN_OPTS", None, "0", "numerics-env", True),
        Change("env.LD_PRELOAD", "/tmp/evil.so", None, "numerics-env", True),
        Change("env.OMP_NUM_THREADS", "1;id", "2", "numerics-env", True),
    ]
    experiments = plan(changes, fp, fp)
    assert [(e.label, dict(e.env)) for e in experiments] == [
        ("TF_ENABLE_ONEDNN_OPTS restored to unset", {"TF_ENABLE_ONEDNN_OPTS": None})]
    assert limits(changes, fp, fp) == {
        "env.LD_PRELOAD": "not restored: LD_PRELOAD is not a numerics setting envaudit puts back"
                          " (it may choose code, libraries, files or devices)",
        "env.OMP_NUM_THREADS": "not restored: '1;id' is not a valid value of OMP_NUM_THREADS",
    }


def test_a_rerun_refuses_a_setting_that_is_not_allowed_without_starting(monkeypatch, tmp_path):
    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "run", no_child)
    outcome = _rerun(Experiment("x", {"PYTHONPATH": "/tmp"}, ("env.PYTHONPATH",)),
                     tmp_path / "out.npz")
    assert outcome == ("re-run refused: not restored: PYTHONPATH is not a numerics setting"
                       " envaudit puts back (it may choose code, libraries, files or devices)")


# --- 2. record --force deletes user files --------------------------------------------------------


@pytest.fixture(scope="module")
def fingerprint() -> Fingerprint:
    return capture()


def test_a_folder_with_only_bundle_file_names_is_not_a_bundle(tmp_path, fingerprint):
    """Names alone prove nothing: a user's own stages.npz is not envaudit's to replace."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "stages.npz").write_bytes(b"my own arrays")
    with pytest.raises(EnvauditError, match=r"is not an envaudit bundle \(it has no"
                                            r" manifest.json\)"):
        write(target, fingerprint, force=True)
    assert (target / "stages.npz").read_bytes() == b"my own arrays"


def test_a_foreign_manifest_is_not_a_bundle(tmp_path, fingerprint):
    target = tmp_path / "webapp"
    target.mkdir()
    (target / "manifest.json").write_text('{"schema": "envaudit.notes/1", "files": {}}')
    with pytest.raises(EnvauditError, match="its manifest.json is not an envaudit golden"):
        write(target, fingerprint, force=True)
    assert (target / "manifest.json").read_text() == \
        '{"schema": "envaudit.notes/1", "files": {}}'


def test_extra_entries_beside_a_bundle_are_named_and_kept(tmp_path, fingerprint):
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    (target / "notes.md").write_text("keep me")
    (target / "plots").mkdir()
    with pytest.raises(EnvauditError, match="it also holds notes.md, plots, which its manifest"
                                            " does not list"):
        write(target, fingerprint, seed=2, force=True)
    assert (target / "notes.md").read_text() == "keep me"
    assert store.load_bundle(target).stages["zeta"].tobytes() == \
        arrays(1)["stages"]["zeta"].tobytes()  # the bundle there is still the first one


def test_a_symlinked_target_is_not_replaced(tmp_path, fingerprint):
    real = write(tmp_path / "real", fingerprint, seed=1)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(EnvauditError, match="is a symbolic link"):
        write(link, fingerprint, seed=2, force=True)
    assert link.is_symlink()


def test_dangling_symlink_as_the_golden_target_is_refused(tmp_path, capsys):
    link = tmp_path / "golden"
    link.symlink_to(tmp_path / "nowhere")
    code, _out, err = run_main(capsys, "record", "--golden", str(link))
    assert "is a symbolic link" in one_error_line(code, err)
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


# --- 5. path traversal through the manifest ------------------------------------------------------


@pytest.mark.parametrize("entry", ["../secret.txt", "/SECRET", "stages.npz/../../secret.txt"])
def test_manifest_file_names_cannot_leave_the_bundle(golden_bundle, tmp_path, capsys, entry):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is swordfish")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    entry = entry.replace("/SECRET", str(secret))
    bundle = copy_bundle(golden_bundle, tmp_path / "b")
    reseal(bundle, lambda m: m["files"].__setitem__(entry, "0" * 64))
    code, _out, err = run_main(capsys, "check", "--golden", str(bundle))
    line = one_error_line(code, err)
    assert ("'files' must list exactly stages.eager.npz, stages.graph.npz, stages.xla.npz,"
            " probes.npz, twin.npz") in line
    assert digest[:16] not in err


def test_a_bundle_file_that_is_a_symlink_is_not_followed(golden_bundle, tmp_path, capsys):
    bundle = copy_bundle(golden_bundle, tmp_path / "b")
    outside = tmp_path / "outside.npz"
    shutil.move(bundle / "twin.npz", outside)
    (bundle / "twin.npz").symlink_to(outside)  # same bytes, so the checksum would match
    code, _out, err = run_main(capsys, "check", "--golden", str(bundle))
    assert "twin.npz cannot be read (it is a symbolic link; a bundle holds plain files only)" in \
        one_error_line(code, err)


# --- 6. exit codes that lie: golden arrays no comparison can use ---------------------------------


def _spoiled(original: np.ndarray, how: str) -> np.ndarray:
    if how == "float16":
        return original.astype(np.float16)
    if how == "shape":
        return original[..., :5]
    value = original.copy()
    if how == "nan":
        value[0] = np.nan
    elif how == "inf":
        value.reshape(-1)[3] = np.inf
    elif how == "extra row":
        value = np.concatenate([original, original[:1]])
    else:
        value[0] = 7
    return value


@pytest.mark.parametrize(("mode", "name", "how", "message"), [
    ("eager", "stem", "float16", "stages.eager/stem is float16[6, 40, 40, 16], this workload"
                                 " records float32[6, 40, 40, 16]"),
    ("graph", "nms", "shape", "stages.graph/nms is float32[6, 10, 5], this workload records"
                              " float32[6, 10, 6]"),
    ("xla", "boxes", "inf", "golden array stages.xla/boxes holds NaN or infinity"),
])
def test_a_golden_no_comparison_can_use_is_refused(golden_bundle, tmp_path, capsys, mode, name,
                                                   how, message):
    original = store.load_bundle(golden_bundle).stages_by_mode[mode][name]
    forged = forge(golden_bundle, tmp_path / "forged", mode=mode,
                   stages={name: _spoiled(original, how)})
    code, out, err = run_main(capsys, "check", "--golden", str(forged))
    assert message in one_error_line(code, err)
    assert out == ""


@pytest.mark.parametrize(("name", "how", "message"), [
    ("scores", "nan", "golden array detections/scores holds NaN or infinity"),
    ("boxes", "extra row", "detections/boxes is float32[24, 4], this workload records"
                           " float32[23, 4]"),
    ("classes", "class 7", "a detection names a class outside 0..2"),
])
def test_schema_1_detections_no_comparison_can_use_are_refused(golden_bundle, tmp_path, capsys,
                                                               name, how, message):
    """A bundle of schema 1 stores its detections apart from the nms stage: held to the spec."""
    from forge import write_v1

    from envaudit.workload import detections_from_nms

    d = detections_from_nms(store.load_bundle(golden_bundle).stages["nms"])
    v1 = write_v1(golden_bundle, tmp_path / "v1", detections={
        name: _spoiled(getattr(d, name), how)})
    code, out, err = run_main(capsys, "check", "--golden", str(v1))
    assert message in one_error_line(code, err)
    assert out == ""


# --- 7. tracebacks instead of one line -----------------------------------------------------------


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def huge_header_member() -> bytes:
    """An .npy member whose header claims a shape of 2**40 float32 elements."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64


def text_member() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(["text"]))
    return buffer.getvalue()


def with_first_member(member: bytes) -> Callable[[bytes], bytes]:
    """The real array file with its first member's bytes replaced: every other check (member
    count, names, budget) passes, so the member itself is what is refused."""
    def edit(original: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(original)) as old, zipfile.ZipFile(buffer, "w") as new:
            for index, info in enumerate(old.infolist()):
                new.writestr(info.filename, member if index == 0 else old.read(info))
        return buffer.getvalue()
    return edit


@pytest.mark.parametrize(("file", "content", "message"), [
    ("stages.eager.npz", b"", "stages.eager.npz is unreadable"),
    ("stages.graph.npz", npz_bytes(), "stages.graph.npz holds 0 arrays, its manifest lists 13"),
    ("probes.npz", b"PK\x05\x06" + b"\0" * 18, "probes.npz holds 0 arrays, its manifest lists 35"),
    ("stages.xla.npz", with_first_member(huge_header_member()), "stages.xla.npz is unreadable"),
    ("twin.npz", with_first_member(text_member()), "has dtype <U4, not a number type"),
])
def test_unreadable_array_files_are_one_line(golden_bundle, tmp_path, capsys, file, content,
                                             message):
    bundle = copy_bundle(golden_bundle, tmp_path / "b")
    if callable(content):
        content = content((bundle / file).read_bytes())
    (bundle / file).write_bytes(content)
    reseal(bundle)
    code, _out, err = run_main(capsys, "check", "--golden", str(bundle))
    assert message in one_error_line(code, err)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.__setitem__("files", 5), "'files' must list exactly"),
    (lambda m: m.__setitem__("arrays", "stages"), "'arrays' must list the arrays of"),
    (lambda m: m["arrays"].__setitem__("stages.graph", [1, 2]),
     "'arrays.stages.graph' must be a list of"),
    (lambda m: m.pop("workload"), "it has no 'workload'"),
    (lambda m: m["workload"].__setitem__("timings", []), "'workload.timings' must map names"),
    (lambda m: m["fingerprint"]["cpu"].__setitem__("flags", 5),
     "field cpu.flags should be list[str], not int"),
    (lambda m: m["fingerprint"].__setitem__("env", {"X": ["a"]}),
     "field env should be dict[str, str], not dict"),
    (lambda m: m["fingerprint"].__setitem__("deep", json.loads("[" * 40 + "]" * 40)),
     "is nested deeper than any envaudit fingerprint"),
    (lambda m: m.__setitem__("surprise", 1), "fields this envaudit does not know: 'surprise'"),
])
def test_manifests_of_the_wrong_shape_are_one_line(golden_bundle, tmp_path, capsys, edit,
                                                   message):
    bundle = copy_bundle(golden_bundle, tmp_path / "b")
    reseal(bundle, edit)
    for command in (("check", "--golden", str(bundle)), ("diff", str(bundle), str(bundle))):
        code, _out, err = run_main(capsys, *command)
        assert message in one_error_line(code, err)


@needs_namespace
@pytest.mark.slow
def test_record_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """A 64 KiB tmpfs in a private mount namespace: the bundle (5 MiB) cannot fit."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    script = ('mount -t tmpfs -o size=64k tmpfs "$1" && shift && "$@"; code=$?;'
              ' ls -A "$MNT"; exit $code')
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(mount), sys.executable, "-m",
         "envaudit", "record", "--golden", str(mount / "bundle")],
        env={**cli_env(), "MNT": str(mount)}, capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # `ls -A` of the tmpfs: no bundle, no partial folder
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "No space left on device; free space or choose another --golden path" in lines[0]


def test_the_loser_of_two_concurrent_records_is_one_line(tmp_path, fingerprint, monkeypatch):
    """Another record finishes first while this one writes: without --force, the other's bundle
    is kept and this one says so; nothing of this run is left behind."""
    target = tmp_path / "bundle"
    real = store._write_synced
    raced = []

    def write_and_race(path: Path, data: bytes) -> None:
        real(path, data)
        if not raced:
            raced.append(True)
            write(target, fingerprint, seed=9)  # the winner

    monkeypatch.setattr(store, "_write_synced", write_and_race)
    with pytest.raises(EnvauditError, match="was written by another process while this record"
                                            " ran; it was kept"):
        write(target, fingerprint, seed=1)
    monkeypatch.setattr(store, "_write_synced", real)
    assert store.load_bundle(target).stages["zeta"].tobytes() == \
        store.load_bundle(write(tmp_path / "nine", fingerprint, seed=9)).stages["zeta"].tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "nine"]


# --- 8. the lower findings -----------------------------------------------------------------------


def test_force_keeps_the_folder_mode_and_group(tmp_path, fingerprint):
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    other_group = next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()), None)
    if other_group is not None and os.geteuid() == 0:
        os.chown(target, -1, other_group)
    target.chmod(0o2750)
    before = target.stat()
    write(target, fingerprint, seed=2, force=True)
    after = target.stat()
    assert stat.S_IMODE(after.st_mode) == 0o2750
    assert after.st_gid == before.st_gid


def test_a_replaced_bundle_is_at_its_path_at_every_instant(tmp_path, fingerprint):
    """A reader polling the path while --force swaps 20 times never finds it missing."""
    target = write(tmp_path / "bundle", fingerprint, seed=0)
    stop, missing = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            if not (target / "manifest.json").is_file():
                missing.append(True)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for seed in range(1, 21):
            write(target, fingerprint, seed=seed, force=True)
    finally:
        stop.set()
        thread.join()
    assert missing == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_swap_killed_half_way_is_undone_by_the_next_check(tmp_path, fingerprint):
    """Where the file system cannot exchange two folders, the old bundle is set aside first; a
    process killed then leaves nothing at the path until any next command puts it back."""
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    before = (target / "stages.eager.npz").read_bytes()
    kill_mid_swap(target)
    assert store.load_bundle(target).array_count == 7  # reading restores it
    assert (target / "stages.eager.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_the_fallback_swap_without_exchange_keeps_the_new_bundle(tmp_path, fingerprint,
                                                                 monkeypatch):
    monkeypatch.setattr(bundle_files, "_exchange", lambda a, b: False)
    target = write(tmp_path / "bundle", fingerprint, seed=1)
    write(target, fingerprint, seed=2, force=True)
    assert store.load_bundle(target).stages["alpha"].tobytes() == \
        store.load_bundle(write(tmp_path / "two", fingerprint, seed=2)).stages["alpha"].tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "two"]


def test_diff_of_a_huge_fingerprint_names_each_flag(fingerprint):
    """Per-element list changes are computed through sets: 50,000 flags each side."""
    a = json.loads(json.dumps(fingerprint.data))
    b = json.loads(json.dumps(fingerprint.data))
    a["cpu"]["flags"] = [f"f{i}" for i in range(50_000)]
    b["cpu"]["flags"] = [f"f{i}" for i in range(1, 50_001)]
    changes = [c for c in diff(Fingerprint(a), Fingerprint(b)) if c.path.startswith("cpu.flags")]
    assert [(c.path, c.golden, c.current) for c in changes] == [
        ("cpu.flags.f0", "f0", None), ("cpu.flags.f50000", None, "f50000")]


# --- 4. secrets and identity leak ----------------------------------------------------------------

HOST = "host-7731-secret"
TOKEN = "ghp_" + "Xk9mQ2vT7pLr4Wz8Yb3Nc6Hd1Fg5Js0Aq8Ue"


@pytest.fixture(scope="module")
def shared_outputs(tmp_path_factory) -> dict[str, str]:
    """A bundle recorded and checked under a distinctive host name (a private UTS namespace),
    a home folder of its own and secret-looking variables; every shared output, by name."""
    home = tmp_path_factory.mktemp("home-of-alice")
    env = cli_env(HOME=str(home), USER="alice", TF_VAR_db_pass="hunter2-db-pass",
                  TF_CLI_ARGS_apply="-var=admin_pw=tf-cli-s3cret",
                  NCCL_IB_PASSWD="nccl-pass-123", NCCL_REMOTE_HINT=TOKEN,
                  CUDA_CACHE_URL="https://alice:pa55word@cache.example/tf",
                  CUDA_CACHE_PATH=f"{home}/cache")
    bundle = home / "bundle"
    outputs: dict[str, str] = {}

    def run(*args: str, host: str = HOST) -> str:
        proc = subprocess.run(
            ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh",
             sys.executable, "-m", "envaudit", *args],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.stdout

    run("record", "--golden", str(bundle), "--steps", "0")  # training arrays hold no text
    outputs["manifest.json"] = (bundle / "manifest.json").read_text()
    for fmt in ("text", "json", "md", "junit"):
        outputs[f"check {fmt}"] = run("check", "--golden", str(bundle), "--no-confirm",
                                      "--format", fmt)
    outputs["report"] = run("report")
    outputs["diff"] = run("diff", str(bundle), str(bundle))
    outputs["check --no-redact"] = run("check", "--golden", str(bundle), "--no-confirm",
                                       "--format", "json", "--no-redact")
    # A bundle kept unredacted on its own machine, checked from another host: both host names
    # appear in the change table, and both must be hidden there.
    raw = home / "raw-bundle"
    run("record", "--golden", str(raw), "--no-redact", "--steps", "0")
    outputs["raw manifest.json"] = (raw / "manifest.json").read_text()
    outputs["check from another host"] = run("check", "--golden", str(raw), "--no-confirm",
                                             host="other-host-4242")
    outputs["home"] = str(home)
    return outputs


LEAKS = ("hunter2-db-pass", "tf-cli-s3cret", "nccl-pass-123", TOKEN, "pa55word", "alice:")


@pytest.mark.slow
@pytest.mark.parametrize("output", ["manifest.json", "check text", "check json", "check md",
                                    "check junit", "report", "diff", "check from another host"])
def test_shared_outputs_hold_no_secret_host_or_home(shared_outputs, output):
    text = shared_outputs[output]
    assert text.strip()
    for leak in (*LEAKS, HOST, "other-host-4242", shared_outputs["home"]):
        assert leak not in text, (output, leak)


@pytest.mark.slow
def test_a_host_change_is_shown_redacted_on_both_sides(shared_outputs):
    assert f'"hostname": "{HOST}"' in shared_outputs["raw manifest.json"]  # kept, as asked
    rows = [line.split() for line in shared_outputs["check from another host"].splitlines()]
    assert ["os.hostname", "[hostname]", "[hostname]"] in rows  # listed under "os:", not folded


@pytest.mark.slow
def test_the_bundle_says_it_is_redacted_and_where_values_went(shared_outputs):
    manifest = json.loads(shared_outputs["manifest.json"])
    assert manifest["redacted"] is True
    env = manifest["fingerprint"]["env"]
    assert "TF_VAR_db_pass" not in env and "NCCL_IB_PASSWD" not in env  # never recorded
    assert "TF_CLI_ARGS_apply" not in env  # Terraform's, not TensorFlow's: never recorded
    assert env["NCCL_REMOTE_HINT"] == "[redacted]"
    assert env["CUDA_CACHE_URL"] == "https://[redacted]@cache.example/tf"
    assert env["CUDA_CACHE_PATH"] == "~/cache"
    assert manifest["fingerprint"]["os"]["hostname"] == "[hostname]"


@pytest.mark.slow
def test_no_redact_shows_host_and_home_but_never_secrets(shared_outputs):
    text = shared_outputs["check --no-redact"]
    assert f"{shared_outputs['home']}/bundle" in text  # the golden path, as it is
    for leak in LEAKS:
        assert leak not in text
        assert leak not in shared_outputs["raw manifest.json"]  # recorded with --no-redact
    result = json.loads(text)
    assert result["golden"]["path"] == f"{shared_outputs['home']}/bundle"
