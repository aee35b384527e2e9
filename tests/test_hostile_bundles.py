"""Property: whatever a stranger does to a golden bundle or a fingerprint file -- wrong types,
missing or unknown keys, renamed, dropped or extra arrays, other dtypes and shapes, NaN, truncated
or bit-flipped files, all re-sealed with valid checksums -- ``check`` and ``diff`` end in exit 2
with one line on stderr, nothing on stdout, no traceback and no "internal error".

Plain ``random`` with fixed seeds: every run tries the same 300 corruptions, and a failure names
the case that broke. Every case is refused before TensorFlow is imported, so it runs in-process.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import reseal

from envaudit import cli, store

WRONG_VALUES: tuple[Any, ...] = (5, -1.5, True, "x", [], {}, [1, "a"], {"a": 1}, None)
# (path in the manifest, the one type a valid value has). None is a wrong value where the
# field is required, and allowed (absent) for fingerprint fields that probes may not fill.
MANIFEST_FIELDS: tuple[tuple[tuple[str, ...], type], ...] = (
    (("schema",), str), (("envaudit_version",), str), (("created_at",), str),
    (("workload",), dict), (("workload", "id"), str), (("workload", "version"), str),
    (("workload", "assets"), dict), (("workload", "timings"), dict), (("images",), list),
    (("arrays",), dict), (("arrays", "stages.eager"), list), (("arrays", "probes"), list),
    (("arrays", "twin"), list), (("arrays", "stages.xla"), list), (("files",), dict),
    (("files", "stages.graph.npz"), str), (("files", "twin.npz"), str), (("fingerprint",), dict),
    (("modes",), list), (("not_run",), dict), (("outside_xla",), dict),
    (("fingerprint", "schema"), str), (("fingerprint", "fingerprint_id"), str),
    (("fingerprint", "cpu", "flags"), list), (("fingerprint", "cpu", "usable_cores"), int),
    (("fingerprint", "env"), dict), (("fingerprint", "os", "hostname"), str),
    (("redacted",), bool),
)
REQUIRED: tuple[tuple[str, ...], ...] = tuple(
    path for path, _type in MANIFEST_FIELDS if path[0] != "redacted" and len(path) <= 2)


def wrong_value(rng: random.Random, kind: type) -> Any:
    while True:
        value = rng.choice(WRONG_VALUES)
        if type(value) is not kind:
            return value


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {}) if isinstance(tree.get(key), dict) else tree[key]
    tree[path[-1]] = value


def manifest_corruption(rng: random.Random) -> tuple[str, Callable[[Path], None]]:
    kind = rng.choice(["type", "missing", "truncate", "names", "files", "unknown"])
    if kind == "type":
        path, valid = rng.choice(MANIFEST_FIELDS)
        value = wrong_value(rng, valid)
        if path[0] == "fingerprint" and len(path) > 2 and value is None:
            value = 7  # an absent probe field is allowed; a wrong type is not
        return f"{'.'.join(path)} = {value!r}", lambda b: reseal(
            b, lambda m: set_path(m, path, value))
    if kind == "missing":
        path = rng.choice(REQUIRED)
        return f"no {'.'.join(path)}", lambda b: reseal(b, lambda m: _delete(m, path))
    if kind == "truncate":
        def truncate(bundle: Path) -> None:
            text = (bundle / store.MANIFEST).read_text()
            (bundle / store.MANIFEST).write_text(text[: rng.randrange(len(text) - 1)])
        return "truncated manifest", truncate
    if kind == "names":
        group = rng.choice(["stages.eager", "stages.graph", "stages.xla", "probes", "twin"])
        how = rng.choice(["drop", "ghost", "twice", "rename", "traversal"])

        def rename(m: dict[str, Any]) -> None:
            names = m["arrays"][group]
            if how == "drop":
                names.pop(rng.randrange(len(names)))
            elif how == "ghost":
                names.append("ghost")
            elif how == "twice":
                names.append(names[0])
            elif how == "rename":
                names[rng.randrange(len(names))] += "_"
            else:
                names[0] = "../" + names[0]
        return f"arrays.{group}: {how}", lambda b: reseal(b, rename)
    if kind == "files":
        entry = rng.choice(["../stages.npz", "/etc/hostname", "extra.npz", ""])
        return f"files[{entry!r}]", lambda b: reseal(
            b, lambda m: m["files"].__setitem__(entry, "0" * 64))
    key = rng.choice(["surprise", "Schema", "files "])
    return f"unknown key {key!r}", lambda b: reseal(b, lambda m: m.__setitem__(key, 1))


def _delete(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        tree = tree[key]
    del tree[path[-1]]


def npz_corruption(rng: random.Random, golden: store.GoldenBundle) -> tuple[
        str, Callable[[Path], None]]:
    group = rng.choice(store.array_groups(golden.manifest))
    file = f"{group}.npz"
    kind_of, _, mode = group.partition(".")
    arrays = dict(golden.stages_by_mode[mode] if kind_of == "stages" else
                  golden.training[mode] if kind_of == "training" else getattr(golden, group))
    name = rng.choice(sorted(arrays))
    kind = rng.choice(["truncate", "flip", "dtype", "shape", "nonfinite", "drop", "extra"])
    if kind == "truncate":
        def truncate(bundle: Path) -> None:
            data = (bundle / file).read_bytes()
            (bundle / file).write_bytes(data[: rng.randrange(len(data))])
            reseal(bundle)
        return f"{file} truncated", truncate
    if kind == "flip":
        def flip(bundle: Path) -> None:
            original = (bundle / file).read_bytes()
            while True:  # a flip that still loads the same arrays is no corruption; try again
                data = bytearray(original)
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                if not _loads_the_same(bytes(data), arrays):
                    break
            (bundle / file).write_bytes(bytes(data))
            reseal(bundle)
        return f"{file} bit flipped", flip
    array = arrays[name]
    if kind == "dtype":
        target = {"f": np.float16, "i": np.int64, "u": np.int16}.get(array.dtype.kind, np.float16)
        arrays[name] = array.astype(target)
    elif kind == "shape":
        arrays[name] = array.reshape(-1)[:-1] if array.size > 1 else np.zeros(3, array.dtype)
    elif kind == "nonfinite":
        if array.dtype.kind != "f" or array.size == 0:
            arrays[name] = array.astype(np.float64) if array.size else np.full(2, np.nan)
        else:
            arrays[name] = array.copy()
            arrays[name].reshape(-1)[rng.randrange(array.size)] = rng.choice(
                [np.nan, np.inf, -np.inf])
    elif kind == "drop":
        del arrays[name]
    else:
        arrays["ghost"] = np.zeros(3, np.float32)

    def rewrite(bundle: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        (bundle / file).write_bytes(buffer.getvalue())
        reseal(bundle)
    return f"{file}: {kind} {group}/{name}", rewrite


def _loads_the_same(data: bytes, arrays: dict[str, np.ndarray]) -> bool:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            loaded = {k: npz[k] for k in npz.files}
    except Exception:  # anything that fails to load is a corruption, as wanted
        return False
    return loaded.keys() == arrays.keys() and all(
        loaded[k].dtype == v.dtype and loaded[k].tobytes() == v.tobytes()
        for k, v in arrays.items())


def fingerprint_corruption(rng: random.Random, text: str) -> tuple[str, str]:
    data = json.loads(text)
    kind = rng.choice(["type", "truncate", "deep", "schema"])
    if kind == "truncate":
        return "truncated", text[: rng.randrange(len(text) - 1)]
    if kind == "deep":
        data["cpu"] = json.loads("[" * 60 + "]" * 60)
        return "nested 60 deep", json.dumps(data)
    if kind == "schema":
        data["schema"] = rng.choice(["envaudit.fingerprint/0", 1, None, "other/1"])
        return f"schema {data['schema']!r}", json.dumps(data)
    path, valid = rng.choice([f for f in MANIFEST_FIELDS
                              if f[0][0] == "fingerprint" and len(f[0]) > 1])
    value = wrong_value(rng, valid)
    if len(path) > 2 and value is None:
        value = 7
    set_path(data, path[1:], value)
    return f"{'.'.join(path[1:])} = {value!r}", json.dumps(data)


def assert_refused(capsys, case: str, *args: str) -> None:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (case, code, err)
    assert len(lines) == 1, (case, err)
    assert lines[0].startswith("envaudit: error: "), (case, err)
    assert "internal error" not in err and "Traceback" not in err, (case, err)
    assert out == "", (case, out)


@pytest.fixture(scope="module")
def pristine(golden_bundle: Path) -> store.GoldenBundle:
    return store.load_bundle(golden_bundle)


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_manifests_are_refused_by_check_and_diff(golden_bundle, tmp_path, capsys,
                                                           seed):
    rng = random.Random(seed)
    fingerprint = tmp_path / "fp.json"
    fingerprint.write_text(json.dumps(store.load_bundle(golden_bundle).fingerprint.data))
    for i in range(40):
        case, corrupt = manifest_corruption(rng)
        bundle = tmp_path / f"b{i}"
        shutil.copytree(golden_bundle, bundle)
        corrupt(bundle)
        assert_refused(capsys, f"seed {seed} case {i}: {case}", "check", "--golden", str(bundle))
        assert_refused(capsys, f"seed {seed} case {i}: {case}", "diff", str(bundle),
                       str(fingerprint))
        shutil.rmtree(bundle)


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_array_files_are_refused_by_check(golden_bundle, pristine, tmp_path, capsys,
                                                    seed):
    rng = random.Random(100 + seed)
    for i in range(30):
        case, corrupt = npz_corruption(rng, pristine)
        bundle = tmp_path / f"b{i}"
        shutil.copytree(golden_bundle, bundle)
        corrupt(bundle)
        assert_refused(capsys, f"seed {seed} case {i}: {case}", "check", "--golden", str(bundle))
        shutil.rmtree(bundle)


def test_corrupted_fingerprint_files_are_refused_by_diff(golden_bundle, tmp_path, capsys):
    rng = random.Random(200)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(store.load_bundle(golden_bundle).fingerprint.data))
    for i in range(60):
        case, text = fingerprint_corruption(rng, good.read_text())
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(text)
        assert_refused(capsys, f"case {i}: {case}", "diff", str(good), str(bad))
        assert_refused(capsys, f"case {i}: {case}", "diff", str(bad), str(good))
