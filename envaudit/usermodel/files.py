"""The user's model and input files on disk: what kind, which bytes, whether they are safe to use.

- ``model_kind``: a SavedModel folder (``saved_model.pb``) or a Keras ``.keras`` file (a zip with
  ``config.json``); anything else is refused with what was expected.
- ``model_digest``: SHA-256 over the model's files (relative path, size and content of each, in
  sorted order), so a changed weight, graph or asset is a changed model, and a moved copy is not.
  The bytes hashed must be the bytes TensorFlow loads, so a model is refused (``tree_problem``,
  at record and at check) when a symlink inside it leads elsewhere (a walk neither hashes nor
  checks what a linked folder holds, and whoever owns the target can change it) or when any of its
  files or folders is writable by every user. The path the user types may itself be a link.
- ``location_problem``: a path read from a bundle (not typed by the user) is used only when nobody
  but this user and root can have put its files there (owner and write bits of each file and of
  every folder above it, as ssh's StrictModes checks), because loading a model runs its graph.
- ``read_images`` / ``read_arrays``: the inputs, checked before TensorFlow is imported.

Standard library and NumPy only.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envaudit.errors import EnvauditError
from envaudit.usermodel.spec import PLAIN, ModelKind

MAX_INPUT_BYTES = 1 << 30  # all inputs together: they are copied into the bundle
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelIdentity:
    sha256: str
    files: int
    size: int  # bytes


def model_kind(path: Path) -> ModelKind:
    """What ``path`` holds, or an error saying what it should hold."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "saved_model"
        raise EnvauditError(f"{path} is not a SavedModel (it has no saved_model.pb); pass the"
                            " folder written by tf.saved_model.save, or a .keras file")
    if not path.exists():
        raise EnvauditError(f"model {path} does not exist; pass a SavedModel folder or a .keras"
                            " file")
    if path.suffix != ".keras":
        raise EnvauditError(f"{path} is neither a SavedModel folder nor a .keras file; save the"
                            " model with model.save('NAME.keras') or tf.saved_model.save")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise EnvauditError(f"{path} is not a readable .keras file ({exc}); save it again with"
                            " model.save") from None
    if "config.json" not in names:
        raise EnvauditError(f"{path} is not a Keras model file (no config.json inside); save it"
                            " again with model.save")
    return "keras"


def model_files(path: Path) -> list[Path]:
    """The files that make up the model, sorted (one for a .keras file)."""
    if not path.is_dir():
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found += [Path(root) / f for f in sorted(files)]
    return sorted(found, key=lambda p: p.relative_to(path).as_posix())


def tree_problem(path: Path) -> str | None:
    """Why the model at ``path`` cannot be hashed as what will be loaded (one line naming the
    file), or None: a symbolic link inside a SavedModel folder, or a file or folder of the model
    that every user can write."""
    try:
        top = os.stat(path)
    except OSError:
        return None  # ``model_kind`` says what is missing
    items = [(path, top)]
    if stat.S_ISDIR(top.st_mode):
        for root, dirs, files in os.walk(path):  # links are looked at, never followed
            for name in sorted((*dirs, *files)):
                item = Path(root, name)
                try:
                    items.append((item, os.lstat(item)))
                except OSError:
                    return f"model {path}: {item} cannot be examined; check its permissions"
    for item, info in items:
        if stat.S_ISLNK(info.st_mode):
            return (f"model {path}: {item.relative_to(path)} is a symbolic link to"
                    f" {os.readlink(item)}; envaudit hashes and loads only what is inside the"
                    " model folder; copy the linked files into it")
        if info.st_mode & stat.S_IWOTH:
            return (f"model {path}: {item} is writable by every user, so anyone could swap it"
                    f" after it was checked; remove that permission (chmod -R o-w {path})")
    return None


def model_digest(path: Path) -> ModelIdentity:
    """The model's identity: SHA-256 over every file's relative path, size and bytes; refused
    with one line when ``tree_problem`` finds a reason."""
    problem = tree_problem(path)
    if problem:
        raise EnvauditError(problem)
    digest = hashlib.sha256()
    files = model_files(path)
    total = 0
    try:
        for file in files:
            name = file.relative_to(path).as_posix() if path.is_dir() else ""
            size = file.stat().st_size
            digest.update(f"{name}\0{size}\0".encode())
            with open(file, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            total += size
    except OSError as exc:
        raise EnvauditError(f"cannot read model {path}: {exc.strerror or exc}; check its"
                            " permissions") from None
    return ModelIdentity(digest.hexdigest(), len(files), total)


def location_problem(path: Path) -> str | None:
    """Why files at ``path`` could have been put there by someone other than this user or root
    (None when they could not): a file or folder owned by another user, or writable by group or
    others (a folder with the sticky bit, such as /tmp, protects its entries)."""
    me = os.geteuid()
    checked: list[Path] = model_files(path) if path.exists() else []
    absolute = Path(os.path.abspath(path))
    checked += [absolute, *absolute.parents]
    for item in checked:
        try:
            info = item.lstat()
        except OSError:
            return f"{item} cannot be examined"
        if stat.S_ISLNK(info.st_mode):
            try:
                info = item.stat()
            except OSError:
                return f"{item} is a broken link"
        if info.st_uid not in (0, me):
            return f"{item} belongs to another user (uid {info.st_uid})"
        shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if shared and not sticky_dir:
            return f"{item} is writable by other users"
    return None


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFiles:
    names: tuple[str, ...]  # file names, sorted
    encoded: tuple[bytes, ...]


def read_images(folder: Path) -> ImageFiles:
    """Every PNG and JPEG file in ``folder`` (by content, sorted by name); other files are refused
    so that nothing the user meant to include is silently left out."""
    if not folder.is_dir():
        raise EnvauditError(f"inputs folder {folder} does not exist; pass a folder of PNG/JPEG"
                            " images or an .npz of named arrays")
    names, encoded, total = [], [], 0
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_file():
            raise EnvauditError(f"inputs folder {folder} holds {entry.name}, which is not a"
                                " file; put only PNG/JPEG images in it")
        if not PLAIN.fullmatch(entry.name):
            raise EnvauditError(f"input image {entry.name!r} needs a plain file name (letters,"
                                " digits, . _ -); rename it")
        try:
            data = entry.read_bytes()
        except OSError as exc:
            raise EnvauditError(f"cannot read input image {entry}: {exc.strerror or exc}") \
                from None
        if not any(data.startswith(magic) for magic, _ in _IMAGE_MAGIC):
            raise EnvauditError(f"input {entry} is not a PNG or JPEG image; put only images in"
                                " the inputs folder, or pass an .npz of arrays")
        total += len(data)
        if total > MAX_INPUT_BYTES:
            raise EnvauditError(f"the inputs in {folder} exceed {MAX_INPUT_BYTES >> 20} MiB;"
                                " a golden needs a few representative inputs, not a dataset")
        names.append(entry.name)
        encoded.append(data)
    if not names:
        raise EnvauditError(f"inputs folder {folder} holds no PNG or JPEG images")
    return ImageFiles(tuple(names), tuple(encoded))


def read_arrays(path: Path, what: str = "inputs") -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` (no pickles, number types only); ``what`` names the file
    in a refusal."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EnvauditError(f"{what} file {path} does not exist; pass "
                            + ("a folder of PNG/JPEG images or " if what == "inputs" else "")
                            + "an .npz of named arrays") from None
    except OSError as exc:
        raise EnvauditError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise EnvauditError(f"{what} {path} exceed {MAX_INPUT_BYTES >> 20} MiB; a golden needs a"
                            " few representative inputs, not a dataset")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # NumPy raises many types for a broken file; all mean the same
        raise EnvauditError(f"{what} {path} is not a readable .npz of arrays ({exc})") from None
    if not arrays:
        raise EnvauditError(f"{what} {path} holds no arrays")
    for name, array in arrays.items():
        if not PLAIN.fullmatch(name):
            raise EnvauditError(f"{what} {path}: array name {name!r} is not a plain name")
        if array.dtype.kind not in "biuf" or array.dtype.fields is not None:
            raise EnvauditError(f"{what} {path}: array {name!r} has dtype {array.dtype}, not a"
                                " number type")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise EnvauditError(f"{what} {path}: array {name!r} holds NaN or infinity")
    return arrays
