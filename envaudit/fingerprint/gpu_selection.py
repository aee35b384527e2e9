"""Which GPUs and MIG instances CUDA gives this process, from NVML's listing (the ``gpu`` section)
and ``CUDA_VISIBLE_DEVICES`` / ``CUDA_DEVICE_ORDER``.

Two readers: the fingerprint records the selected devices as ``gpu.cuda_devices`` (the first one
is where TensorFlow places ops by default, GPU:0: its model, compute capability and a MIG slice's
SM count count toward ``fingerprint_id``, whereas the variables themselves do not,
``fingerprint/fields.py``), and a fleet node selects each GPU it runs on by UUID
(``fleet/node.py``).

CUDA's rules, as NVIDIA documents them: a ``CUDA_VISIBLE_DEVICES`` entry is an index, a ``GPU-``
UUID (a unique prefix suffices), a ``MIG-`` UUID or the older ``MIG-GPU-<uuid>/<gi>/<ci>``;
parsing stops at the first entry that names no device (``-1``, an empty string: no GPU at all).
An index counts in CUDA's own order, fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, while
NVML counts in PCI order: so an index is mapped to a board only when the order is PCI's or the
host has one GPU. Where every GPU is alike (name, compute capability, SMs), which board an index
names cannot change numbers: its attributes are recorded, its UUID is not claimed
(``identified``).
On a GPU in MIG mode CUDA runs on its MIG instances, never on the whole board.

Pure Python over plain data: no NVML call here (``gpu.py`` makes them, guarded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envaudit.fingerprint.guard import unavailable

PCI_ORDER = "PCI_BUS_ID"
UNORDERED = ("CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and NVML"
              " numbers them in PCI order")
_UNKNOWN_FIRST = ("which device CUDA numbers first (TensorFlow's GPU:0) is not known: the"
                  " candidates differ, and CUDA numbers GPUs fastest first unless"
                  " CUDA_DEVICE_ORDER=PCI_BUS_ID, MIG instances in an order NVML does not tell;"
                  " select one by its UUID")


@dataclass(frozen=True)
class ComputeUnit:
    """A device CUDA can run on: a whole GPU, or one MIG instance of a GPU in MIG mode."""

    uuid: str  # GPU-... or MIG-...: what CUDA_VISIBLE_DEVICES accepts
    label: str  # for people: nvidia-smi's GPU index, "0 MIG 1 (1g.10gb)" for an instance
    gpu_index: int  # NVML's index of the board
    name: Any
    compute_capability: Any
    multiprocessor_count: Any = None  # known for MIG instances (a slice of the board's SMs)
    instance: tuple[Any, Any] | None = None  # (GPU instance id, compute instance id)
    parent_uuid: str | None = None

    @property
    def numerics(self) -> tuple[Any, ...]:
        """What can change the numbers computed on it: another model, architecture or SM count
        (kernels and their tiling are chosen by SM count)."""
        return (self.name, self.compute_capability, self.multiprocessor_count)


@dataclass(frozen=True)
class Selected:
    """What one CUDA_VISIBLE_DEVICES entry selects: its units, or why they are not known."""

    entry: str
    units: tuple[ComputeUnit, ...] = ()
    identified: bool = True  # False: one of alike boards, which one is not known
    ordered: bool = True  # False: the order in which CUDA numbers ``units`` is not known
    reason: str | None = None  # why the entry could not be mapped (then ``units`` is empty)


def units(section: Mapping[str, Any]) -> list[ComputeUnit]:
    """Every device CUDA could run on, in NVML's order: each board, or its MIG instances."""
    found: list[ComputeUnit] = []
    devices = section.get("devices") if isinstance(section, Mapping) else None
    for device in devices if isinstance(devices, list) else []:
        uuid = device.get("uuid")
        if not isinstance(uuid, str):
            continue  # a board NVML could not name cannot be selected by its UUID
        index = device.get("index")
        migs = device.get("mig_devices")
        mig_mode = device.get("mig_mode")
        if isinstance(mig_mode, Mapping) and mig_mode.get("current") == "enabled":
            # CUDA runs on the instances only; instances NVML could not read cannot be selected.
            found += [_mig_unit(device, n, mig) for n, mig in enumerate(migs or ())
                      if isinstance(mig, Mapping) and isinstance(mig.get("uuid"), str)]
        else:
            found.append(ComputeUnit(uuid, str(index), index, device.get("name"),
                                     device.get("compute_capability")))
    return found


def _mig_unit(device: Mapping[str, Any], n: int, mig: Mapping[str, Any]) -> ComputeUnit:
    profile = mig.get("profile")
    label = f"{device.get('index')} MIG {n}" + (f" ({profile})" if isinstance(profile, str)
                                                else "")
    return ComputeUnit(mig["uuid"], label, device.get("index"), mig.get("name"),
                       device.get("compute_capability"), mig.get("multiprocessor_count"),
                       (mig.get("gpu_instance_id"), mig.get("compute_instance_id")),
                       device.get("uuid"))


def select(found: Sequence[ComputeUnit], visible: str | None, order: str | None
           ) -> list[Selected]:
    """What ``CUDA_VISIBLE_DEVICES=visible`` selects, entry by entry (unset: every unit, each
    its own entry, in NVML's order: CUDA's where the order is PCI's and no board is in MIG
    mode, or there is one unit)."""
    if visible is None:
        known = len(found) == 1 or (order == PCI_ORDER and not any(u.instance for u in found))
        return [Selected(u.uuid, (u,), ordered=known) for u in found]
    selected = []
    for entry in entries(visible):
        one = _entry(found, entry, order)
        if one is None:
            break  # an ordinal past the last GPU: CUDA ignores it and every entry after it
        selected.append(one)
    return selected


def entries(visible: str) -> list[str]:
    """The entries of a CUDA_VISIBLE_DEVICES value that CUDA reads: up to the first one that is
    neither an index nor a UUID (``-1``, an empty one)."""
    read = []
    for entry in (part.strip() for part in visible.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        read.append(entry)
    return read


def _entry(found: Sequence[ComputeUnit], entry: str, order: str | None) -> Selected | None:
    if entry.isdigit():
        return _index(found, int(entry), order)
    if entry.startswith("MIG-GPU-"):  # drivers before R470: MIG-GPU-<uuid>/<gi>/<ci>
        parent, _, ids = entry[len("MIG-"):].partition("/")
        matches = [u for u in found if u.parent_uuid == parent
                   and "/".join(str(i) for i in u.instance or ()) == ids]
    else:
        matches = [u for u in found if u.uuid.startswith(entry)
                   or (u.parent_uuid or "").startswith(entry)]
    if not matches:
        return Selected(entry, reason=f"NVML lists no device {entry}")
    # A GPU- entry selects its board (all of its MIG instances, in MIG mode); a MIG- entry one.
    if len({u.gpu_index for u in matches}) > 1 or (entry.startswith("MIG-") and len(matches) > 1):
        return Selected(entry, reason=f"{entry} is the start of more than one device's UUID")
    return Selected(entry, tuple(matches), ordered=len(matches) == 1)


def _index(found: Sequence[ComputeUnit], index: int, order: str | None) -> Selected | None:
    boards = sorted({u.gpu_index for u in found})
    if index >= len(boards):
        return None  # an ordinal past the last GPU: CUDA stops there
    mine = tuple(u for u in found if u.gpu_index == boards[index])
    if order == PCI_ORDER or len(boards) == 1:
        return Selected(str(index), mine, ordered=len(mine) == 1)  # MIG instances: unknown
    if len({u.numerics for u in found}) == 1:
        return Selected(str(index), mine, identified=False, ordered=len(mine) == 1)
    return Selected(str(index), reason=f"{UNORDERED}, and this host's devices differ")


def recorded(section: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """``gpu.cuda_devices``: the devices this process's CUDA runs on, in CUDA's order (the
    first is TensorFlow's GPU:0); unavailable with the reason where the first is not known."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    found = units(section)
    entries = select(found, visible, environ.get("CUDA_DEVICE_ORDER"))
    problem = next((one.reason for one in entries if one.reason), None)
    if problem:
        return unavailable(f"CUDA_VISIBLE_DEVICES: {problem}")
    # The candidates for GPU:0: the first entry's first unit where the order is CUDA's, else
    # that entry's units (every unit when nothing is selected).
    first = [u for one in entries[:1] for u in one.units[:1 if one.ordered else None]]
    if visible is None and entries and not entries[0].ordered:
        first = list(found)
    if len({u.numerics for u in first}) > 1:
        return unavailable(_UNKNOWN_FIRST)
    return [_record(u, one.identified and one.ordered) for one in entries for u in one.units]


def _record(unit: ComputeUnit, known: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "uuid": unit.uuid if known else unavailable(f"one of alike devices: {UNORDERED}"),
        "label": unit.label if known else None,
        "name": unit.name,
        "compute_capability": unit.compute_capability,
    }
    if unit.multiprocessor_count is not None:
        record["multiprocessor_count"] = unit.multiprocessor_count
    return record
