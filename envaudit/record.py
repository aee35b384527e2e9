"""``envaudit record``: run the golden workload here and store it as a golden bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from envaudit.store import GoldenBundle, check_writable, load_bundle, write_bundle
from envaudit.tf32 import Tf32Option, decide, fingerprint_capabilities, require_option
from envaudit.workload import tf32_switch


def record(path: Path, *, force: bool = False, redact: bool = True,
           progress: Callable[[str], None] = lambda _m: None,
           tf32: Tf32Option = "default") -> GoldenBundle:
    """Record a bundle at ``path``; refuses an existing one unless ``force``. A bundle is made
    to be shared, so its fingerprint is redacted unless ``redact`` is False (the manifest says
    which; ``fingerprint_id`` is the one computed before redaction). ``tf32``: TensorFlow's TF32
    switch for the run (``default``: TensorFlow's choice); the state it had is recorded."""
    path = Path(path)
    check_writable(path, force)  # before the seconds of work, not after
    require_option(tf32)
    from envaudit import modes
    from envaudit.fingerprint import capture
    from envaudit.workload import WORKLOAD_ID, WORKLOAD_VERSION, run_workload
    from envaudit.workload.architecture import OUTSIDE_XLA
    from envaudit.workload.assets import load_assets, used_checksums
    from envaudit.workload.twin import Twin

    progress("running the workload")
    assets = load_assets()
    with tf32_switch.switched(tf32):
        result = run_workload(assets, modes=modes.names())  # every registered mode
        switch = tf32_switch.reading()
    progress("computing the float64 twin")
    twin = Twin(assets.weights).run(result.stages["decode"])
    progress("capturing the fingerprint")
    fingerprint = capture()  # after the workload, so the libraries TensorFlow loaded are listed
    state = decide(tf32, *switch, result.devices.values(), fingerprint_capabilities(fingerprint))
    if redact:
        from envaudit.fingerprint.redact import Redactor
        from envaudit.fingerprint.types import Fingerprint

        fingerprint = Fingerprint(Redactor.for_trees(fingerprint).tree(fingerprint.data))
    progress("writing the bundle")
    write_bundle(
        path,
        fingerprint=fingerprint,
        workload={"id": WORKLOAD_ID, "version": WORKLOAD_VERSION,
                  "assets": used_checksums(assets), "timings": dict(result.timings)},
        images=result.images,
        stages={mode: run.stages for mode, run in result.runs.items()},
        probes=result.probes,
        twin=twin,
        not_run=result.not_run,
        outside_xla=OUTSIDE_XLA if modes.XLA in result.runs else {},
        devices=result.devices,
        device_names=result.device_names,
        force=force,
        redacted=redact,
        tf32_state=state,
    )
    return load_bundle(path)
