"""Environment bisection's building blocks: package changes as restorable groups, and isolated
environments built with uv that put a group's golden versions back.

``packages`` decides (standard library only, and the trust rules for golden data); ``uv`` builds,
caches and runs. Neither imports TensorFlow; importing this package is cheap.
"""

from __future__ import annotations

from envaudit.environments.packages import (
    PackageGroup,
    PackageSet,
    base_pins,
    package_groups,
    restore_problem,
    restored,
)
from envaudit.environments.uv import (
    EnvBuildError,
    clear_cache,
    ensure_env,
    env_root,
    run_workload,
)

__all__ = ["PackageGroup", "PackageSet", "base_pins", "package_groups", "restore_problem",
           "restored", "EnvBuildError", "clear_cache", "ensure_env", "env_root", "run_workload"]
