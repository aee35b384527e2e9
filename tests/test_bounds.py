"""Reading a stranger's files ends promptly, in bounded memory, with one line: an ``.npz`` of many
members each under the per-array cap is held to the bundle's budget before anything is inflated; a
fingerprint "file" that is a FIFO or a link to ``/dev/zero`` is refused at once; JSON nested a
thousand deep is one line, never "internal error: RecursionError"; ``history show ²`` is one line;
the history database and its folder are private whatever the umask.

Each test first builds the attack for real (a FIFO, a symlink, a re-sealed bundle, a umask of 0)
and asserts that it is what it claims, then shows that envaudit refuses it. No TensorFlow.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from forge import reseal
from test_store_boundaries import npy, write_small

from envaudit import bundle_budget, cli, store, untrusted
from envaudit.fingerprint import Fingerprint, capture

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fingerprint() -> Fingerprint:
    return capture()


@pytest.fixture(scope="module")
def fingerprint_file(tmp_path_factory: pytest.TempPathFactory, fingerprint: Fingerprint) -> Path:
    path = tmp_path_factory.mktemp("fp") / "fp.json"
    path.write_text(fingerprint.to_json())
    return path


def envaudit(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envaudit", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env={**os.environ, **env})


def one_line_exit_2(proc: subprocess.CompletedProcess[str], phrase: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("envaudit: error: ")
    assert "internal error" not in proc.stderr and phrase in proc.stderr, proc.stderr


# --- an .npz of many small members ---------------------------------------------------------


def test_many_small_members_over_the_budget_are_refused_before_inflating(tmp_path, fingerprint,
                                                                          capsys):
    bundle = write_small(tmp_path / "bundle", fingerprint)
    budget = bundle_budget.budget(user_model=False, modes=1)
    # 24 members of 1 MiB of zeros each: every one far under the per-array cap, the file a few
    # KiB, together more than this one-mode canary bundle's budget.
    members = {f"m{i}": np.zeros(1 << 18, np.float32) for i in range(24)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in members.items():
            archive.writestr(f"{name}.npy", npy(array))
        # The last member's stream is corrupt: inflating it would fail with a CRC error, so a
        # refusal that names the budget proves that nothing was inflated.
        archive.writestr("z.npy", npy(np.ones(16, np.float32)))
    data = bytearray(buffer.getvalue())
    data[data.rindex(b"z.npy") - 30] ^= 0xFF  # the CRC in z.npy's zip directory entry
    data = bytes(data)
    with pytest.raises(zipfile.BadZipFile, match="CRC"), np.load(io.BytesIO(data)) as npz:
        npz["z"]
    (bundle / "probes.npz").write_bytes(data)
    reseal(bundle, lambda m: m["arrays"].__setitem__("probes", [*members, "z"]))

    # The attack is real: a small file, every member under the cap, the sum over the budget,
    # every checksum valid.
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sizes = [info.file_size for info in archive.infolist()]
    assert len(data) < 200_000 and max(sizes) < store.MAX_ARRAY_BYTES
    assert sum(sizes) > budget.limit
    assert store.read_manifest(bundle)["arrays"]["probes"][-1] == "z"

    with pytest.raises(store.EnvauditError) as error:
        store.load_bundle(bundle)
    message = str(error.value)
    assert f"would inflate to {bundle_budget.mib(sum(sizes))}" in message
    assert f"more than the {bundle_budget.mib(budget.limit)} a canary bundle of 1 mode" in message
    assert "CRC" not in message

    assert cli.main(["diff", str(bundle), str(bundle)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "would inflate to" in err


def test_record_never_writes_what_check_would_refuse_to_read(tmp_path, fingerprint):
    budget = bundle_budget.budget(user_model=False, modes=1)
    big = {"b": np.zeros(4 << 20, np.float32)}  # 16 MiB: over a one-mode canary's budget
    assert big["b"].nbytes > budget.limit
    with pytest.raises(store.EnvauditError) as error:
        write_small(tmp_path / "bundle", fingerprint, stages=big)
    assert "cannot record golden bundle" in str(error.value)
    assert f"more than the {bundle_budget.mib(budget.limit)}" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no partial folder left


def test_the_canary_budget_is_twice_the_arrays_the_workload_records():
    shipped = store.load_bundle(store.REFERENCE_BUNDLE)
    assert len(shipped.modes) == 3
    held = 0
    for file in store.REFERENCE_BUNDLE.glob("*.npz"):
        with zipfile.ZipFile(file) as archive:
            held += sum(info.file_size for info in archive.infolist())
    assert shipped.training_steps == 3 and len(shipped.training) == 2
    budget = bundle_budget.budget(user_model=False, modes=3, training=(3, 2))
    assert budget.limit == 2 * held  # the spec tables give the shipped bundle's exact size
    assert bundle_budget.budget(user_model=True, modes=3).limit == 2 << 30


def test_a_zip_directory_out_of_proportion_is_refused_before_it_is_parsed(bundle_with_probes):
    # 3000 empty members: a directory of 3000 entries where the manifest lists one array.
    bundle = bundle_with_probes({f"{i}.npy": b"" for i in range(3000)})
    with pytest.raises(store.EnvauditError) as error:
        store.load_bundle(bundle)
    assert "its zip directory takes" in str(error.value) and "for the 1 arrays" in str(error.value)


def test_members_the_manifest_does_not_list_are_counted_before_inflating(bundle_with_probes):
    bundle = bundle_with_probes({"p.npy": npy(np.zeros(2, np.float32)),
                                 "q.npy": npy(np.zeros(2, np.float32))})
    with pytest.raises(store.EnvauditError) as error:
        store.load_bundle(bundle)
    assert "holds 2 arrays, its manifest lists 1" in str(error.value)


@pytest.fixture
def bundle_with_probes(tmp_path, fingerprint):
    def make(members: dict[str, bytes]) -> Path:
        bundle = write_small(tmp_path / "bundle", fingerprint)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        (bundle / "probes.npz").write_bytes(buffer.getvalue())
        reseal(bundle)
        return bundle
    return make


# --- fingerprint inputs that are not regular files -----------------------------------------


def test_a_fifo_as_a_fingerprint_file_is_refused_at_once(tmp_path, fingerprint_file):
    fifo = tmp_path / "fp.fifo"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # nobody writes to it: a plain read would block
    proc = envaudit("diff", str(fingerprint_file), str(fifo), timeout=30)
    one_line_exit_2(proc, "is a FIFO, not a regular file")


def test_a_link_to_dev_zero_is_refused_at_once(tmp_path, fingerprint_file):
    link = tmp_path / "fp.json"
    link.symlink_to("/dev/zero")
    assert stat.S_ISCHR(os.stat(link).st_mode)  # endless zeros behind an innocent name
    proc = envaudit("diff", str(link), str(fingerprint_file), timeout=30)
    one_line_exit_2(proc, "is a character device, not a regular file")


def test_a_link_to_a_regular_fingerprint_file_is_read(tmp_path, fingerprint_file, capsys):
    link = tmp_path / "link.json"
    link.symlink_to(fingerprint_file)
    assert cli.main(["diff", str(link), str(fingerprint_file)]) == 0
    capsys.readouterr()


def test_a_fingerprint_file_over_the_size_cap_is_refused(tmp_path, fingerprint_file, capsys,
                                                         monkeypatch):
    from envaudit.fingerprint import load

    size = fingerprint_file.stat().st_size
    monkeypatch.setattr(load, "MAX_BYTES", size)
    assert cli.main(["diff", str(fingerprint_file), str(fingerprint_file)]) == 0
    monkeypatch.setattr(load, "MAX_BYTES", size - 1)
    assert cli.main(["diff", str(fingerprint_file), str(fingerprint_file)]) == 2
    out, err = capsys.readouterr()
    assert f"is {size} bytes, more than the {size - 1} bytes envaudit reads" in err


# --- nesting ---------------------------------------------------------------------------------


def test_a_manifest_nested_a_thousand_deep_is_one_line(tmp_path, fingerprint):
    bundle = write_small(tmp_path / "bundle", fingerprint)
    manifest = json.loads((bundle / store.MANIFEST).read_text())
    # Deep enough that json.loads still builds it but re-encoding it for the checksum, a few
    # frames further down, exhausted the recursion limit: "internal error: RecursionError".
    deep = "[" * 985 + "]" * 985
    text = json.dumps({**manifest, "fingerprint": "DEEP"}).replace('"DEEP"', deep)
    (bundle / store.MANIFEST).write_text(text)
    parse = "import json, sys; print(type(json.load(open(sys.argv[1]))['fingerprint']).__name__)"
    proc = subprocess.run([sys.executable, "-c", parse, str(bundle / store.MANIFEST)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout == "list\n", proc.stderr  # a fresh interpreter's parser accepts it
    proc = envaudit("diff", str(bundle), str(bundle))
    one_line_exit_2(proc, "is nested deeper than 64 levels")
    proc = envaudit("check", "--golden", str(bundle))
    one_line_exit_2(proc, "is nested deeper than 64 levels")


def test_a_fingerprint_file_nested_a_thousand_deep_is_one_line(tmp_path, fingerprint_file):
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "envaudit.fingerprint/1", "x": ' + "[" * 1000 + "]" * 1000 + "}")
    proc = envaudit("diff", str(fingerprint_file), str(deep))
    one_line_exit_2(proc, "is nested deeper than 64 levels")


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ('{"a": [1, {"b": 2}]}', 3), ('["[[[", "\\"[["]', 1),
    ("[" * 64 + "]" * 64, 64), ("[" * 65 + "]" * 65, 65)])
def test_nesting_depth_counts_brackets_outside_strings(text, depth):
    assert untrusted.nesting_depth(text) == depth
    if depth <= untrusted.MAX_DEPTH:
        assert untrusted.loads(text) == json.loads(text)
    else:
        with pytest.raises(untrusted.TooDeep):
            untrusted.loads(text)


# --- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["²", "٣", "1e3", "-1", "9" * 19])
def test_history_show_of_what_is_not_a_run_number_is_one_line(tmp_path, run_id):
    assert not run_id.isascii() or not run_id.isdigit() or len(run_id) > 18
    proc = envaudit("history", "show", run_id, XDG_DATA_HOME=str(tmp_path))
    one_line_exit_2(proc, "is not a number")


@pytest.mark.parametrize("since", ["9999-12-31T23:00-05:00", "0001-01-01T00:00+05:00"])
def test_history_since_a_moment_outside_the_utc_calendar_is_one_line(tmp_path, since):
    from envaudit import history

    path = tmp_path / "envaudit" / "history.sqlite"
    report = {"exit_code": 0, "findings": [], "golden": {"path": "g"},
              "groups": [{"fingerprint_id": "fp-1", "verdict": "identical"}]}
    assert history.append_fleet(report, "c" * 64, path) is None  # a database to query
    proc = envaudit("history", "--since", since, XDG_DATA_HOME=str(tmp_path))
    one_line_exit_2(proc, "lies outside the years 1 to 9999 in UTC")


WRITE_UNDER_UMASK_0 = textwrap.dedent("""
    import os, sqlite3, sys
    from pathlib import Path
    from envaudit import history
    os.umask(0)
    path = Path(sys.argv[1])
    report = {"exit_code": 0, "findings": [], "golden": {"path": "g"},
              "groups": [{"fingerprint_id": "fp-1", "verdict": "identical"}]}
    assert history.append_fleet(report, "c" * 64, path) is None
    open(sys.argv[2], "w").close()
    probe = Path(sys.argv[1] + ".probe")
    probe.mkdir()  # what the umask alone gives a folder
    conn = sqlite3.connect(path)  # a reader keeps the WAL and shared-memory files in place
    conn.execute("SELECT count(*) FROM runs").fetchone()
    for file in (path.parent.parent, path.parent, path, Path(f"{path}-wal"), Path(f"{path}-shm"),
                 probe):
        print(file.name, oct(os.stat(file).st_mode & 0o777))
""")


def test_the_history_and_its_folders_are_private_whatever_the_umask(tmp_path):
    path = tmp_path / "data" / "envaudit" / "history.sqlite"
    proc = subprocess.run([sys.executable, "-c", WRITE_UNDER_UMASK_0, str(path),
                           str(tmp_path / "umask-file")], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    modes = dict(line.split() for line in proc.stdout.splitlines())
    # The attack's precondition: under this umask a folder or file is open to everyone.
    assert modes["history.sqlite.probe"] == "0o777"
    assert stat.S_IMODE(os.stat(tmp_path / "umask-file").st_mode) == 0o666
    assert modes == {"data": "0o700", "envaudit": "0o700", "history.sqlite": "0o600",
                     "history.sqlite-wal": "0o600", "history.sqlite-shm": "0o600",
                     "history.sqlite.probe": "0o777"}


def test_a_history_left_readable_by_an_earlier_envaudit_is_made_private(tmp_path):
    from envaudit import history

    path = tmp_path / "history.sqlite"
    report = {"exit_code": 0, "findings": [], "golden": {"path": "g"},
              "groups": [{"fingerprint_id": "fp-1", "verdict": "identical"}]}
    assert history.append_fleet(report, "c" * 64, path) is None
    path.chmod(0o644)  # as the umask made it before
    assert history.append_fleet(report, "c" * 64, path) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(history.runs(path)) == 2
