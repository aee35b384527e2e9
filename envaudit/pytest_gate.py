"""What the pytest plugin does when a test calls ``envaudit_check``: find the golden, check it (or
record it, with ``--envaudit-record``) and turn the answer into a pass, a failure or a skip.

One ``Gate`` per pytest process holds the session's options and every call's ``GateEntry``; the
plugin (``pytest_plugin.py``) creates it at the first call and lists the entries at the end of the
session. Under pytest-xdist each worker has its own gate and sends its entries to the controller
as plain dicts (``GateEntry.to_dict``), which lists them once.

Constraints for the next editor:

- A check runs in the test's own process (``envaudit.check``): the environment variables and the
  libraries TensorFlow loaded there are the ones the user's tests run with, and TensorFlow is
  imported once per process, not once per check. Confirmation re-runs are children, as always.
- A failure is ``pytest.fail(..., pytrace=False)``: the check's own words (``render/pytest_text``),
  no traceback through envaudit. A user error (``EnvauditError``) fails the test with its one line.
- Recording goes through ``envaudit.record`` / ``usermodel.record`` with ``force``: atomic, and
  never over what envaudit did not write. Workers that record into one folder take turns (an
  exclusive ``flock`` on the folder, or on a lock file beside the golden where the file system
  cannot lock a folder), and a golden recorded since the session began is not recorded again.
- Nothing heavy at import: NumPy and TensorFlow come with the store and the check, inside calls.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pytest

from envaudit.errors import EnvauditError

if TYPE_CHECKING:
    from envaudit.result import CheckResult
    from envaudit.usermodel.spec import DetectionNames, Tolerances

Outcome = Literal["identical", "equivalent", "drift", "precision_loss", "recorded",
                  "recorded earlier", "error"]
OUTCOMES: tuple[str, ...] = ("identical", "equivalent", "drift", "precision_loss", "recorded",
                             "recorded earlier", "error")
# Where a worker's entries travel to the controller, in ``config.workeroutput``.
WORKER_KEY = "envaudit"
# Said after a golden problem (none there, or corrupt): how to record one from the tests.
RECORD_HINT = "to record it from these tests, run pytest once with --envaudit-record"


@dataclass(frozen=True)
class GateEntry:
    """One ``envaudit_check`` call of the session, as the terminal summary lists it."""

    test: str  # the test's node id
    golden: str  # the golden's path as shown (redacted), or where envaudit's default points
    outcome: Outcome
    passed: bool  # the test went on (a check that passed; a recording skips it, an error fails)
    strict: bool
    detail: str = ""  # an error's one line
    fingerprint_id: str = ""  # the environment the check or recording ran in ("" for an error)
    # That environment's summary facts (label, value), redacted (``render/pytest_text``).
    environment: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> GateEntry | None:
        """An entry a worker sent, or None where it is not one (a worker of another version)."""
        if not isinstance(data, Mapping) or data.get("outcome") not in OUTCOMES:
            return None
        texts = ("test", "golden", "detail", "fingerprint_id")
        if not all(isinstance(data.get(k, ""), str) for k in texts):
            return None
        facts = data.get("environment", ())
        if not isinstance(facts, (list, tuple)) or not all(
                isinstance(f, (list, tuple)) and len(f) == 2 and all(isinstance(s, str) for s in f)
                for f in facts):
            return None
        return cls(test=data.get("test", ""), golden=data.get("golden", ""),
                   outcome=data["outcome"], passed=bool(data.get("passed")),
                   strict=bool(data.get("strict")), detail=data.get("detail", ""),
                   fingerprint_id=data.get("fingerprint_id", ""),
                   environment=tuple((a, b) for a, b in facts))


@dataclass(frozen=True)
class GateOptions:
    """The session's choices: where a call without ``golden=`` looks, and whether it records."""

    golden: Path | None  # --envaudit-golden > ini envaudit_golden > envaudit's configuration
    record: bool  # --envaudit-record
    started: float  # when the session began (the controller's clock under xdist), epoch seconds

    @classmethod
    def of(cls, config: pytest.Config, started: float) -> GateOptions:
        """The options of ``config``'s session."""
        return cls(session_golden(config), bool(config.getoption("envaudit_record")), started)


class Gate:
    """The session's envaudit calls in one pytest process, and what they found."""

    def __init__(self, options: GateOptions, sink: dict[str, Any] | None = None) -> None:
        self.options = options
        self.entries: list[GateEntry] = []
        self._sink = sink  # an xdist worker's ``workeroutput``: what the controller receives

    def check(self, item: pytest.Item, *, model: str | os.PathLike[str] | None = None,
              inputs: str | os.PathLike[str] | None = None,
              golden: str | os.PathLike[str] | None = None,
              tolerances: Tolerances | str | Sequence[str] | None = None,
              detections: DetectionNames | str | None = None,
              modes: Sequence[str] | None = None, strict: bool = False,
              confirm: bool = True) -> CheckResult:
        """Check (or, with --envaudit-record, record) for ``item``: the fixture's callable."""
        __tracebackhide__ = True  # pytest points a failure or a skip at the test's line
        here = Path(item.path).parent
        explicit = _under(here, golden)
        target = explicit if explicit is not None else self.options.golden
        try:
            if self.options.record:  # records, then skips the test
                self._record(item, target, _under(here, model), _under(here, inputs),
                             _detection_names(detections), modes)
            return self._check(item, target, model=_under(here, model), strict=strict,
                               modes=modes, confirm=confirm, tolerances=_tolerances(tolerances),
                               detections=_detection_names(detections))
        except EnvauditError as exc:
            problem = str(exc)
        self._error(item, target, problem)  # outside the except: no chained traceback

    def _check(self, item: pytest.Item, target: Path | None, *, model: Path | None,
               strict: bool, modes: Sequence[str] | None, confirm: bool,
               tolerances: Tolerances | None, detections: DetectionNames | None) -> CheckResult:
        __tracebackhide__ = True
        import envaudit
        from envaudit.redact_result import shareable
        from envaudit.render import pytest_text
        from envaudit.store import load_bundle, resolve_golden

        path = resolve_golden(target)
        try:  # a missing or corrupt golden, said with how to record one (the check reads it
            load_bundle(path)  # again: a tenth of a second for the canary's)
        except EnvauditError as exc:
            raise EnvauditError(f"{exc}; {RECORD_HINT}") from None
        result = envaudit.check(golden=str(path), strict=strict, modes=modes, confirm=confirm,
                                model=None if model is None else str(model),
                                tolerances=tolerances, detections=detections)
        shown = shareable(result)
        passed = result.exit_code == 0
        self._add(GateEntry(item.nodeid, shown.golden_path, shown.verdict, passed, strict,
                            fingerprint_id=result.current_fingerprint_id,
                            environment=_facts(shown.current_fingerprint)))
        if not passed:
            item.add_report_section("call", "envaudit report", pytest_text.report(shown))
            pytest.fail(pytest_text.failure_message(shown), pytrace=False)
        return result

    def _record(self, item: pytest.Item, target: Path | None, model: Path | None,
                inputs: Path | None, detections: DetectionNames | None,
                modes: Sequence[str] | None) -> None:
        __tracebackhide__ = True
        from envaudit.fingerprint.redact import Redactor
        from envaudit.store import default_bundle_path

        path = (target if target is not None else default_bundle_path()).absolute()
        with _folder_locked(path):
            earlier = _recorded_since(path, self.options.started)
            bundle = None if earlier else _record_bundle(path, model, inputs, detections, modes)
        fingerprint = _recorded_fingerprint(path) if bundle is None else bundle.fingerprint
        shown = Redactor.for_trees(fingerprint).text(str(path))
        outcome: Outcome = "recorded earlier" if earlier else "recorded"
        self._add(GateEntry(item.nodeid, shown, outcome, True, False,
                            fingerprint_id=fingerprint.fingerprint_id,
                            environment=_facts(fingerprint)))
        from envaudit.render import pytest_text

        pytest.skip(pytest_text.recorded_reason(shown, earlier))

    def _error(self, item: pytest.Item, target: Path | None, line: str) -> NoReturn:
        __tracebackhide__ = True
        from envaudit.render.escape import for_terminal

        shown = "envaudit's default golden" if target is None else str(target)
        self._add(GateEntry(item.nodeid, shown, "error", False, False, detail=line))
        pytest.fail(f"envaudit: {for_terminal(line)}", pytrace=False)

    def _add(self, entry: GateEntry) -> None:
        self.entries.append(entry)
        if self._sink is not None:
            self._sink.setdefault(WORKER_KEY, []).append(entry.to_dict())

    def receive(self, entries: Any) -> None:
        """Entries a worker sent (the controller's side of ``_add``)."""
        for data in entries if isinstance(entries, list) else ():
            entry = GateEntry.from_dict(data)
            if entry is not None:
                self.entries.append(entry)


def session_golden(config: pytest.Config) -> Path | None:
    """The golden of a call without ``golden=``: --envaudit-golden (from the folder pytest was
    started in) > ini envaudit_golden (from the ini file's folder) > envaudit's configuration
    (``envaudit.toml`` or ``[tool.envaudit]`` found from the root folder up: its ``golden``, else
    its ``name``) > None: envaudit's own default (``store.resolve_golden``; a recording goes where
    ``envaudit record`` writes)."""
    given = config.getoption("envaudit_golden")
    if given:
        return within(config.invocation_params.dir, given)
    ini = config.getini("envaudit_golden")
    if ini:
        return within(config.inipath.parent if config.inipath else config.rootpath, str(ini))
    from envaudit import config as settings

    value_of = getattr(settings, "value", None)  # None: an envaudit.config being written
    if value_of is None:
        return None
    golden, name = value_of("golden", config.rootpath), value_of("name", config.rootpath)
    if golden is not None:
        return within(config.rootpath, str(golden))
    from envaudit.store import default_bundle_path

    return None if name is None else default_bundle_path(str(name))


def _under(folder: Path, path: str | os.PathLike[str] | None) -> Path | None:
    """``path`` as given to ``envaudit_check``: a relative one is taken from the test file's
    folder, so a test finds its golden and model from any working folder."""
    if path is None:
        return None
    return within(folder, path)


def within(folder: Path, path: str | os.PathLike[str]) -> Path:
    """``path`` (``~`` expanded) taken from ``folder`` when relative, with ``..`` folded away
    (as shown and as used)."""
    return Path(os.path.normpath(folder / Path(os.fspath(path)).expanduser()))


def _tolerances(value: Tolerances | str | Sequence[str] | None) -> Tolerances | None:
    """``tolerances=``: a ``Tolerances`` or ``--tolerance`` texts ("logits=rtol:1e-5")."""
    from envaudit.usermodel.spec import parse_tolerances

    if value is None or not isinstance(value, (str, list, tuple)):
        return value
    return parse_tolerances([value] if isinstance(value, str) else list(value))


def _detection_names(value: DetectionNames | str | None) -> DetectionNames | None:
    """``detections=``: a ``DetectionNames`` or ``--detections`` text ("boxes=B,scores=S,...")."""
    from envaudit.usermodel.spec import parse_detections

    return parse_detections(value) if isinstance(value, str) else value


def _facts(fingerprint: Any) -> tuple[tuple[str, str], ...]:
    from envaudit.render import pytest_text

    return pytest_text.environment_facts(fingerprint) if fingerprint is not None else ()


@contextlib.contextmanager
def _folder_locked(golden: Path) -> Iterator[None]:
    """Held while ``golden`` is recorded: another process recording into its folder waits. The
    folder itself is locked (nothing is left behind); where the file system cannot lock a folder
    (NFS), a lock file beside the golden is."""
    folder = golden.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.close(fd)
            fd = os.open(folder / f".{golden.name}.envaudit-lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _recorded_since(path: Path, started: float) -> bool:
    """Whether the golden at ``path`` was recorded since ``started`` (by another test or another
    worker of this session): its manifest's creation time, which has whole seconds."""
    from envaudit.store import read_manifest

    try:
        created = datetime.fromisoformat(str(read_manifest(path)["created_at"]))
    except (EnvauditError, ValueError):
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return created.timestamp() >= started


def _recorded_fingerprint(path: Path) -> Any:
    from envaudit.store import load_bundle

    return load_bundle(path).fingerprint


def _record_bundle(path: Path, model: Path | None, inputs: Path | None,
                   detections: DetectionNames | None, modes: Sequence[str] | None) -> Any:
    """Record the golden at ``path`` again (or for the first time), as it was recorded: the
    canary in the modes it holds (a new one: the default modes) and any ``modes`` the test asks
    for, with the training steps it holds (a new one: the default steps); or the user's model
    (``model``, ``inputs``) in the mode and with the signature it was recorded with."""
    from envaudit.store import is_user_model, read_manifest

    try:
        manifest: Mapping[str, Any] = read_manifest(path)
    except EnvauditError:
        manifest = {}  # none there yet, or unreadable: recorded afresh (force still refuses
        #                 to replace a folder envaudit did not write)
    if model is not None or (manifest and is_user_model(manifest)):
        previous = manifest if manifest and is_user_model(manifest) else {}
        return _record_model(path, previous, model, inputs, detections)
    from envaudit import modes as registry
    from envaudit.record import record
    from envaudit.workload import training_spec

    # A golden other tests may check too: never fewer modes than it had, or than the default.
    held = ([*(manifest.get("modes") or (registry.DEFAULT,)), *manifest.get("not_run", {})]
            if manifest else registry.recorded_by_default())  # schema 1 held eager alone
    steps = training_spec.entry_steps(manifest) if manifest else None
    trained = training_spec.entry_modes(manifest) if manifest else ()
    return record(path, force=True, modes=registry.in_order([*held, *(modes or ())]),
                  steps=steps, training_modes=trained or None)


def _record_model(path: Path, manifest: Mapping[str, Any], model: Path | None,
                  inputs: Path | None, detections: DetectionNames | None) -> Any:
    """Record the user's model at ``path``, as ``manifest`` (the model golden there, or {})
    recorded it."""
    from envaudit import modes as registry
    from envaudit.usermodel.record import record_model
    from envaudit.usermodel.spec import ModelInfo
    from envaudit.workload import training_spec

    if model is None or inputs is None:
        raise EnvauditError(f"golden {path} is your own model's: to record it, pass model=PATH"
                            " and inputs=PATH to envaudit_check")
    info = ModelInfo.from_manifest(manifest["workload"]) if manifest else None
    if manifest and training_spec.entry_steps(manifest):
        raise EnvauditError(f"golden {path} holds training steps of your model, which"
                            " envaudit_check cannot train again; re-record it with 'envaudit"
                            " record --model ... --train-inputs ... --force'")
    converted = info is not None and registry.get(info.mode).converted
    return record_model(path, model=model, inputs=inputs, force=True,
                        signature=info.signature if info else None,
                        detections=detections or (info.detections if info else None),
                        mode=info.mode if converted and info else None)
