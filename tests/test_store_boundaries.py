"""The golden store at its edges: every refusal of reading a bundle with its exact message, the
size limits just below, at and just above, the names a default bundle may have, and the error
paths of writing one.

In-process and fast (no TensorFlow): small bundles written by ``store.write_bundle``, forged ones
re-sealed with valid checksums (``forge.reseal``), since checksums prove integrity, not authorship.
The two properties at the end say that no corruption of an array file or a manifest field gets
past ``load_bundle`` as anything but an ``EnvauditError`` (exit 2).
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import reseal
from hypothesis import given
from hypothesis import strategies as st

from envaudit import __version__, bundle_files, store
from envaudit.errors import EnvauditError
from envaudit.fingerprint import Fingerprint, capture

TAIL = "; restore the bundle or re-record it with 'envaudit record --golden PATH --force'"
WORKLOAD = {"id": "test.workload", "version": "1", "assets": {"w.npz": "0" * 64},
            "timings": {"run": 1.5, "images": 6}}
BIG = 4096  # float32 values of noise in stages "b": stages.eager.npz is the largest file


def small_arrays() -> dict[str, dict[str, np.ndarray]]:
    noise = np.random.default_rng(7).standard_normal(BIG).astype(np.float32)
    return {
        "stages": {"b": noise, "a": np.array([[1, 2], [3, 4]], np.uint8)},
        "probes": {"p": np.array([0.25, np.finfo(np.float32).max], np.float32)},
        "twin": {"b": np.array([1.5, -2.0])},
    }


def write_small(target: Path, fingerprint: Fingerprint, **overrides: Any) -> Path:
    """A small bundle of one (eager) mode; array groups in ``overrides`` replace the small ones."""
    arrays = small_arrays()
    arrays.update({k: v for k, v in overrides.items() if k in arrays})
    fields: dict[str, Any] = {"fingerprint": fingerprint, "workload": WORKLOAD,
                              "images": ("a.png",), "stages": {"eager": arrays["stages"]},
                              "probes": arrays["probes"], "twin": arrays["twin"]}
    fields.update({k: v for k, v in overrides.items() if k not in arrays})
    return store.write_bundle(target, **fields)


def refusal(path: Path) -> str:
    with pytest.raises(EnvauditError) as error:
        store.load_bundle(path)
    return str(error.value)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fingerprint() -> Fingerprint:
    return capture()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, fingerprint: Fingerprint) -> Path:
    return write_small(tmp_path_factory.mktemp("pristine") / "bundle", fingerprint)


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


@pytest.fixture(scope="module")
def valid(pristine: Path) -> dict[str, Any]:
    return json.loads((pristine / store.MANIFEST).read_text())


# --- the manifest's own checksum --------------------------------------------------------------


def test_the_manifest_digest_is_over_sorted_keys_without_itself():
    digest = store._manifest_digest({"b": 1, "a": [2], "manifest_sha256": "ignored"})
    # sha256 of '{"a": [2], "b": 1}'
    assert digest == "41ff4104bc489a1b119b42f479459c997ebbabb27d88a685fab2a7a52089feb5"


# --- _manifest_problem: one case per refusal ------------------------------------------------------


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        for key in path[:-1]:
            m = m[key]
        m[path[-1]] = value
    return edit


def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        for key in keys:
            del m[key]
    return edit


def _drop_in(outer: str, key: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m[outer].pop(key)


def _add(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.update(fields)


FILES = "'files' must list exactly stages.eager.npz, probes.npz, twin.npz"
FILE_SHA = "'files' must map each file to its sha256 in hex"
ARRAYS = "'arrays' must list the arrays of stages.eager, probes, twin"
TEXT = "'envaudit_version' and 'created_at' must be text"
NAMES_WORKLOAD = "'workload' must name the workload's id and version"
EXACT_WORKLOAD = "'workload' must hold exactly its id, version, assets and timings"
ASSETS = "'workload.assets' must map asset names to sha256 digests"
TIMINGS = "'workload.timings' must map names to seconds"
IMAGES = "'images' must be a list of names"

PROBLEMS = [
    ("one missing", _drop("images"), "it has no 'images'"),
    ("three missing", _drop("manifest_sha256", "images", "created_at"),
     "it has no 'created_at', 'images', 'manifest_sha256'"),
    ("one unknown", _add(zz=1), "it has fields this envaudit does not know: 'zz'"),
    ("six unknown", _add(f=1, e=1, d=1, c=1, b=1, a=1),
     "it has fields this envaudit does not know: 'a', 'b', 'c', 'd', 'e'"),
    ("version a number", _set("envaudit_version", value=1), TEXT),
    ("created_at null", _set("created_at", value=None), TEXT),
    ("files a list", _set("files", value=["stages.eager.npz", "probes.npz", "twin.npz"]),
     FILES),
    ("files missing one", _drop_in("files", "twin.npz"), FILES),
    ("files one more", _set("files", "extra.npz", value="0" * 64), FILES),
    ("sha of 63", _set("files", "twin.npz", value="0" * 63), FILE_SHA),
    ("sha of 65", _set("files", "twin.npz", value="0" * 65), FILE_SHA),
    ("sha in capitals", _set("files", "twin.npz", value="A" * 64), FILE_SHA),
    ("sha a number", _set("files", "twin.npz", value=0), FILE_SHA),
    ("arrays a list", _set("arrays", value=["stages.eager", "probes", "twin"]), ARRAYS),
    ("arrays missing one", _drop_in("arrays", "twin"), ARRAYS),
    ("names a string", _set("arrays", "stages.eager", value="ab"),
     "'arrays.stages.eager' must be a list of distinct plain array names"),
    ("names repeated", _set("arrays", "probes", value=["p", "p"]),
     "'arrays.probes' must be a list of distinct plain array names"),
    ("name with a slash", _set("arrays", "twin", value=["a/b"]),
     "'arrays.twin' must be a list of distinct plain array names"),
    ("name empty", _set("arrays", "twin", value=[""]),
     "'arrays.twin' must be a list of distinct plain array names"),
    ("name of 101", _set("arrays", "twin", value=["x" * 101]),
     "'arrays.twin' must be a list of distinct plain array names"),
    ("name a number", _set("arrays", "probes", value=[5]),
     "'arrays.probes' must be a list of distinct plain array names"),
    ("workload a list", _set("workload", value=["id", "version"]), NAMES_WORKLOAD),
    ("workload id a number", _set("workload", "id", value=1), NAMES_WORKLOAD),
    ("workload version null", _set("workload", "version", value=None), NAMES_WORKLOAD),
    ("workload without id", _drop_in("workload", "id"), NAMES_WORKLOAD),
    ("workload one more", _set("workload", "command", value="rm"), EXACT_WORKLOAD),
    ("workload without timings", _drop_in("workload", "timings"), EXACT_WORKLOAD),
    ("assets a list", _set("workload", "assets", value=["0" * 64]), ASSETS),
    ("assets a string", _set("workload", "assets", value="ab"), ASSETS),
    ("asset not hex", _set("workload", "assets", value={"w": "z" * 64}), ASSETS),
    ("asset a number", _set("workload", "assets", value={"w": 0}), ASSETS),
    ("timings a list", _set("workload", "timings", value=[1.5]), TIMINGS),
    ("timing as text", _set("workload", "timings", value={"run": "1.5"}), TIMINGS),
    ("timing a bool", _set("workload", "timings", value={"run": True}), TIMINGS),
    ("timing null", _set("workload", "timings", value={"run": None}), TIMINGS),
    ("images a string", _set("images", value="ab"), IMAGES),
    ("image a number", _set("images", value=["a.png", 1]), IMAGES),
    ("fingerprint a list", _set("fingerprint", value=[]), "'fingerprint' must be an object"),
    ("redacted a number", _set("redacted", value=0), "'redacted' must be true or false"),
    ("redacted as text", _set("redacted", value="false"), "'redacted' must be true or false"),
]


@pytest.mark.parametrize(("edit", "expected"), [p[1:] for p in PROBLEMS],
                         ids=[p[0] for p in PROBLEMS])
def test_each_malformed_manifest_names_its_problem(valid, edit, expected):
    manifest = copy.deepcopy(valid)
    edit(manifest)
    assert store._manifest_problem(manifest) == expected


ACCEPTED = [
    ("as written", lambda m: None),
    ("without redacted", _drop("redacted")),
    ("redacted", _set("redacted", value=True)),
    ("name of 100 and punctuation", _set("arrays", "twin", value=["x" * 100, "._-", "Z9"])),
    ("no arrays in a group", _set("arrays", "probes", value=[])),
    ("timings of ints and floats", _set("workload", "timings", value={"a": 0, "b": -1.5})),
    ("no images", _set("images", value=[])),
]


@pytest.mark.parametrize("edit", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_well_formed_manifests_have_no_problem(valid, edit):
    manifest = copy.deepcopy(valid)
    edit(manifest)
    assert store._manifest_problem(manifest) is None


def test_a_malformed_manifest_is_refused_by_load_bundle_with_the_problem(bundle):
    reseal(bundle, _add(zz=1))
    assert refusal(bundle) == (f"{bundle / 'manifest.json'} is malformed: it has fields this"
                               f" envaudit does not know: 'zz'{TAIL}")


# --- read_manifest ----------------------------------------------------------------------------


def test_a_missing_folder(tmp_path):
    where = tmp_path / "nowhere"
    # nothing near it: recording there is the suggestion (tests/test_cli_habits.py: a typo)
    assert refusal(where) == (f"no golden bundle at {where}; pass the folder 'envaudit record'"
                              f" wrote, or record one there with 'envaudit record --golden"
                              f" {where}'")


@pytest.mark.parametrize("manifest", ["absent", "a folder"])
def test_a_folder_without_a_manifest_file(tmp_path, manifest):
    if manifest == "a folder":
        (tmp_path / "manifest.json").mkdir()
    assert refusal(tmp_path) == (f"{tmp_path} is not a golden bundle (no manifest.json); pass the"
                                 " folder written by 'envaudit record'")


def test_a_symlinked_manifest_is_not_read(bundle, tmp_path):
    real = tmp_path / "elsewhere.json"
    (bundle / "manifest.json").rename(real)
    (bundle / "manifest.json").symlink_to(real)
    assert refusal(bundle) == (f"cannot read {bundle / 'manifest.json'}: it is a symbolic link;"
                               " a bundle holds plain files only; check the path and its"
                               " permissions")


def test_a_manifest_unreadable_without_a_reason_is_named_by_the_error(bundle, monkeypatch):
    def fail(path: Path, limit: int) -> bytes:
        raise OSError("device gone")

    monkeypatch.setattr(bundle_files, "read_regular", fail)
    assert refusal(bundle) == (f"cannot read {bundle / 'manifest.json'}: device gone; check the"
                               " path and its permissions")


def test_the_manifest_size_limit_just_below_at_and_above(bundle, monkeypatch):
    size = (bundle / "manifest.json").stat().st_size
    for limit in (size + 1, size):
        monkeypatch.setattr(store, "MAX_MANIFEST_BYTES", limit)
        assert store.read_manifest(bundle)["images"] == ["a.png"]
    monkeypatch.setattr(store, "MAX_MANIFEST_BYTES", size - 1)
    with pytest.raises(EnvauditError) as error:
        store.read_manifest(bundle)
    assert str(error.value) == (f"cannot read {bundle / 'manifest.json'}: it is {size} bytes,"
                                f" more than the {size - 1} envaudit reads; check the path and"
                                " its permissions")


@pytest.mark.parametrize("content", [b'{"schema": ', b"\xff\xfe{}"],
                         ids=["truncated", "not utf-8"])
def test_a_manifest_that_is_not_json(bundle, content):
    (bundle / "manifest.json").write_bytes(content)
    assert refusal(bundle) == (f"{bundle / 'manifest.json'} is not valid JSON (corrupt or"
                               f" edited){TAIL}")


@pytest.mark.parametrize("content", ["[]", "{}", '{"schema": 5}', '{"schema": "other/1"}'])
def test_json_that_is_not_a_golden_manifest(bundle, content):
    (bundle / "manifest.json").write_text(content)
    assert refusal(bundle) == (f"{bundle / 'manifest.json'} is not an envaudit golden manifest;"
                               " pass the folder written by 'envaudit record'")


def test_another_golden_schema(bundle):
    reseal(bundle, _set("schema", value="envaudit.golden/3"))
    assert refusal(bundle) == (f"golden bundle {bundle} has schema 'envaudit.golden/3', this"
                               f" envaudit {__version__} reads 'envaudit.golden/1' and"
                               " 'envaudit.golden/2'; re-record it with 'envaudit record --golden"
                               " PATH --force'")


@pytest.mark.parametrize("edit", [_set("created_at", value="x"), _drop("manifest_sha256")],
                         ids=["edited", "no checksum"])
def test_a_manifest_whose_checksum_does_not_match(bundle, edit):
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert refusal(bundle) == (f"{bundle / 'manifest.json'} was modified (its checksum does not"
                               " match); restore the bundle or re-record it with"
                               " 'envaudit record --force'")


def test_the_fingerprint_is_checked_and_named_by_its_manifest(bundle):
    reseal(bundle, _set("fingerprint", value={"schema": "other"}))
    assert refusal(bundle) == (f"{bundle / 'manifest.json'} is not an envaudit fingerprint (no"
                               " 'schema': 'envaudit.fingerprint/N'); create one with"
                               " 'envaudit fingerprint --format json -o FILE'")


# --- _load_npz --------------------------------------------------------------------------------

WHERE = Path("/b/stages.eager.npz")
UNREADABLE = "golden bundle file /b/stages.eager.npz is unreadable ({}){}"


def load_npz_refusal(data: bytes) -> str:
    with pytest.raises(EnvauditError) as error:
        store._load_npz(data, WHERE)
    return str(error.value)


@pytest.mark.parametrize(("limit", "loads"), [(161, True), (160, True), (159, False)],
                         ids=["below", "at", "above"])
def test_the_member_size_limit_just_below_at_and_above(monkeypatch, limit, loads):
    data = zipped({"a.npy": npy(np.zeros(4))})  # a 160-byte member: 128 of header, 32 of data
    monkeypatch.setattr(store, "MAX_ARRAY_BYTES", limit)
    if loads:
        assert store._load_npz(data, WHERE)["a"].tolist() == [0.0, 0.0, 0.0, 0.0]
    else:
        assert load_npz_refusal(data) == UNREADABLE.format(
            "member 'a.npy' would inflate to 160 bytes", TAIL)


def test_a_member_is_size_checked_by_its_claim_before_inflating(monkeypatch):
    # A compressed member of 4000 zeros claims 32128 bytes: refused before it is inflated.
    data = zipped({"z.npy": npy(np.zeros(4000))}, zipfile.ZIP_DEFLATED)
    assert len(data) < 1000
    monkeypatch.setattr(store, "MAX_ARRAY_BYTES", 32127)
    assert load_npz_refusal(data) == UNREADABLE.format(
        "member 'z.npy' would inflate to 32128 bytes", TAIL)


NPZ_REFUSALS = [
    ("not a zip", b"not a zip", "File is not a zip file"),
    ("pickle", zipped({"o.npy": npy(np.array([1, None], object))}),
     "Object arrays cannot be loaded when allow_pickle=False"),
    ("complex", zipped({"c.npy": npy(np.zeros(2, np.complex64))}),
     "array 'c' has dtype complex64, not a number type"),
    ("text", zipped({"u.npy": npy(np.array(["x"]))}), "array 'u' has dtype <U1, not a number type"),
    ("structured", zipped({"s.npy": npy(np.zeros(2, [("x", "<i4")]))}),
     "array 's' has dtype [('x', '<i4')], not a number type"),
    ("truncated header", zipped({"a.npy": npy(np.zeros(4))[:100]}),
     "EOF: reading array header, expected 118 bytes got 90"),
    ("truncated data", zipped({"a.npy": npy(np.zeros(4))[:140]}),
     "EOF: reading array data, expected 32 bytes got 12"),
    ("not an array", zipped({"a.npy": b"garbage"}), "member 'a' is not a NumPy array"),
]


@pytest.mark.parametrize(("data", "why"), [r[1:] for r in NPZ_REFUSALS],
                         ids=[r[0] for r in NPZ_REFUSALS])
def test_each_unreadable_npz_says_why(data, why):
    assert load_npz_refusal(data) == UNREADABLE.format(why, TAIL)


def test_a_corrupt_deflate_stream_is_refused():
    data = bytearray(zipped({"a.npy": npy(np.zeros(400))}, zipfile.ZIP_DEFLATED))
    data[60] ^= 0xFF
    assert load_npz_refusal(bytes(data)) == UNREADABLE.format("Bad CRC-32 for file 'a.npy'", TAIL)


def test_every_number_kind_is_read():
    kinds = {"b": np.array([True]), "i": np.array([-3], np.int8), "u": np.array([7], np.uint64),
             "f": np.array([0.5], np.float16)}
    loaded = store._load_npz(zipped({f"{k}.npy": npy(a) for k, a in kinds.items()}), WHERE)
    assert {k: (str(a.dtype), a.tolist()) for k, a in loaded.items()} == {
        "b": ("bool", [True]), "i": ("int8", [-3]), "u": ("uint64", [7]), "f": ("float16", [0.5])}


# --- load_bundle ------------------------------------------------------------------------------


def test_a_bundle_loads_with_its_path_and_the_manifest_order(bundle):
    reseal(bundle, _set("arrays", "stages.eager", value=["a", "b"]))  # written as b, a
    loaded = store.load_bundle(bundle)
    assert loaded.path == bundle
    assert list(loaded.stages) == ["a", "b"]
    assert loaded.stages["a"].tolist() == [[1, 2], [3, 4]]
    assert loaded.probes["p"].tolist() == [0.25, 3.4028234663852886e38]  # float32 max is finite
    assert loaded.manifest["workload"]["timings"] == {"run": 1.5, "images": 6}


def test_a_missing_array_file(bundle):
    (bundle / "probes.npz").unlink()
    assert refusal(bundle) == f"golden bundle file {bundle / 'probes.npz'} is missing{TAIL}"


def test_an_array_file_that_is_a_folder(bundle):
    (bundle / "twin.npz").unlink()
    (bundle / "twin.npz").mkdir()
    assert refusal(bundle) == (f"golden bundle file {bundle / 'twin.npz'} cannot be read"
                               f" (Is a directory){TAIL}")


def test_an_array_file_unreadable_without_a_reason(bundle, monkeypatch):
    real = bundle_files.read_regular

    def fail_arrays(path: Path, limit: int) -> bytes:
        if path.suffix == ".npz":
            raise OSError("device gone")
        return real(path, limit)

    monkeypatch.setattr(bundle_files, "read_regular", fail_arrays)
    assert refusal(bundle) == (f"golden bundle file {bundle / 'stages.eager.npz'} cannot be read"
                               f" (device gone){TAIL}")


def test_the_array_file_size_limit_just_below_at_and_above(bundle, monkeypatch):
    size = (bundle / "stages.eager.npz").stat().st_size
    assert max(p.stat().st_size for p in bundle.iterdir()) == size
    for limit in (size + 1, size):
        monkeypatch.setattr(store, "MAX_FILE_BYTES", limit)
        assert store.load_bundle(bundle).stages["b"].shape == (BIG,)
    monkeypatch.setattr(store, "MAX_FILE_BYTES", size - 1)
    assert refusal(bundle) == (f"golden bundle file {bundle / 'stages.eager.npz'} cannot be read"
                               f" (it is {size} bytes, more than the {size - 1} envaudit"
                               f" reads){TAIL}")


def test_an_array_file_with_another_checksum(bundle):
    (bundle / "stages.eager.npz").write_bytes(b"")
    reseal(bundle, _set("files", "stages.eager.npz", value="ab" * 32))
    assert refusal(bundle) == (f"golden bundle file {bundle / 'stages.eager.npz'} is corrupt or was"
                               " modified (sha256 e3b0c44298fc1c14..., manifest says"
                               " abababababababab...); restore it or re-record with"
                               " 'envaudit record --force'")


def test_an_unreadable_array_file_is_named(bundle):
    (bundle / "twin.npz").write_bytes(b"garbage")
    reseal(bundle)
    assert refusal(bundle) == (f"golden bundle file {bundle / 'twin.npz'} is unreadable"
                               f" (File is not a zip file){TAIL}")


@pytest.mark.parametrize(("listed", "count"), [(["b"], 1), (["a", "b", "c"], 3), (["a", "z"], 2)],
                         ids=["one fewer", "one more", "one renamed"])
def test_arrays_other_than_the_manifest_lists(bundle, listed, count):
    reseal(bundle, _set("arrays", "stages.eager", value=listed))
    assert refusal(bundle) == (f"golden bundle file {bundle / 'stages.eager.npz'} holds 2 arrays,"
                               f" its manifest lists {count}{TAIL}")


@pytest.mark.parametrize(("group", "value"), [("stages", np.nan), ("probes", -np.inf),
                                              ("twin", np.inf)])
def test_a_non_finite_float_is_refused(tmp_path, fingerprint, group, value):
    arrays = small_arrays()
    name = next(iter(arrays[group]))
    arrays[group][name] = np.array([1.0, value], arrays[group][name].dtype)
    target = write_small(tmp_path / "bundle", fingerprint, **arrays)
    where = "stages.eager" if group == "stages" else group
    assert refusal(target) == (f"golden array {where}/{name} holds NaN or infinity, which no"
                               f" comparison can use{TAIL}")


def test_integers_are_never_non_finite(tmp_path, fingerprint):
    extreme = {"i": np.array([np.iinfo(np.int64).min], np.int64),
               "u": np.array([np.iinfo(np.uint64).max], np.uint64)}
    target = write_small(tmp_path / "bundle", fingerprint, probes=extreme)
    assert store.load_bundle(target).probes["u"].tolist() == [18446744073709551615]


# --- check_writable ---------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to a folder", "dangling"])
def test_a_symlink_is_never_written(tmp_path, dangling):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / ("gone" if dangling else ""))
    with pytest.raises(EnvauditError) as error:
        store.check_writable(link, force=True)
    assert str(error.value) == (f"{link} is a symbolic link; pass the folder it points to, or"
                                " another path (envaudit never replaces a link)")


def test_nothing_or_an_empty_folder_may_be_written(tmp_path):
    assert store.check_writable(tmp_path / "new", force=False) is None
    (tmp_path / "empty").mkdir()
    assert store.check_writable(tmp_path / "empty", force=False) is None


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.write_text("notes"), "it is a file"),
    (lambda p: (p.mkdir(), (p / "x").write_text("")), "it has no manifest.json"),
], ids=["a file", "a foreign folder"])
def test_what_envaudit_did_not_write_is_refused(tmp_path, make, problem):
    target = tmp_path / "target"
    make(target)
    with pytest.raises(EnvauditError) as error:
        store.check_writable(target, force=True)
    assert str(error.value) == (f"{target} is not an envaudit bundle ({problem}); choose another"
                                " path (envaudit never replaces what it did not write)")


def test_an_existing_bundle_needs_force(bundle):
    assert store.check_writable(bundle, force=True) is None
    with pytest.raises(EnvauditError) as error:
        store.check_writable(bundle, force=False)
    assert str(error.value) == (f"golden bundle {bundle} already exists; pass --force to replace"
                                " it, or choose another --golden path")


# --- write_bundle -----------------------------------------------------------------------------


def test_write_bundle_does_not_replace_or_redact_by_default(bundle, fingerprint):
    with pytest.raises(EnvauditError, match="already exists; pass --force"):
        store.write_bundle(bundle, fingerprint=fingerprint, workload=WORKLOAD, images=(),
                           **small_arrays())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["redacted"] is False


def test_write_bundle_records_what_it_is_told(tmp_path, fingerprint):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    target = write_small(tmp_path / "bundle", fingerprint, redacted=True)
    text = (target / "manifest.json").read_text()
    assert text.startswith('{\n  "schema": "envaudit.golden/2",\n  "envaudit_version": "')
    assert text.endswith('"\n}\n')
    manifest = json.loads(text)
    assert manifest["redacted"] is True
    assert manifest["envaudit_version"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", manifest["created_at"])
    created = datetime.fromisoformat(manifest["created_at"])
    assert before <= created <= before + timedelta(seconds=60)


def test_a_parent_that_cannot_hold_a_folder(tmp_path, fingerprint):
    (tmp_path / "file").write_text("")
    with pytest.raises(EnvauditError) as error:
        write_small(tmp_path / "file" / "bundle", fingerprint)
    assert str(error.value) == (f"cannot write under {tmp_path / 'file'}: File exists; choose a"
                                " writable --golden path")


@pytest.mark.parametrize(("failure", "why"), [
    (OSError(28, "No space left on device"), "No space left on device"),
    (OSError("quota"), "quota"),
], ids=["with a reason", "without a reason"])
def test_a_failed_write_is_one_message_and_leaves_nothing(tmp_path, fingerprint, monkeypatch,
                                                          failure, why):
    def fail(path: Path, data: bytes) -> None:
        raise failure

    monkeypatch.setattr(store, "_write_synced", fail)
    target = tmp_path / "bundle"
    with pytest.raises(EnvauditError) as error:
        write_small(target, fingerprint)
    assert str(error.value) == (f"cannot write golden bundle {target}: {why}; free space or choose"
                                " another --golden path (nothing was changed)")
    assert list(tmp_path.iterdir()) == []


# --- default_bundle_path and resolve_golden ---------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Z", "0", "9", "_", "-", "...", ".hidden", "a.b-c_D9",
                                  "x" * 255])
def test_plain_names_are_folders_under_the_data_home(monkeypatch, name):
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert store.default_bundle_path(name) == Path("/data/envaudit/golden") / name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/", "a b", "é", "a\n", "a*"])
def test_other_names_are_refused(name):
    with pytest.raises(EnvauditError) as error:
        store.default_bundle_path(name)
    assert str(error.value) == (f"bundle name {name!r} is not a plain name; use letters, digits,"
                                " . _ -")


def test_the_default_name_is_default(monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert store.default_bundle_path() == Path("/data/envaudit/golden/default")


@pytest.mark.parametrize("xdg", [None, ""], ids=["unset", "empty"])
def test_without_a_data_home_the_bundle_is_under_home(monkeypatch, xdg):
    monkeypatch.setenv("HOME", "/home/tester")
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME")
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    assert store.default_bundle_path("x") == Path("/home/tester/.local/share/envaudit/golden/x")


def test_resolve_golden_prefers_the_given_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store.resolve_golden("some/where") == Path("some/where")
    assert store.resolve_golden(Path("/abs")) == Path("/abs")


def test_resolve_golden_takes_the_users_bundle_only_with_a_manifest_file(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    user = tmp_path / "envaudit" / "golden" / "default"
    assert store.resolve_golden(None) == store.REFERENCE_BUNDLE
    (user / "manifest.json").mkdir(parents=True)
    assert store.resolve_golden(None) == store.REFERENCE_BUNDLE
    (user / "manifest.json").rmdir()
    (user / "manifest.json").write_text("{}")
    assert store.resolve_golden(None) == user


# --- properties: bundle loading (any corruption -> exit 2) -------------------------------------

_VALID_NPY = npy(np.array([1.5, -2.0, 3.25], np.float32))


def _flipped(data: bytes, at: int, mask: int) -> bytes:
    moved = bytearray(data)
    moved[at % len(moved)] ^= mask
    return bytes(moved)


MEMBER_BYTES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda tail: _VALID_NPY[:10] + tail),  # magic, then anything
    st.integers(0, len(_VALID_NPY)).map(lambda n: _VALID_NPY[:n]),
    st.builds(_flipped, st.just(_VALID_NPY), st.integers(0, 10_000), st.integers(1, 255)),
)


@given(member=MEMBER_BYTES, deflate=st.booleans())
def test_any_bytes_as_an_npz_member_load_or_are_refused(pristine, member, deflate):
    with tempfile.TemporaryDirectory() as folder:
        copy_ = Path(shutil.copytree(pristine, Path(folder) / "bundle"))
        method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        (copy_ / "probes.npz").write_bytes(zipped({"p.npy": member}, method))
        reseal(copy_)
        try:
            loaded = store.load_bundle(copy_)
        except EnvauditError:
            return
        # Accepted only when the member is a finite numeric .npy that NumPy itself reads.
        array = np.load(io.BytesIO(member), allow_pickle=False)
        assert array.dtype.kind in "biuf" and np.isfinite(array).all()
        assert loaded.probes["p"].tobytes() == array.tobytes()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=8,
)


def _text(v: Any) -> bool:
    return isinstance(v, str)


# Which substituted values a bundle may still load with; any other value must be refused.
FIELDS: dict[tuple[str, ...], Callable[[Any], bool]] = {
    ("schema",): lambda v: v == store.SCHEMA,
    ("envaudit_version",): _text,
    ("created_at",): _text,
    ("workload",): lambda v: False,
    ("workload", "id"): _text,
    ("workload", "version"): _text,
    ("workload", "assets"): lambda v: isinstance(v, dict) and all(
        isinstance(x, str) and re.fullmatch("[0-9a-f]{64}", x) for x in v.values()),
    ("workload", "timings"): lambda v: isinstance(v, dict) and all(
        type(x) in (int, float) for x in v.values()),
    ("images",): lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    ("arrays",): lambda v: False,
    ("arrays", "stages"): lambda v: isinstance(v, list) and sorted(map(str, v)) == ["a", "b"]
    and all(isinstance(x, str) for x in v),
    ("files",): lambda v: False,
    ("files", "twin.npz"): lambda v: False,
    ("fingerprint",): lambda v: False,
    ("fingerprint", "fingerprint_id"): _text,
    ("redacted",): lambda v: isinstance(v, bool),
}


@given(field=st.sampled_from(sorted(FIELDS)), value=JSON)
def test_any_json_value_in_a_manifest_field_loads_only_if_valid(pristine, field, value):
    with tempfile.TemporaryDirectory() as folder:
        copy_ = Path(shutil.copytree(pristine, Path(folder) / "bundle"))
        reseal(copy_, _set(*field, value=value))
        try:
            store.load_bundle(copy_)
        except EnvauditError:
            assert not FIELDS[field](value), (field, value)
            return
        assert FIELDS[field](value), (field, value)


MODES_ORDER = ("'modes' must list recorded modes in the order eager, graph, xla, tflite,"
               " tflite-float16, tflite-dynamic-range, onnx")


@pytest.mark.parametrize(("edit", "expected"), [
    (_set("modes", value=[]), MODES_ORDER),
    (_set("modes", value=["graph", "eager"]),
     MODES_ORDER),
    (_set("modes", value=["turbo"]),
     MODES_ORDER),
    (_set("modes", value="eager"), MODES_ORDER),
    (_set("not_run", value={"eager": "no"}), "'not_run' must map modes that did not run to the"
                                             " reason"),
    (_set("not_run", value={"xla": 5}), "'not_run' must map modes that did not run to the reason"),
    (_set("not_run", value={"turbo": "no"}), "'not_run' must map modes that did not run to the"
                                             " reason"),
    (_set("not_run", value=[]), "'not_run' must map modes that did not run to the reason"),
    (_set("outside_xla", value={"nms": 1}), "'outside_xla' must map stages to what ran them"),
    (_set("outside_xla", value=["nms"]), "'outside_xla' must map stages to what ran them"),
    (_drop("modes"), "it has no 'modes'"),
], ids=["no modes", "modes out of order", "unknown mode", "modes as text", "not_run of a recorded",
        "not_run reason a number", "not_run unknown mode", "not_run a list", "outside a number",
        "outside a list", "modes missing"])
def test_each_malformed_mode_field_names_its_problem(valid, edit, expected):
    manifest = copy.deepcopy(valid)
    edit(manifest)
    assert store._manifest_problem(manifest) == expected


def test_a_schema_1_manifest_needs_no_mode_fields(valid):
    manifest = copy.deepcopy(valid)
    for key in ("modes", "not_run", "outside_xla"):
        manifest.pop(key)
    manifest["schema"] = store.SCHEMA_V1
    assert store._manifest_problem(manifest) == ("'files' must list exactly stages.npz,"
                                                 " probes.npz, twin.npz, detections.npz")
    assert store.array_groups(manifest) == ("stages", "probes", "twin", "detections")
    manifest["modes"] = ["eager"]
    assert store._manifest_problem(manifest).startswith(
        "it has fields this envaudit does not know: 'modes'")
