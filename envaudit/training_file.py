"""A ``TrainingRecord`` kept in files: ``NAME.npz`` (the arrays) beside ``NAME.json`` (everything
else, the arrays' names, dtypes and shapes in computing order, and the SHA-256 of the ``.npz``).

A record may come from another machine or another person, so reading it is reading a stranger's
data: the JSON is read within bounds (``untrusted``), every field is type-checked, the ``.npz``
must have the SHA-256 the JSON states and hold exactly the arrays it lists, with those dtypes and
shapes, and its members' sizes are checked before NumPy inflates them; nothing is ever unpickled.
A checksum proves the two files belong together, not who wrote them.

Each file is written to a temporary name beside it, synced and renamed into place, so neither is
ever half-written; a crash between the two renames leaves a pair whose checksum no longer
matches, which ``load`` refuses rather than misreads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from envaudit import untrusted
from envaudit.errors import EnvauditError
from envaudit.seeds import SeedReport
from envaudit.training_record import TrainingRecord
from envaudit.workload.training_spec import MAX_STEPS

SCHEMA = "envaudit.training-record/1"
# The largest record read: 1000 steps of a model of 250k weights is about 2 GB of float32; a
# record is a few steps, and a bigger file is not one envaudit wrote for a check.
MAX_NPZ_BYTES = 2 << 30
MAX_JSON_BYTES = 16 << 20
_FIELDS = ("schema", "steps", "mode", "seeds", "seconds", "tensorflow", "envaudit_version",
           "created_at", "arrays", "npz_sha256")
_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.npz`` and ``.json`` of a record at ``path`` (``.npz`` is added when missing)."""
    npz = Path(path)
    if npz.suffix != ".npz":
        npz = npz.with_name(npz.name + ".npz")
    return npz, npz.with_suffix(".json")


def save(record: TrainingRecord, path: str | os.PathLike[str]) -> Path:
    """Write ``record`` to ``path`` (its ``.npz``) and the ``.json`` beside it; returns the
    ``.npz`` path. An existing record there is replaced."""
    npz, sidecar = paths(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **record.arrays)
    data = buffer.getvalue()
    body = {"schema": SCHEMA, **record.to_dict(),
            "arrays": [{"name": n, "dtype": a.dtype.str, "shape": list(a.shape)}
                       for n, a in record.arrays.items()],
            "npz_sha256": hashlib.sha256(data).hexdigest()}
    text = json.dumps(body, indent=1).encode()
    temps = [_temp(npz, data), _temp(sidecar, text)]
    try:
        os.replace(temps[0], npz)
        os.replace(temps[1], sidecar)
    finally:
        for temp in temps:
            if temp.exists():
                temp.unlink()
    return npz


def _temp(target: Path, data: bytes) -> Path:
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    with open(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


def load(path: str | os.PathLike[str]) -> TrainingRecord:
    """The record at ``path``, verified (``EnvauditError`` for a missing, corrupt or altered
    one, saying which file and what)."""
    npz, sidecar = paths(path)
    body = _read(sidecar, MAX_JSON_BYTES)
    try:
        listed = _fields(untrusted.loads(body))
    except (untrusted.Refused, ValueError) as exc:
        raise _refused(sidecar, f"{exc}") from None
    data = _read(npz, MAX_NPZ_BYTES)
    if hashlib.sha256(data).hexdigest() != listed["npz_sha256"]:
        raise _refused(npz, "its SHA-256 is not the one its .json states (corrupt or altered)")
    arrays = _arrays(npz, data, listed["arrays"])
    return TrainingRecord(listed["steps"], listed["mode"], listed["seeds"], listed["seconds"],
                          listed["tensorflow"], listed["envaudit_version"],
                          listed["created_at"], arrays)


def _refused(file: Path, why: str) -> EnvauditError:
    return EnvauditError(f"training record {file} is refused: {why}; record it again with"
                         " envaudit.training.record and save")


def _read(file: Path, limit: int) -> bytes:
    try:
        return untrusted.read_file(file, limit)
    except FileNotFoundError:
        raise EnvauditError(f"no training record at {file}; pass the path"
                            " envaudit.training.save wrote") from None
    except untrusted.Refused as exc:
        raise _refused(file, f"it {exc}") from None
    except OSError as exc:
        raise EnvauditError(f"cannot read {file}: {exc.strerror or exc}; check its"
                            " permissions") from None


def _fields(body: Any) -> dict[str, Any]:
    """The sidecar's fields, each of its type (``ValueError`` naming the first that is not)."""
    if not isinstance(body, dict) or sorted(body) != sorted(_FIELDS):
        raise ValueError(f"its fields are not {', '.join(_FIELDS)}")
    if body["schema"] != SCHEMA:
        raise ValueError(f"its schema is not {SCHEMA}")
    steps = body["steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"'steps' is not a number of steps from 1 to {MAX_STEPS}")
    if not isinstance(body["seconds"], (int, float)) or isinstance(body["seconds"], bool):
        raise ValueError("'seconds' is not a number")
    for key in ("mode", "tensorflow", "envaudit_version", "created_at", "npz_sha256"):
        if not isinstance(body[key], str):
            raise ValueError(f"'{key}' is not text")
    arrays = body["arrays"]
    if not isinstance(arrays, list) or not all(
            isinstance(a, dict) and sorted(a) == ["dtype", "name", "shape"]
            and isinstance(a["name"], str) and isinstance(a["dtype"], str)
            and isinstance(a["shape"], list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for n in a["shape"]) for a in arrays):
        raise ValueError("'arrays' does not list each array's name, dtype and shape")
    return {**body, "seeds": SeedReport.from_dict(body["seeds"]), "seconds": float(body["seconds"])}


def _arrays(npz: Path, data: bytes, listed: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz``, exactly those listed, each of its listed dtype and shape."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            claimed = sum(info.file_size for info in archive.infolist())
        if claimed > MAX_NPZ_BYTES:
            raise _refused(npz, f"its arrays would inflate to {claimed} bytes")
        with np.load(io.BytesIO(data), allow_pickle=False) as held:
            arrays = {name: held[name] for name in held.files}
    except _ERRORS as exc:
        raise _refused(npz, f"it is not a readable .npz ({exc})") from None
    if sorted(arrays) != sorted(a["name"] for a in listed):
        raise _refused(npz, "it does not hold exactly the arrays its .json lists")
    for entry in listed:
        array = arrays[entry["name"]]
        if array.dtype.kind not in "biuf" or array.dtype.str != entry["dtype"] or \
                list(array.shape) != entry["shape"]:
            raise _refused(npz, f"array {entry['name']!r} is not the {entry['dtype']}"
                           f" {entry['shape']} its .json lists")
    return {entry["name"]: arrays[entry["name"]] for entry in listed}
