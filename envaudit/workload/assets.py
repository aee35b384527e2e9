"""The workload's assets (trained weights, golden images): where they are and that they are intact.

NumPy and the standard library only. Every asset is listed with its SHA-256 in ``SHA256SUMS``
beside it; a missing or modified asset is a user-facing error that names the file and the
checksum it should have, because a silently different asset would make every check meaningless.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envaudit.errors import EnvauditError
from envaudit.shipped import shipped

ASSET_DIR = shipped("assets")
CHECKSUMS = "SHA256SUMS"
WEIGHTS = "detector_weights.npz"

# Golden scenes: name -> the seed that renders it. Each is stored as PNG and as JPEG; the
# pipeline runs every PNG, then every JPEG, as one batch.
GOLDEN_SCENES = {"scene0": 1000, "scene1": 1015, "scene2": 1021}
FORMATS = ("png", "jpg")
PROBE_IMAGE = "scene0.jpg"  # the JPEG the decode probes read


def asset_dir() -> Path:
    """The asset folder: ``$ENVAUDIT_ASSETS`` if set, else the shipped ``golden/assets``."""
    return Path(os.environ.get("ENVAUDIT_ASSETS", ASSET_DIR))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Write SHA256SUMS for every asset in ``folder`` (used by the training script)."""
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(folder.iterdir())
             if p.is_file() and p.name != CHECKSUMS]
    (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Assets:
    folder: Path
    checksums: Mapping[str, str]  # file name -> sha256
    weights: Mapping[str, np.ndarray]
    image_names: tuple[str, ...]  # batch order, e.g. "scene0.png"
    encoded: tuple[bytes, ...]  # the image files' bytes, in batch order

    @property
    def probe_jpeg(self) -> bytes:
        """The JPEG scene the decode probes read."""
        return self.encoded[self.image_names.index(PROBE_IMAGE)]


def expected_checksums(folder: Path) -> dict[str, str]:
    listing = folder / CHECKSUMS
    if not listing.is_file():
        raise EnvauditError(
            f"workload assets not found: {listing} is missing; restore golden/assets from the"
            " envaudit repository or set ENVAUDIT_ASSETS to that folder"
        )
    sums = {}
    for line in listing.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def verified_bytes(folder: Path, name: str, sums: Mapping[str, str]) -> bytes:
    """The bytes of asset ``name``, after checking them against ``SHA256SUMS``."""
    path = folder / name
    expected = sums.get(name)
    if expected is None:
        raise EnvauditError(f"workload asset {name} is not listed in {folder / CHECKSUMS};"
                            " restore golden/assets from the envaudit repository")
    if not path.is_file():
        raise EnvauditError(f"workload asset {path} is missing (expected sha256 {expected});"
                            " restore it from the envaudit repository")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise EnvauditError(f"workload asset {path} was modified: sha256 {actual}, expected"
                            f" {expected}; restore it from the envaudit repository")
    return data


def load_assets(folder: Path | None = None) -> Assets:
    """Read and verify every asset; raise EnvauditError naming a missing or modified one."""
    folder = folder or asset_dir()
    sums = expected_checksums(folder)
    image_names = tuple(f"{scene}.{fmt}" for fmt in FORMATS for scene in GOLDEN_SCENES)
    blobs = {name: verified_bytes(folder, name, sums) for name in (WEIGHTS, *image_names)}
    with np.load(io.BytesIO(blobs[WEIGHTS])) as npz:
        weights = {k: npz[k] for k in npz.files}
    return Assets(folder, sums, weights, image_names, tuple(blobs[n] for n in image_names))


def load_probe_jpeg(folder: Path | None = None) -> bytes:
    """The decode probes' JPEG alone, verified (what a user-model check needs of the assets)."""
    folder = folder or asset_dir()
    return verified_bytes(folder, PROBE_IMAGE, expected_checksums(folder))


def used_checksums(assets: Assets) -> dict[str, str]:
    """SHA-256 of the assets the workload used, for the bundle manifest."""
    return {name: assets.checksums[name] for name in (WEIGHTS, *assets.image_names)}


def ground_truth(assets: Assets) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The rendered objects of every golden image, in batch order: (boxes, classes) lists."""
    boxes, classes = [], []
    for image in assets.image_names:
        name = image.rsplit(".", 1)[0] + ".labels.npz"
        with np.load(io.BytesIO(verified_bytes(assets.folder, name, assets.checksums))) as labels:
            boxes.append(labels["boxes"])
            classes.append(labels["classes"])
    return boxes, classes
