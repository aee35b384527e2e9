"""Which package changes between two fingerprints can be put back, and the package sets that do it.

Environment bisection confirms or rules out a package change by building an isolated environment
with the golden side of that change restored and re-running the workload there. This module decides
the changes (``package_groups``), the environment a workload needs (``base_pins``), the set with
some groups put back (``restored``) and whether a group may be put back at all
(``restore_problem``); ``uv.py`` builds and runs the environments.

Constraints for the next editor:

- Standard library only, and never TensorFlow: the grouping reads the fingerprints' ``packages``
  sections (normalized name -> ``{"version": ...}``, or an unavailable marker) and nothing else.
- Trust: the golden fingerprint is someone else's data, and installing a package runs its code.
  A golden name or version reaches an installer only through ``restore_problem`` == None: a plain
  PEP 440 public release of a distribution that is installed here or is a known TensorFlow
  distribution or companion, never one the golden installed from a URL, a VCS or a checkout.
  ``restored`` refuses any other group, so the check cannot be forgotten by a caller.
- Groups follow the numerics rules of ``fingerprint.fields`` (``is_numerics_package``,
  ``is_cuda_wheel``): a change that cannot move a number (``rich``, ``protobuf``) makes no group.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from envaudit.fingerprint.fields import is_cuda_wheel, is_numerics_package
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.tensorflow_build import _DISTRIBUTIONS
from envaudit.fingerprint.types import Fingerprint
from envaudit.plain import plain

TENSORFLOW_DISTRIBUTIONS = frozenset(_DISTRIBUTIONS)
# Wheels released with TensorFlow: restoring TensorFlow without them mixes two releases.
_COMPANION_PREFIXES = ("tensorflow", "tensorboard", "tf-")
_KERAS = frozenset({"keras", "tf-keras"})
# What the workload child imports besides TensorFlow's own wheels, pinned so that an environment
# differs from this one only in what a group puts back. envaudit's own runtime dependencies
# (psutil, py-cpuinfo, nvidia-ml-py) are not here: ``python -m envaudit.workload`` never imports
# them (rich, which it does import through Keras, comes with Keras).
_WORKLOAD_SUPPORT = frozenset({"numpy", "keras", "tf-keras", "ml-dtypes", "protobuf", "h5py"})
# Distributions a golden may have that this environment lacks and that may still be installed:
# TensorFlow's own distributions and the wheels its releases depend on (tensorboard, the CUDA
# wheels of ``tensorflow[and-cuda]``). A stranger's fingerprint must not pick any other name.
KNOWN_COMPANIONS = frozenset({
    "tensorboard", "tensorboard-data-server", "tensorboard-plugin-wit", "tensorflow-estimator",
    "tensorflow-io-gcs-filesystem", "tf-keras", "keras", "ml-dtypes", "numpy",
    *(f"nvidia-{lib}-cu{cuda}" for cuda in (11, 12) for lib in (
        "cublas", "cuda-cupti", "cuda-nvcc", "cuda-nvrtc", "cuda-runtime", "cudnn", "cufft",
        "curand", "cusolver", "cusparse", "nccl", "nvjitlink")),
})

# A plain public release (PEP 440 without epoch, local part or URL): digits, an optional pre-,
# post- and dev-release. Anything else in a golden version is refused, never escaped.
PUBLIC_VERSION = re.compile(r"\d{1,9}(\.\d{1,9}){0,5}((a|b|rc)\d{1,9})?(\.post\d{1,9})?"
                            r"(\.dev\d{1,12})?")
# Any PEP 440 version a pin may carry; this environment's own versions may have a local part
# (``2.4.0+cpu``). Checked once more before a pin reaches uv's command line.
PINNED_VERSION = re.compile(r"(\d{1,9}!)?\d{1,9}(\.\d{1,9}){0,5}((a|b|rc)\d{1,9})?(\.post\d{1,9})?"
                            r"(\.dev\d{1,12})?(\+[a-z0-9]{1,30}(\.[a-z0-9]{1,30}){0,5})?")
# A PEP 503 normalized distribution name (what the fingerprint writes).
NORMALIZED_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_MAX_NAME = 100
_PRIORITY = ("tensorflow", "numpy", "keras")  # group order; the rest follow by name


@dataclass(frozen=True)
class PackageGroup:
    """One package change as a unit: distribution -> version on each side (None: not installed on
    that side). Both sides name the same distributions."""

    name: str  # "tensorflow", "numpy", "keras", or the distribution's own name
    golden: Mapping[str, str | None]
    current: Mapping[str, str | None]
    # Golden distributions that came from a direct URL, VCS or editable install (PEP 610).
    golden_direct: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "golden", MappingProxyType(dict(sorted(self.golden.items()))))
        object.__setattr__(self, "current", MappingProxyType(dict(sorted(self.current.items()))))
        object.__setattr__(self, "golden_direct", tuple(sorted(self.golden_direct)))

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.golden.items()), tuple(self.current.items()),
                     self.golden_direct))

    def describe(self) -> str:
        """One line: ``tensorflow-cpu 2.20.0 -> tensorflow 2.21.0`` style, golden first."""
        def side(versions: Mapping[str, str | None]) -> str:
            present = [f"{n} {v}" for n, v in versions.items() if v is not None]
            return ", ".join(present) or "not installed"
        return f"{self.name}: {side(self.golden)} -> {side(self.current)}"

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class PackageSet:
    """The exact distributions of one environment, as sorted ``(name, version)`` pairs."""

    pins: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        pins = tuple(sorted((str(n), str(v)) for n, v in self.pins))
        names = [n for n, _ in pins]
        if len(set(names)) != len(names):
            raise ValueError(f"a package set pins one version per distribution: {names}")
        object.__setattr__(self, "pins", pins)

    @classmethod
    def of(cls, versions: Mapping[str, str]) -> PackageSet:
        return cls(tuple(versions.items()))

    def key(self) -> str:
        """SHA-256 over what an environment built for these pins depends on: the pins, the Python
        (implementation, major.minor, ABI flags: a free-threaded build takes other wheels) and the
        platform tag."""
        identity = {
            "pins": [list(p) for p in self.pins],
            "python": [sys.implementation.name, *sys.version_info[:2],
                       getattr(sys, "abiflags", "")],
            "platform": sysconfig.get_platform(),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def requirements(self) -> list[str]:
        return [f"{name}=={version}" for name, version in self.pins]

    def as_dict(self) -> dict[str, str]:
        return dict(self.pins)


def _group_of(name: str) -> str | None:
    """The group a (normalized) distribution belongs to; None: it cannot change numbers."""
    if name in _KERAS:
        return "keras"
    if name == "numpy":
        return "numpy"
    if _is_tensorflow_part(name):
        return "tensorflow"
    return name if is_numerics_package(name) else None


def _is_tensorflow_part(name: str) -> bool:
    return (name in TENSORFLOW_DISTRIBUTIONS or name.startswith(_COMPANION_PREFIXES)
            or is_cuda_wheel(name) or name == "ml-dtypes") and name not in _KERAS


def _can_move_numbers(name: str) -> bool:
    return name in TENSORFLOW_DISTRIBUTIONS or is_numerics_package(name)


@dataclass(frozen=True)
class _Installed:
    version: str  # a marker in angle brackets where the entry holds no string version
    direct: bool


def _installed(fingerprint: Fingerprint) -> dict[str, _Installed] | None:
    """The packages section by name; None where the section could not be read."""
    section = fingerprint.get("packages")
    if not isinstance(section, Mapping) or is_unavailable(section):
        return None
    found: dict[str, _Installed] = {}
    for name, entry in section.items():
        if not isinstance(name, str):
            continue
        if not isinstance(entry, Mapping):
            found[name] = _Installed(f"<{type(entry).__name__} entry>", False)
            continue
        version = entry.get("version")
        text = version if isinstance(version, str) else f"<{type(version).__name__} version>"
        found[name] = _Installed(text, "direct_url" in entry)
    return found


def package_groups(golden: Fingerprint, current: Fingerprint) -> list[PackageGroup]:
    """The package changes from ``golden`` to ``current`` that can change numbers, one group per
    unit that must be put back together: TensorFlow with its companion wheels (a move from
    ``tensorflow-cpu`` to ``tensorflow`` is one change), NumPy, Keras, then every other numerics
    distribution on its own. A group needs at least one numerics distribution that differs;
    companions that cannot move numbers (tensorboard) join one but never make one. Empty where
    either side's packages section could not be read."""
    before, after = _installed(golden), _installed(current)
    if before is None or after is None:
        return []
    members: dict[str, list[str]] = {}
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is not None and new is not None and old.version == new.version:
            continue
        group = _group_of(name)
        if group is not None:
            members.setdefault(group, []).append(name)
    groups = []
    for group, names in members.items():
        if not any(_can_move_numbers(n) for n in names):
            continue
        groups.append(PackageGroup(
            group,
            golden={n: before[n].version if n in before else None for n in names},
            current={n: after[n].version if n in after else None for n in names},
            golden_direct=tuple(n for n in names if n in before and before[n].direct)))
    return sorted(groups, key=lambda g: (
        _PRIORITY.index(g.name) if g.name in _PRIORITY else len(_PRIORITY), g.name))


def base_pins(current: Fingerprint) -> dict[str, str]:
    """What an environment for the workload needs, at this environment's versions: the installed
    TensorFlow distribution(s) with their companion wheels (CUDA wheels included), NumPy, Keras,
    ml-dtypes, protobuf and h5py, each where installed. Empty where the packages section could not
    be read."""
    installed = _installed(current) or {}
    return {name: entry.version for name, entry in installed.items()
            if _is_tensorflow_part(name) or name in _WORKLOAD_SUPPORT}


def restore_problem(group: PackageGroup) -> str | None:
    """Why the golden side of ``group`` must not be installed, or None when it may be.

    Refused: a name that is not a normalized distribution name; a version that is not a plain
    public release (no local part, URL, marker, space or option); a distribution this environment
    does not have unless it is a TensorFlow distribution or a known companion; a golden package
    that came from a direct URL, VCS or editable install (its version names no published wheel).
    """
    for name, version in group.golden.items():
        if len(name) > _MAX_NAME or not NORMALIZED_NAME.fullmatch(name):
            return f"golden distribution name {name[:_MAX_NAME]!r} is not a normalized" \
                   " distribution name"
        if version is None:
            continue  # removing a distribution installs nothing
        if not PUBLIC_VERSION.fullmatch(version):
            return (f"golden version {version[:60]!r} of {name} is not a plain public release"
                    " (such as 2.20.0 or 2.21.0rc1); only those are installed from the index")
        if name in group.golden_direct:
            return (f"the golden {name} {version} was installed from a URL, a VCS or a local"
                    " checkout, not from the package index; it cannot be rebuilt here")
        installed_here = group.current.get(name) is not None
        if not installed_here and name not in TENSORFLOW_DISTRIBUTIONS \
                and name not in KNOWN_COMPANIONS:
            return (f"golden distribution {name} is not installed here and is not a known"
                    " TensorFlow distribution or companion; a golden file does not choose what"
                    " gets installed")
    return None


def pin_problem(name: str, version: str) -> str | None:
    """Why ``name==version`` is not a plain pin (no option, URL, marker or space can pass)."""
    if len(name) > _MAX_NAME or not NORMALIZED_NAME.fullmatch(name):
        return f"{name[:_MAX_NAME]!r} is not a normalized distribution name"
    if not PINNED_VERSION.fullmatch(version):
        return f"{version[:60]!r} is not a PEP 440 version"
    return None


def restored(base: Mapping[str, str], groups: Sequence[PackageGroup]) -> PackageSet:
    """``base`` with the golden side of each group put back: a distribution the golden lacked is
    removed, one only the golden had is added. Raises ValueError for a group that
    ``restore_problem`` refuses (callers report those instead of installing them).

    With any group restored, the base's pins that cannot move numbers and that no group names
    (protobuf, h5py, tensorboard) are left to uv: an older TensorFlow may need an older protobuf,
    and such a pin would make the set unresolvable for no numeric reason."""
    pins = dict(base)
    if groups:
        named = {name for group in groups for name in (*group.golden, *group.current)}
        pins = {name: version for name, version in pins.items()
                if name in named or _can_move_numbers(name)}
    for group in groups:
        problem = restore_problem(group)
        if problem:
            raise ValueError(f"group {group.name} cannot be restored: {problem}")
        for name in group.golden.keys() | group.current.keys():
            version = group.golden.get(name)
            if version is None:
                pins.pop(name, None)
            else:
                pins[name] = version
    return PackageSet.of(pins)
