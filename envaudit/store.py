"""Golden bundles: read, verify, write atomically. The only module that touches golden files.

A bundle is a folder: ``manifest.json`` plus ``.npz`` arrays. The manifest holds the schema, the
workload id/version and the SHA-256 of the assets it used, the recording environment's full
fingerprint, the creation time, the SHA-256 of every other file, and a checksum of itself. A bundle
whose checksums do not match is refused: a silently edited golden would make every later check lie.

Writes go to ``.<name>.partial-<pid>`` beside the target and are renamed into place, so a bundle
either exists whole or not at all; partial folders left by a killed record are removed by the next
record. An existing bundle is never replaced without ``force``, and a folder that is not a bundle
is never replaced at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from envaudit import __version__
from envaudit.errors import EnvauditError
from envaudit.fingerprint.model import Fingerprint
from envaudit.shipped import shipped

SCHEMA = "envaudit.golden/1"
MANIFEST = "manifest.json"
REFERENCE_BUNDLE = shipped("reference")
ARRAY_FILES = ("stages.npz", "probes.npz", "twin.npz", "detections.npz")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GoldenBundle:
    path: Path
    manifest: Mapping[str, Any]
    fingerprint: Fingerprint
    stages: Mapping[str, np.ndarray]  # pipeline order
    probes: Mapping[str, np.ndarray]
    twin: Mapping[str, np.ndarray]  # float64 twin outputs, stages after "decode"
    detections: Mapping[str, np.ndarray]  # image, boxes, classes, scores

    @property
    def array_count(self) -> int:
        return len(self.stages) + len(self.probes) + len(self.twin) + len(self.detections)


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


def _load_npz(data: bytes, where: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise EnvauditError(f"golden bundle file {where} is unreadable ({exc}); re-record it with"
                            " 'envaudit record --golden PATH --force'") from None


def read_manifest(path: Path) -> dict[str, Any]:
    """The verified manifest of the bundle at ``path`` (its own checksum and schema checked)."""
    manifest_path = path / MANIFEST
    if not path.exists():
        raise EnvauditError(f"golden bundle {path} does not exist; record one with"
                            f" 'envaudit record --golden {path}' or pass --golden PATH")
    if not manifest_path.is_file():
        raise EnvauditError(f"{path} is not a golden bundle (no {MANIFEST});"
                            " pass the folder written by 'envaudit record'")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise EnvauditError(f"{manifest_path} is not valid JSON (corrupt or edited); re-record"
                            " the bundle with 'envaudit record --golden PATH --force'") from None
    if not isinstance(manifest, dict) or not str(manifest.get("schema", "")).startswith(
            "envaudit.golden/"):
        raise EnvauditError(f"{manifest_path} is not an envaudit golden manifest;"
                            " pass the folder written by 'envaudit record'")
    if manifest["schema"] != SCHEMA:
        raise EnvauditError(f"golden bundle {path} has schema {manifest['schema']!r}, this"
                            f" envaudit {__version__} reads {SCHEMA!r}; re-record it with"
                            " 'envaudit record --golden PATH --force'")
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise EnvauditError(f"{manifest_path} was modified (its checksum does not match); restore"
                            " the bundle or re-record it with 'envaudit record --force'")
    return manifest


def load_bundle(path: str | os.PathLike[str]) -> GoldenBundle:
    """Read and verify a bundle; any mismatch raises EnvauditError (exit 2)."""
    path = Path(path)
    manifest = read_manifest(path)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise EnvauditError(f"golden bundle file {file} is missing; restore the bundle or"
                                " re-record it with 'envaudit record --force'")
        data = file.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise EnvauditError(f"golden bundle file {file} is corrupt or was modified (sha256"
                                f" {actual[:16]}..., manifest says {expected[:16]}...); restore it"
                                " or re-record with 'envaudit record --force'")
        arrays[name] = _load_npz(data, file)
    order = manifest["arrays"]
    return GoldenBundle(
        path=path,
        manifest=manifest,
        fingerprint=Fingerprint.from_dict(manifest["fingerprint"], f"{path / MANIFEST}"),
        stages={k: arrays["stages.npz"][k] for k in order["stages"]},
        probes={k: arrays["probes.npz"][k] for k in order["probes"]},
        twin={k: arrays["twin.npz"][k] for k in order["twin"]},
        detections=arrays["detections.npz"],
    )


# --- writing ----------------------------------------------------------------------------------


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _is_bundle_or_empty(path: Path) -> bool:
    """Whether envaudit may replace ``path``: empty, or holding only what a bundle holds (so a
    bundle with a corrupt manifest can still be re-recorded with --force)."""
    if path.is_dir() and {p.name for p in path.iterdir()} <= {MANIFEST, *ARRAY_FILES}:
        return True
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("schema", "")).startswith("envaudit.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(target: Path) -> None:
    """Clean up after a killed record (its process is gone): partial folders are removed; a
    previous bundle set aside during a --force swap is put back if the swap never finished."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(partial|old)-(\d+)-")
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if not (match and entry.is_dir()) or _pid_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and (entry / "bundle").is_dir() and not target.exists():
            os.rename(entry / "bundle", target)
        shutil.rmtree(entry, ignore_errors=True)


def check_writable(target: Path, force: bool) -> None:
    """Refuse early (before any work) a target that must not be written. A killed record's
    leftovers are cleaned up first, so a bundle it had set aside counts as existing."""
    if target.parent.is_dir():
        _remove_stale_partials(target)
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return  # nothing there to protect
    if not _is_bundle_or_empty(target):
        raise EnvauditError(f"{target} exists and is not an envaudit bundle; choose another"
                            " path (envaudit never replaces other data)")
    if not force:
        raise EnvauditError(f"golden bundle {target} already exists; pass --force to replace"
                            " it, or choose another --golden path")


def write_bundle(
    target: Path,
    *,
    fingerprint: Fingerprint,
    workload: Mapping[str, Any],
    images: tuple[str, ...],
    stages: Mapping[str, np.ndarray],
    probes: Mapping[str, np.ndarray],
    twin: Mapping[str, np.ndarray],
    detections: Mapping[str, np.ndarray],
    force: bool = False,
) -> Path:
    """Write a bundle atomically: it appears whole under ``target`` or not at all."""
    target = Path(target).absolute()
    check_writable(target, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-",
                                        dir=target.parent))
        partial.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would make a shared bundle private
    except OSError as exc:
        raise EnvauditError(f"cannot write under {target.parent}: {exc.strerror};"
                            " choose a writable --golden path") from None
    try:
        blobs = {
            "stages.npz": _npz_bytes(stages),
            "probes.npz": _npz_bytes(probes),
            "twin.npz": _npz_bytes(twin),
            "detections.npz": _npz_bytes(detections),
        }
        manifest: dict[str, Any] = {
            "schema": SCHEMA,
            "envaudit_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "workload": dict(workload),
            "images": list(images),
            "arrays": {"stages": list(stages), "probes": list(probes), "twin": list(twin),
                       "detections": list(detections)},
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()},
            "fingerprint": fingerprint.to_dict(),
        }
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        for name, data in blobs.items():
            _write_synced(partial / name, data)
        _write_synced(partial / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _swap_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_into_place(partial: Path, target: Path) -> None:
    if not target.exists():
        os.rename(partial, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
    os.rename(target, old / "bundle")
    try:
        os.rename(partial, target)
    except BaseException:
        os.rename(old / "bundle", target)  # put the previous bundle back
        raise
    shutil.rmtree(old, ignore_errors=True)
