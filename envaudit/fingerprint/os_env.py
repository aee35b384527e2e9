"""Probe: the operating system, the C library, and the container or VM around the process.

Numerics-relevant here: the architecture, the distribution and above all glibc (libm's ``exp``,
``log``, ``pow`` differ between glibc releases). The kernel is recorded but not hashed: it does not
change float results, and the instruction sets it enables show up in ``cpu.flags``. Container and
VM evidence and the cgroup limits explain performance and thread counts; they are informational.
Stdlib only, no subprocess: everything is read from files, ``os.uname`` and ``os.confstr``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from envaudit.fingerprint.cpu import raw_flags
from envaudit.fingerprint.guard import field, unavailable

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1
_CONTAINER_CGROUP_WORDS = ("docker", "kubepods", "containerd", "libpod", "lxc", "podman", "crio")


def probe() -> dict[str, Any]:
    uname = os.uname()
    return {
        "system": uname.sysname,
        "arch": platform.machine(),
        "distro": field(_distro),
        "libc": field(_libc),
        "kernel": uname.release,
        "hostname": uname.nodename,
        "container": field(_container),
        "virtualization": field(_virtualization),
        "limits": field(_limits),
    }


def _distro() -> dict[str, Any]:
    for candidate in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = Path(candidate).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        values = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip("'\"")
        return {
            "id": values.get("ID"),
            "version_id": values.get("VERSION_ID"),
            "pretty_name": values.get("PRETTY_NAME"),
        }
    return unavailable("no /etc/os-release or /usr/lib/os-release")


def _libc() -> dict[str, Any]:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        text = ""
    name, _, version = text.partition(" ")
    if not version:
        name, version = platform.libc_ver()
    if not version:
        return unavailable("not glibc (os.confstr and platform.libc_ver know no other libc)")
    return {"name": name, "version": version}


def _cgroup_lines() -> list[tuple[str, str]]:
    """``(controllers, path)`` per line of /proc/self/cgroup."""
    lines = []
    for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            lines.append((parts[1], parts[2]))
    return lines


def _container() -> dict[str, Any]:
    evidence = []
    runtime = None
    if Path("/.dockerenv").exists():
        evidence.append("/.dockerenv")
        runtime = "docker"
    if Path("/run/.containerenv").exists():
        evidence.append("/run/.containerenv")
        runtime = runtime or "podman"
    try:
        cgroup_text = Path("/proc/1/cgroup").read_text(encoding="utf-8")
    except OSError:
        cgroup_text = ""
    for word in _CONTAINER_CGROUP_WORDS:
        if word in cgroup_text:
            evidence.append(f"cgroup:{word}")
            runtime = runtime or ("kubernetes" if word == "kubepods" else word)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        evidence.append("KUBERNETES_SERVICE_HOST")
        runtime = "kubernetes"
    return {"detected": bool(evidence), "runtime": runtime, "evidence": evidence}


def _virtualization() -> dict[str, Any]:
    dmi = Path("/sys/class/dmi/id")
    return {
        "hypervisor_flag": "hypervisor" in raw_flags(),
        "dmi_vendor": field(_read_stripped, dmi / "sys_vendor"),
        "dmi_product": field(_read_stripped, dmi / "product_name"),
    }


def _read_stripped(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _limits() -> dict[str, Any]:
    lines = _cgroup_lines()
    v1 = {
        name: path for controllers, path in lines if controllers for name in controllers.split(",")
    }
    unified = next((path for controllers, path in lines if controllers == ""), None)
    if v1:
        version = "v1+v2" if unified is not None and (_CGROUP_ROOT / "unified").is_dir() else "v1"
    else:
        version = "v2"
    return {
        "cgroup_version": version,
        "cpu_quota_cores": field(_cpu_quota, v1, unified),
        "memory_limit_bytes": field(_memory_limit, v1, unified),
    }


def _controller_file(mount: str, cgroup_path: str, name: str) -> Path:
    """The file for this process's cgroup; inside a cgroup namespace the path is the mount root."""
    base = _CGROUP_ROOT / mount if mount else _CGROUP_ROOT
    own = base / cgroup_path.lstrip("/") / name
    return own if own.exists() else base / name


def _cpu_quota(v1: dict[str, str], unified: str | None) -> float | None:
    """Cores the cgroup lets this process use; None when there is no quota."""
    if "cpu" in v1:
        mount = "cpu,cpuacct" if (_CGROUP_ROOT / "cpu,cpuacct").is_dir() else "cpu"
        quota = int(_controller_file(mount, v1["cpu"], "cpu.cfs_quota_us").read_text())
        period = int(_controller_file(mount, v1["cpu"], "cpu.cfs_period_us").read_text())
        return None if quota < 0 or period <= 0 else round(quota / period, 3)
    if unified is not None:
        parts = _controller_file("", unified, "cpu.max").read_text().split()
        if not parts or parts[0] == "max":
            return None
        period = int(parts[1]) if len(parts) > 1 else 100_000
        return round(int(parts[0]) / period, 3)
    return None


def _memory_limit(v1: dict[str, str], unified: str | None) -> int | None:
    """Bytes the cgroup lets this process use; None when unlimited."""
    if "memory" in v1:
        text = _controller_file("memory", v1["memory"], "memory.limit_in_bytes").read_text()
    elif unified is not None:
        text = _controller_file("", unified, "memory.max").read_text()
    else:
        return None
    text = text.strip()
    if text == "max":
        return None
    value = int(text)
    return None if value >= _UNLIMITED else value
