"""Probe: system memory in bytes.

Only informational (free memory never changes the numbers, nor the fingerprint_id). Read from
/proc/meminfo; psutil (about 20 ms to import) only where there is none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MEMINFO = Path("/proc/meminfo")


def probe(meminfo_path: Path = MEMINFO) -> dict[str, Any]:
    try:
        text = meminfo_path.read_text(encoding="utf-8")
    except OSError:
        import psutil

        virtual, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {
            "source": "psutil",
            "total_bytes": int(virtual.total),
            "available_bytes": int(virtual.available),
            "swap_total_bytes": int(swap.total),
        }
    kib = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            kib[key.strip()] = int(parts[0])
    return {
        "source": str(meminfo_path),
        "total_bytes": kib["MemTotal"] * 1024,
        "available_bytes": kib.get("MemAvailable", kib.get("MemFree", 0)) * 1024,
        "swap_total_bytes": kib.get("SwapTotal", 0) * 1024,
    }
