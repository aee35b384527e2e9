"""Golden bundles: read, verify, write atomically. The only module that touches golden files.

A bundle is a folder: ``manifest.json`` plus ``.npz`` arrays. The manifest holds the schema, the
workload id/version and the SHA-256 of the assets it used, the recording environment's full
fingerprint, the creation time, the SHA-256 of every other file, and a checksum of itself. A bundle
whose checksums do not match is refused: a silently edited golden would make every later check lie.

A bundle is data from someone else: the checksums prove integrity, not authorship. So reading
never lets its content pick a path (the manifest may list only the bundle's own file names, and
each must be a regular file inside the folder), every manifest field is type-checked before use,
and ``.npz`` members are size-checked before NumPy inflates them (no pickles, ever).

Writes go to ``.<name>.partial-<pid>-*`` beside the target (``bundle_files.py`` does the file
system work) and are swapped into place, so a bundle exists whole or not at all, and a replaced
bundle stays reachable at its path at every instant. An existing bundle is replaced only with
``force``, and only when it is exactly a bundle envaudit wrote; nothing else is ever replaced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from envaudit import bundle_budget, bundle_files, runtimes, tf32, untrusted
from envaudit import modes as mode_registry
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Fingerprint
from envaudit.shipped import shipped
from envaudit.tf32 import Tf32State
from envaudit.usermodel import WORKLOAD_ID as USER_MODEL
from envaudit.usermodel.spec import workload_problem
from envaudit.usermodel.training import settings_problem
from envaudit.version import __version__
from envaudit.workload import training_spec

SCHEMA = "envaudit.golden/2"
SCHEMA_V1 = "envaudit.golden/1"  # recorded by envaudit 0.1: eager mode only; still read
MANIFEST = bundle_files.MANIFEST
REFERENCE_BUNDLE = shipped("reference")
# Schema 1's array groups, one .npz file each; schema 2 has a stages group per recorded mode
# ("stages.eager", ...) and derives detections from each mode's nms stage (``array_groups``).
ARRAY_GROUPS = ("stages", "probes", "twin", "detections")
# The largest array file envaudit reads, and the largest array inside it once inflated. The canary
# bundle is 5 MiB; the limits are there so that a forged header or a zip bomb is refused before
# NumPy allocates what it claims. All arrays together are held to the bundle's budget
# (``bundle_budget``), checked before any is inflated.
MAX_FILE_BYTES = 1 << 30
MAX_ARRAY_BYTES = 1 << 30
# A manifest is 16 KB for the canary; a user model's with thousands of layers stays under 1 MB.
MAX_MANIFEST_BYTES = 16 << 20
# Array names inside an .npz: plain names, as the workload writes them.
_ARRAY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Every field a manifest must have ("redacted", "devices" and "tf32" are optional: bundles before
# they were added lack them);
# schema 2 adds the recorded modes, the modes that could not run and why, and what the xla mode
# runs outside XLA.
_MANIFEST_KEYS = ("schema", "envaudit_version", "created_at", "workload", "images", "arrays",
                  "files", "fingerprint", "manifest_sha256")
_MANIFEST_KEYS_V2 = (*_MANIFEST_KEYS, "modes", "not_run", "outside_xla")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GoldenBundle:
    path: Path
    manifest: Mapping[str, Any]
    fingerprint: Fingerprint
    stages_by_mode: Mapping[str, Mapping[str, np.ndarray]]  # recorded modes, pipeline order
    probes: Mapping[str, np.ndarray]
    twin: Mapping[str, np.ndarray]  # float64 twin outputs, stages after "decode" (canary only)
    detections: Mapping[str, np.ndarray]  # schema 1 only: image, boxes, classes, scores
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)  # a user model's inputs
    # The canary's training steps in each mode they were recorded in (``workload/training.py``);
    # empty for a bundle recorded without them.
    training: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)

    @property
    def is_user_model(self) -> bool:
        return is_user_model(self.manifest)

    @property
    def devices(self) -> Mapping[str, str]:
        """The device that computed each array (``keyed_arrays`` keys); empty for a bundle
        recorded before envaudit kept them."""
        return self.manifest.get("devices", {}).get("arrays", {})

    @property
    def device_names(self) -> Mapping[str, str]:
        return self.manifest.get("devices", {}).get("names", {})

    @property
    def tf32(self) -> Tf32State | None:
        """TF32 as the recording ran (``envaudit/tf32.py``); None for a bundle recorded before
        envaudit recorded it."""
        return tf32.from_manifest(self.manifest.get("tf32"))

    @property
    def schema(self) -> str:
        return str(self.manifest["schema"])

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.stages_by_mode)

    @property
    def stages(self) -> Mapping[str, np.ndarray]:
        """The eager stages when recorded (what schema 1 holds), else the first mode's."""
        return self.stages_by_mode.get("eager") or next(iter(self.stages_by_mode.values()))

    @property
    def not_run(self) -> Mapping[str, str]:
        """Modes the recording environment could not run, and why."""
        return self.manifest.get("not_run", {})

    @property
    def runtimes(self) -> Mapping[str, Mapping[str, Any]]:
        """What converted and ran each converted mode (``envaudit/runtimes.py``)."""
        return self.manifest.get("runtimes", {})

    @property
    def array_count(self) -> int:
        return (sum(len(s) for s in self.stages_by_mode.values()) + len(self.probes)
                + len(self.twin) + len(self.detections) + len(self.inputs)
                + sum(len(t) for t in self.training.values()))

    @property
    def training_steps(self) -> int:
        """How many training steps the bundle holds (0: none)."""
        return training_spec.entry_steps(self.manifest)


def is_user_model(manifest: Mapping[str, Any]) -> bool:
    """Whether a manifest describes a user's model rather than the canary workload."""
    workload = manifest.get("workload")
    return isinstance(workload, dict) and workload.get("id") == USER_MODEL


def array_groups(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The array groups (one ``GROUP.npz`` file each) a manifest of its schema must hold."""
    if manifest.get("schema") == SCHEMA_V1:
        return ARRAY_GROUPS
    modes = manifest.get("modes")
    modes = modes if isinstance(modes, list) else []
    last = "inputs" if is_user_model(manifest) else "twin"
    trained = training_spec.entry_modes(manifest)
    return (*(f"stages.{mode}" for mode in modes), "probes", last,
            *(f"training.{mode}" for mode in trained))


def default_bundle_path(name: str = "default") -> Path:
    """``$XDG_DATA_HOME/envaudit/golden/NAME`` (``~/.local/share`` when unset)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
        raise EnvauditError(f"bundle name {name!r} is not a plain name; use letters, digits, . _ -")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "envaudit" / "golden" / name


def resolve_golden(golden: str | os.PathLike[str] | None) -> Path:
    """The bundle a check uses: ``golden``, else the user's default bundle, else the shipped one."""
    if golden is not None:
        return Path(golden)
    user = default_bundle_path()
    if (user / MANIFEST).is_file():
        return user
    return REFERENCE_BUNDLE


# --- reading ----------------------------------------------------------------------------------


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# Folder entries looked at for a "did you mean": a typo next to a huge folder stays instant.
_NEAR_LOOKED_AT = 1000


def _missing(path: Path) -> str:
    """No folder at ``path``: a likely typo names the bundle meant; recording is suggested only
    when no existing folder is close (never into a misspelt path)."""
    near = _near(path, depth=3)
    if near is not None:
        return f"no golden bundle at {path}; did you mean {near}?"
    return (f"no golden bundle at {path}; pass the folder 'envaudit record' wrote, or record one"
            f" there with 'envaudit record --golden {path}'")


def _near(path: Path, depth: int) -> Path | None:
    """An existing folder whose path differs from ``path`` by a typo in its last ``depth`` parts
    (a folder with a manifest preferred), or None."""
    import difflib
    import itertools

    parent = path.parent
    if parent != path and not parent.is_dir() and depth > 1:
        fixed = _near(parent, depth - 1)
        if fixed is None:
            return None
        parent = fixed
        if (parent / path.name).is_dir():
            return parent / path.name
    try:
        with os.scandir(parent) as entries:
            names = [e.name for e in itertools.islice(entries, _NEAR_LOOKED_AT)
                     if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return None
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
    close.sort(key=lambda name: not (parent / name / MANIFEST).is_file())
    return parent / close[0] if close else None


def _rerecord(problem: str) -> EnvauditError:
    return EnvauditError(f"{problem}; restore the bundle or re-record it with"
                         " 'envaudit record --golden PATH --force'")


def read_manifest(path: Path) -> dict[str, Any]:
    """The verified manifest of the bundle at ``path`` (its own checksum, schema and the type of
    every field envaudit reads checked)."""
    path = Path(path)
    bundle_files.recover(path)  # a --force swap that was killed half-way is undone first
    manifest_path = path / MANIFEST
    if not path.exists():
        raise EnvauditError(_missing(path))
    if not manifest_path.is_file():
        raise EnvauditError(f"{path} is not a golden bundle (no {MANIFEST});"
                            " pass the folder written by 'envaudit record'")
    try:
        manifest = untrusted.loads(bundle_files.read_regular(manifest_path, MAX_MANIFEST_BYTES))
    except untrusted.TooDeep as exc:  # no manifest nests deeper than 7 levels
        raise _rerecord(f"{manifest_path} {exc} (corrupt or forged)") from None
    except untrusted.Refused:
        raise _rerecord(f"{manifest_path} is not valid JSON (corrupt or edited)") from None
    except OSError as exc:
        raise EnvauditError(f"cannot read {manifest_path}: {exc.strerror or exc}; check the"
                            " path and its permissions") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("schema"), str) or \
            not manifest["schema"].startswith("envaudit.golden/"):
        raise EnvauditError(f"{manifest_path} is not an envaudit golden manifest;"
                            " pass the folder written by 'envaudit record'")
    if manifest["schema"] not in (SCHEMA, SCHEMA_V1):
        raise EnvauditError(f"golden bundle {path} has schema {manifest['schema']!r}, this"
                            f" envaudit {__version__} reads {SCHEMA_V1!r} and {SCHEMA!r};"
                            " re-record it with 'envaudit record --golden PATH --force'")
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise EnvauditError(f"{manifest_path} was modified (its checksum does not match); restore"
                            " the bundle or re-record it with 'envaudit record --force'")
    problem = _manifest_problem(manifest)
    if problem:
        raise _rerecord(f"{manifest_path} is malformed: {problem}")
    return manifest


def _manifest_problem(m: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of a manifest whose checksum matched, or None."""
    keys = _MANIFEST_KEYS if m.get("schema") == SCHEMA_V1 else _MANIFEST_KEYS_V2
    missing = [key for key in keys if key not in m]
    if missing:
        return f"it has no {', '.join(repr(k) for k in missing)}"
    if keys is _MANIFEST_KEYS_V2:
        problem = _modes_problem(m) or ("training" in m and (
            training_spec.manifest_problem(m["training"], m["modes"]) or (
                is_user_model(m) and settings_problem(m["training"]["settings"]))))
        if problem:
            return problem
    groups = array_groups(m)
    files_expected = [f"{group}.npz" for group in groups]
    optional = {"redacted", "devices", "tf32",
                *(["training", "runtimes"] if keys is _MANIFEST_KEYS_V2 else [])}
    unknown = sorted(set(m) - {*keys, *optional})
    if unknown:
        return f"it has fields this envaudit does not know: {', '.join(map(repr, unknown[:5]))}"
    if "devices" in m and not _devices_ok(m["devices"]):
        return ("'devices' must map array keys to devices (CPU:N, GPU:N) and devices to their"
                " names")
    if "runtimes" in m and runtimes.manifest_problem(m["runtimes"], m.get("modes") or []):
        return runtimes.manifest_problem(m["runtimes"], m.get("modes") or [])
    if "tf32" in m and tf32.manifest_problem(m["tf32"]):
        return tf32.manifest_problem(m["tf32"])
    if not isinstance(m["envaudit_version"], str) or not isinstance(m["created_at"], str):
        return "'envaudit_version' and 'created_at' must be text"
    files, arrays, workload = m["files"], m["arrays"], m["workload"]
    if not isinstance(files, dict) or sorted(files) != sorted(files_expected):
        return f"'files' must list exactly {', '.join(files_expected)}"
    if not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in files.values()):
        return "'files' must map each file to its sha256 in hex"
    if not isinstance(arrays, dict) or sorted(arrays) != sorted(groups):
        return f"'arrays' must list the arrays of {', '.join(groups)}"
    for group, names in arrays.items():
        if not isinstance(names, list) or not all(
                isinstance(n, str) and _ARRAY_NAME.fullmatch(n) for n in names) \
                or len(set(names)) != len(names):
            return f"'arrays.{group}' must be a list of distinct plain array names"
    if not isinstance(workload, dict) or not isinstance(workload.get("id"), str) or \
            not isinstance(workload.get("version"), str):
        return "'workload' must name the workload's id and version"
    if is_user_model(m):
        return workload_problem(workload) or _images_problem(m)
    if sorted(workload) != ["assets", "id", "timings", "version"]:
        return "'workload' must hold exactly its id, version, assets and timings"
    assets = workload["assets"]
    if not isinstance(assets, dict) or not all(
            isinstance(v, str) and _SHA256.fullmatch(v) for v in assets.values()):
        return "'workload.assets' must map asset names to sha256 digests"
    timings = workload["timings"]
    if not isinstance(timings, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in timings.values()):
        return "'workload.timings' must map names to seconds"
    return _images_problem(m)


_DEVICE = re.compile(r"(CPU|GPU):\d{1,3}")


def _devices_ok(devices: Any) -> bool:
    if not isinstance(devices, dict) or sorted(devices) != ["arrays", "names"]:
        return False
    arrays, names = devices["arrays"], devices["names"]
    return (isinstance(arrays, dict) and isinstance(names, dict)
            and all(isinstance(k, str) and len(k) <= 200 and isinstance(v, str)
                    and _DEVICE.fullmatch(v) for k, v in arrays.items())
            and all(isinstance(k, str) and _DEVICE.fullmatch(k) and isinstance(v, str)
                    and len(v) <= 200 for k, v in names.items()))


def _images_problem(m: Mapping[str, Any]) -> str | None:
    """The fields every manifest shares after its workload: images, fingerprint, redacted."""
    images = m["images"]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        return "'images' must be a list of names"
    if not isinstance(m["fingerprint"], dict):
        return "'fingerprint' must be an object"
    if not isinstance(m.get("redacted", False), bool):
        return "'redacted' must be true or false"
    return None


def _modes_problem(m: Mapping[str, Any]) -> str | None:
    modes, not_run, outside = m["modes"], m["not_run"], m["outside_xla"]
    known = mode_registry.names()  # read now: a mode registered later is recorded too
    if not isinstance(modes, list) or not modes or \
            [mode for mode in known if mode in modes] != modes:
        return f"'modes' must list recorded modes in the order {', '.join(known)}"
    if not isinstance(not_run, dict) or not all(
            k in known and k not in modes and isinstance(v, str) for k, v in not_run.items()):
        return "'not_run' must map modes that did not run to the reason"
    if not isinstance(outside, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in outside.items()):
        return "'outside_xla' must map stages to what ran them"
    return None


# What zipfile and NumPy raise for a broken archive or a forged .npy header.
_NPZ_ERRORS = (ValueError, OSError, EOFError, KeyError, NotImplementedError, RuntimeError,
               MemoryError, zipfile.BadZipFile, zlib.error, SyntaxError, tokenize.TokenError)


def _claimed_bytes(data: bytes, where: Path, arrays: int | None = None) -> int:
    """What the members of one ``.npz`` claim to inflate to, in sum, read from its zip directory
    (nothing is inflated); refused when the directory is out of proportion to the ``arrays`` the
    manifest lists, holds another number of members, or a member claims more than
    ``MAX_ARRAY_BYTES``. Raises the archive's own errors (``_NPZ_ERRORS``) for a broken one."""
    def unreadable(why: object) -> EnvauditError:
        return _rerecord(f"golden bundle file {where} is unreadable ({why})")

    problem = None if arrays is None else bundle_budget.directory_problem(data, arrays)
    if problem:
        raise unreadable(problem)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    if arrays is not None and len(members) != arrays:
        raise _rerecord(f"golden bundle file {where} holds {len(members)} arrays, its manifest"
                        f" lists {arrays}")
    for info in members:
        if info.file_size > MAX_ARRAY_BYTES:
            raise unreadable(f"member {info.filename!r} would inflate to {info.file_size} bytes")
    return sum(info.file_size for info in members)


def _load_npz(data: bytes, where: Path) -> dict[str, np.ndarray]:
    """The arrays of one ``.npz`` file, refused whole when anything about it is off: not a zip,
    a member that would inflate past ``MAX_ARRAY_BYTES``, a corrupt stream, an object array."""
    def unreadable(why: object) -> EnvauditError:
        return _rerecord(f"golden bundle file {where} is unreadable ({why})")

    try:
        _claimed_bytes(data, where)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except EnvauditError:
        raise
    except _NPZ_ERRORS as exc:
        raise unreadable(exc) from None
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):  # a member without the .npy magic comes as bytes
            raise unreadable(f"member {name!r} is not a NumPy array")
        if array.dtype.kind not in "biuf" or array.dtype.fields is not None:
            raise unreadable(f"array {name!r} has dtype {array.dtype}, not a number type")
    return arrays


def load_bundle(path: str | os.PathLike[str]) -> GoldenBundle:
    """Read and verify a bundle; any mismatch raises EnvauditError (exit 2). Every file is read
    and its checksum and zip directory checked, and the sum of what its arrays claim held to the
    bundle's budget, before any array is inflated."""
    path = Path(path)
    manifest = read_manifest(path)
    budget = bundle_budget.budget(user_model=is_user_model(manifest),
                                  modes=len(manifest.get("modes") or ["eager"]),
                                  schema_v1=manifest["schema"] == SCHEMA_V1,
                                  training=(training_spec.entry_steps(manifest),
                                            len(training_spec.entry_modes(manifest))))
    files = {group: _read_array_file(path / f"{group}.npz", manifest["files"][f"{group}.npz"],
                                     min(MAX_FILE_BYTES, budget.limit))
             for group in array_groups(manifest)}  # names from this module, not the manifest
    claimed = 0
    for group, data in files.items():
        file = path / f"{group}.npz"
        try:
            claimed += _claimed_bytes(data, file, len(manifest["arrays"][group]))
        except _NPZ_ERRORS as exc:
            raise _rerecord(f"golden bundle file {file} is unreadable ({exc})") from None
    if claimed > budget.limit:
        raise _rerecord(f"golden bundle {path} is refused: {budget.exceeded(claimed)}")
    groups: dict[str, dict[str, np.ndarray]] = {}
    for group, data in files.items():
        file = path / f"{group}.npz"
        listed, held = manifest["arrays"][group], _load_npz(data, file)
        if sorted(listed) != sorted(held):
            raise _rerecord(f"golden bundle file {file} holds"
                            f" {len(held)} arrays, its manifest lists {len(listed)}")
        groups[group] = {name: held[name] for name in listed}
        for name, array in groups[group].items():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise _rerecord(f"golden array {group}/{name} holds NaN or infinity, which no"
                                " comparison can use")
    if manifest["schema"] == SCHEMA_V1:
        stages_by_mode = {"eager": groups["stages"]}
    else:
        stages_by_mode = {mode: groups[f"stages.{mode}"] for mode in manifest["modes"]}
    return GoldenBundle(
        path=path,
        manifest=manifest,
        fingerprint=Fingerprint.from_dict(manifest["fingerprint"], f"{path / MANIFEST}"),
        stages_by_mode=stages_by_mode,
        probes=groups["probes"],
        twin=groups.get("twin", {}),
        detections=groups.get("detections", {}),
        inputs=groups.get("inputs", {}),
        training={mode: groups[f"training.{mode}"]
                  for mode in training_spec.entry_modes(manifest)},
    )


def _read_array_file(file: Path, expected: str, limit: int) -> bytes:
    """The bytes of one array file of a bundle, whose sha256 must be ``expected``."""
    try:
        data = bundle_files.read_regular(file, limit)
    except FileNotFoundError:
        raise _rerecord(f"golden bundle file {file} is missing") from None
    except OSError as exc:
        raise _rerecord(f"golden bundle file {file} cannot be read"
                        f" ({exc.strerror or exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise EnvauditError(f"golden bundle file {file} is corrupt or was modified (sha256"
                            f" {actual[:16]}..., manifest says {expected[:16]}...); restore it"
                            " or re-record with 'envaudit record --force'")
    return data


# --- writing ----------------------------------------------------------------------------------


def _npz_bytes(arrays: Mapping[str, np.ndarray], compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def check_writable(target: Path, force: bool) -> None:
    """Refuse early (before any work) a target that must not be written. A killed record's
    leftovers are cleaned up first, so a bundle it had set aside counts as existing."""
    bundle_files.recover(target)
    if target.is_symlink():
        raise EnvauditError(f"{target} is a symbolic link; pass the folder it points to, or"
                            " another path (envaudit never replaces a link)")
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return  # nothing there to protect
    problem = bundle_files.not_ours(target)
    if problem:
        raise EnvauditError(f"{target} is not an envaudit bundle ({problem}); choose another"
                            " path (envaudit never replaces what it did not write)")
    if not force:
        raise EnvauditError(f"golden bundle {target} already exists; pass --force to replace"
                            " it, or choose another --golden path")


def write_bundle(
    target: Path,
    *,
    fingerprint: Fingerprint,
    workload: Mapping[str, Any],
    images: tuple[str, ...],
    stages: Mapping[str, Mapping[str, np.ndarray]],
    probes: Mapping[str, np.ndarray],
    twin: Mapping[str, np.ndarray] | None = None, inputs: Mapping[str, np.ndarray] | None = None,
    not_run: Mapping[str, str] | None = None,
    outside_xla: Mapping[str, str] | None = None,
    devices: Mapping[str, str] | None = None, device_names: Mapping[str, str] | None = None,
    force: bool = False, redacted: bool = False, tf32_state: Tf32State | None = None,
    training: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    training_settings: Mapping[str, str] | None = None,
    runtimes: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a bundle of schema 2 atomically: it appears whole under ``target`` or not at all.

    ``stages``: each recorded mode's stage outputs (registry order); ``not_run``: modes not run,
    and why; ``devices``: each array's device, ``device_names`` which GPU each is; ``tf32_state``:
    TF32 as recorded; ``runtimes``: what converted and ran each converted mode
    (``envaudit/runtimes.py``); ``redacted``: ``fingerprint`` was redacted. A canary
    bundle has a ``twin``, a user model ``inputs``; either may hold training steps per mode."""
    target = Path(target).absolute()
    check_writable(target, force)
    training = {m: a for m, a in (training or {}).items() if m in stages}
    steps = training_spec.steps_in(next(iter(training.values()), {}))
    _require_within_budget(target, workload.get("id") == USER_MODEL, (
        *stages.values(), probes, twin or {}, inputs or {}, *training.values()),
        len(stages), (steps, len(training)))
    try:
        partial = bundle_files.make_partial(target)
    except OSError as exc:
        raise EnvauditError(f"cannot write under {target.parent}: {exc.strerror or exc};"
                            " choose a writable --golden path") from None
    try:
        modes, groups, blobs = _array_files(stages, probes, twin, inputs, training)
        manifest = _new_manifest(
            fingerprint, workload, images, modes, not_run=not_run, outside_xla=outside_xla,
            arrays={group: list(arrays) for group, arrays in groups.items()},
            files={name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()},
            redacted=redacted, devices=devices, device_names=device_names, tf32_state=tf32_state,
            training=training_spec.manifest_entry(steps, [m for m in modes if m in training],
                                                  training_settings),
            runtimes={m: r for m, r in (runtimes or {}).items() if m in modes})
        for name, data in blobs.items():
            _write_synced(partial / name, data)
        _write_synced(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        bundle_files.swap_into_place(partial, target, force)
    except OSError as exc:
        bundle_files.remove_ours(partial)
        raise EnvauditError(f"cannot write golden bundle {target}: {exc.strerror or exc};"
                            " free space or choose another --golden path (nothing was"
                            " changed)") from None
    except BaseException:
        bundle_files.remove_ours(partial)
        raise
    return target


def _require_within_budget(target: Path, user_model: bool,
                           groups: Sequence[Mapping[str, np.ndarray]], modes: int,
                           training: tuple[int, int] = (0, 0)) -> None:
    """What check would refuse to read back is never written (a user model with huge inputs)."""
    budget = bundle_budget.budget(user_model=user_model, modes=modes, training=training)
    size = sum(array.nbytes + bundle_budget.NPY_HEADER_BYTES for group in groups
               for array in group.values())
    if size > budget.limit:
        raise EnvauditError(f"cannot record golden bundle {target}: {budget.exceeded(size)};"
                            " record fewer or smaller inputs")


def _array_files(stages: Mapping[str, Mapping[str, np.ndarray]],
                 probes: Mapping[str, np.ndarray], twin: Mapping[str, np.ndarray] | None,
                 inputs: Mapping[str, np.ndarray] | None,
                 training: Mapping[str, Mapping[str, np.ndarray]],
                 ) -> tuple[list[str], dict[str, Mapping[str, np.ndarray]], dict[str, bytes]]:
    """The recorded modes (registry order), the array groups, and each group's ``.npz`` bytes
    by file name."""
    modes = [mode for mode in mode_registry.names() if mode in stages]
    last = {"inputs": inputs or {}} if inputs is not None else {"twin": twin or {}}
    groups = {**{f"stages.{mode}": stages[mode] for mode in modes}, "probes": probes, **last,
              **{f"training.{mode}": training[mode] for mode in modes if mode in training}}
    # A user model's layer activations compress by a fifth at most, and inflating them would
    # cost every check more than the bytes saved; the canary's stages compress well.
    raw = inputs is not None
    blobs = {f"{group}.npz": _npz_bytes(arrays, not (raw and group.startswith("stages.")))
             for group, arrays in groups.items()}
    return modes, groups, blobs


def _new_manifest(fingerprint: Fingerprint, workload: Mapping[str, Any], images: Sequence[str],
                  modes: list[str], *, not_run: Mapping[str, str] | None,
                  outside_xla: Mapping[str, str] | None, arrays: dict[str, list[str]],
                  files: dict[str, str], redacted: bool, devices: Mapping[str, str] | None,
                  device_names: Mapping[str, str] | None,
                  tf32_state: Tf32State | None = None,
                  training: Mapping[str, Any] | None = None,
                  runtimes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A schema 2 manifest, its own checksum last (fields in the order a bundle shows them)."""
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "envaudit_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "workload": dict(workload),
        "images": list(images),
        "modes": modes,
        "not_run": dict(not_run or {}),
        "outside_xla": dict(outside_xla or {}),
        "arrays": arrays,
        "files": files,
        "redacted": redacted,
        "devices": {"arrays": dict(devices or {}), "names": dict(device_names or {})},
        **({"tf32": tf32_state.to_manifest()} if tf32_state else {}),
        **({"training": dict(training)} if training else {}),
        **({"runtimes": {m: dict(r) for m, r in runtimes.items()}} if runtimes else {}),
        "fingerprint": fingerprint.to_dict(),
    }
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    return manifest


def _write_synced(path: Path, data: bytes) -> None:
    # envaudit's own file mode (0644 less the umask), whatever folder it lands in: nobody else
    # may rewrite a golden's arrays.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 bundle_files.FILE_MODE)
    with open(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def bundle_bytes(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The files of the verified bundle at ``path`` by name (the manifest and the files it lists),
    as a fleet check sends them to its nodes, which verify them again there."""
    bundle = load_bundle(path)
    names = [MANIFEST, *bundle.manifest["files"]]
    try:
        return {name: bundle_files.read_regular(bundle.path / name, MAX_FILE_BYTES)
                for name in names}
    except OSError as exc:
        raise EnvauditError(f"cannot read golden bundle {bundle.path}: {exc.strerror or exc};"
                            " check its permissions") from None
