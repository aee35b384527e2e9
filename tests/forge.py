"""Forged golden bundles, as a stranger would make them: through envaudit's own writer, so every
checksum matches and only the content is hostile. Checksums prove integrity, not authorship."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from envaudit import store
from envaudit.fingerprint import Fingerprint


def forge(source: Path, target: Path, *, env: Mapping[str, str] | None = None,
          stages: Mapping[str, np.ndarray] | None = None, mode: str = "eager") -> Path:
    """A copy of ``source`` re-written by the store with the given stage arrays (of ``mode``)
    and fingerprint variables replaced (the manifest and every file checksum are valid)."""
    bundle = store.load_bundle(source)
    data = json.loads(json.dumps(bundle.fingerprint.data))
    data["env"] = {**data["env"], **(env or {})}
    by_mode = {m: dict(arrays) for m, arrays in bundle.stages_by_mode.items()}
    by_mode[mode].update(stages or {})
    return store.write_bundle(
        target,
        fingerprint=Fingerprint(data),
        workload=bundle.manifest["workload"],
        images=tuple(bundle.manifest["images"]),
        stages=by_mode,
        probes=bundle.probes,
        twin=bundle.twin,
        not_run=bundle.not_run,
        outside_xla=bundle.manifest.get("outside_xla", {}),
    )


def write_v1(source: Path, target: Path,
             detections: Mapping[str, np.ndarray] | None = None) -> Path:
    """A bundle of schema 1, as envaudit 0.1 wrote it (eager stages, probes, twin, detections,
    workload version 1), made from ``source``'s eager arrays."""
    from envaudit.workload import detections_from_nms

    bundle = store.load_bundle(source)
    d = detections_from_nms(bundle.stages_by_mode["eager"]["nms"])
    from envaudit.workload.architecture import PROBES_V1

    groups = {"stages": bundle.stages_by_mode["eager"],
              "probes": {name: bundle.probes[name] for name in PROBES_V1},
              "twin": bundle.twin,
              "detections": {"image": d.image, "boxes": d.boxes, "classes": d.classes,
                             "scores": d.scores, **(detections or {})}}
    target.mkdir(parents=True)
    files = {}
    for group, arrays in groups.items():
        data = store._npz_bytes(arrays)
        (target / f"{group}.npz").write_bytes(data)
        files[f"{group}.npz"] = hashlib.sha256(data).hexdigest()
    manifest = {key: bundle.manifest[key] for key in
                ("envaudit_version", "created_at", "images", "redacted", "fingerprint")}
    manifest.update(schema=store.SCHEMA_V1, files=files,
                    workload={**bundle.manifest["workload"], "version": "1"},
                    arrays={group: list(arrays) for group, arrays in groups.items()})
    manifest["manifest_sha256"] = store._manifest_digest(manifest)
    (target / store.MANIFEST).write_text(json.dumps(manifest, indent=2))
    return target


def reseal(bundle: Path, edit: Callable[[dict[str, Any]], object] | None = None) -> None:
    """Apply ``edit`` to the manifest, re-hash every file it lists that exists, and give the
    manifest a valid checksum of itself again."""
    path = bundle / store.MANIFEST
    manifest = json.loads(path.read_text())
    files = manifest.get("files")
    if isinstance(files, dict):
        for name in list(files):
            file = bundle / str(name)
            if isinstance(name, str) and "/" not in name and file.is_file():
                files[name] = hashlib.sha256(file.read_bytes()).hexdigest()
    if edit is not None:
        edit(manifest)
    if isinstance(manifest, dict):
        manifest["manifest_sha256"] = store._manifest_digest(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def copy_bundle(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def one_ulp_up(array: np.ndarray, index: int = 0) -> np.ndarray:
    """``array`` with one element moved to the next float32 up."""
    moved = array.copy().reshape(-1)
    moved[index] = np.nextafter(moved[index], np.float32(np.inf))
    return moved.reshape(array.shape)


# A golden recorded on another machine: its shell's stray OpenBLAS variables and a richer CPU.
# Each takes the first value this machine's own environment does not have: the tests keep an
# ambient OPENBLAS_* (machines need it; CI sets OPENBLAS_CORETYPE=Haswell), and a stray equal to
# it would be no change at all.
_STRAY_VALUES = {"OPENBLAS_CORETYPE": ("Haswell", "SkylakeX"), "OPENBLAS_L2_SIZE": ("512", "1024")}
STRAYS = {name: next(v for v in values if os.environ.get(name) != v)
          for name, values in _STRAY_VALUES.items()}
# Flags of a richer CPU (Sapphire Rapids: AMX); oneDNN's ISA can be capped down, never up.
RICHER = ("amx_tile", "amx_bf16", "amx_int8", "avx512_fp16", "amx_complex", "amx_fp16",
          "avx512_bf16", "avx512_vnni", "avx512f", "avx512bw", "avx512vl")


def elsewhere(fingerprint: Fingerprint) -> Fingerprint:
    """``fingerprint`` as another machine recorded it: a richer CPU, another model, and the
    stray OpenBLAS variables of its shell."""
    data = json.loads(json.dumps(fingerprint.data))
    data["env"] = {**data.get("env", {}), **STRAYS}
    data["cpu"]["flags"] = sorted(set(data["cpu"].get("flags") or []) | set(RICHER))
    data["cpu"].update(vendor="GenuineIntel", model_name="Intel(R) Xeon(R) Platinum 8480+",
                       family=6, model=143)
    return Fingerprint(data)


def forge_elsewhere(source: Path, target: Path, moved: bool) -> Path:
    """A copy of ``source`` with the fingerprint of ``elsewhere``; with ``moved``, stage 'stem' of
    every mode and the probe 'matmul_square' one unit of least precision up."""
    bundle = store.load_bundle(source)
    stages = {m: dict(arrays) for m, arrays in bundle.stages_by_mode.items()}
    probes = dict(bundle.probes)
    if moved:
        for mode in stages:
            stages[mode]["stem"] = one_ulp_up(stages[mode]["stem"])
        probes["matmul_square"] = one_ulp_up(probes["matmul_square"])
    return store.write_bundle(
        target, fingerprint=elsewhere(bundle.fingerprint), workload=bundle.manifest["workload"],
        images=tuple(bundle.manifest["images"]), stages=stages, probes=probes, twin=bundle.twin,
        not_run=bundle.not_run, outside_xla=bundle.manifest.get("outside_xla", {}))
