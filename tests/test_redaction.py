"""The redaction policy, rule by rule, with exact outputs: secret and unrecorded variables, URL
userinfo and tokens, homes (as root and as a user) and other users' data folders, host and user
names (with their domains; a forged short hostname rewrites nothing), hosts in TF_CONFIG, GPU
identifiers; a check result is redacted field by field. Who and where the machine is comes from
recorded inputs (``Identity.of``), never from the machine running the test. What capture records
(names, token values, URL tokens): tests/test_redaction_capture.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import re
import string

import pytest
from rich.console import Console
from test_render_check import make_result

from envaudit.attribute.types import Cause
from envaudit.fingerprint import Fingerprint, diff
from envaudit.fingerprint.credentials import has_token
from envaudit.fingerprint.redact import Identity, Redactor, hashed
from envaudit.fingerprint.types import Change
from envaudit.redact_result import redact_result
from envaudit.render import check_json, check_junit, check_md, check_text

SALT = b"test-salt"
ALICE = Identity.of(hostnames=["build-7"], users=["alice"], homes=["/home/alice/"])
ROOT = Identity.of(hostnames=["build-7"], users=["root"], homes=["/root"])
# Shaped like the real thing (prefix, length, alphabet), made up.
GITHUB_TOKEN = "ghp_" + "Zx8Qw3Er7Ty1Ui5Op9As2Df6Gh0Jk4Lz7Xc3V"
GPU_UUID = "GPU-8c3d8b3e-3e26-5a4f-9f3b-2c1d0e9f8a7b"
CLOUDSMITH_TOKEN = "aB3dE5gH7jK9mN1p"  # an index token in a URL path: 16 characters


def policy(*trees, identity: Identity = ALICE) -> Redactor:
    return Redactor.for_trees(*trees, salt=SALT, identity=identity)


# -- the policy on a fingerprint tree -----------------------------------------------------------

def fingerprint_tree(hostname: str = "gpu-node-3") -> dict:
    return {
        "schema": "envaudit.fingerprint/1",
        "fingerprint_id": "fp-0123456789abcdef",
        "python": {"executable": "/home/alice/.venv/bin/python"},
        "os": {"hostname": hostname, "kernel": "6.8.0"},
        "gpu": {"devices": [{"uuid": GPU_UUID, "serial": "1652322012345", "name": "NVIDIA H100"}],
                "cuda_visible_devices": GPU_UUID},
        "tensorflow": {"git_version": "v2.16.1-0-g5bc9d26649c",
                       "location": "/home/alice/.venv/lib/python3.11/site-packages/tensorflow"},
        "packages": {"numpy": {"version": "1.26.4", "sha256": "ab" * 32}},
        "env": {
            "TF_VAR_db_pass": "hunter2-hunter2", "NCCL_IB_PASSWD": "abc",
            "TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false",
            "CUDA_CACHE_ID": GITHUB_TOKEN, "LD_LIBRARY_PATH": "/home/alice/cuda/lib64:/opt/x",
            "NCCL_MODEL_STORE": "https://bob:s3cret@store.example.com/models",
            "OMP_NOTE": "db password hunter2-hunter2 set on gpu-node-3",
        },
    }


def test_tree_is_redacted_rule_by_rule():
    tree = fingerprint_tree()
    redactor = policy(tree)
    uuid_hash, serial_hash = hashed(GPU_UUID, SALT), hashed("1652322012345", SALT)
    assert redactor.tree(tree) == {
        "schema": "envaudit.fingerprint/1",
        "fingerprint_id": "fp-0123456789abcdef",
        "python": {"executable": "~/.venv/bin/python"},
        "os": {"hostname": "[hostname]", "kernel": "6.8.0"},
        "gpu": {"devices": [{"uuid": uuid_hash, "serial": serial_hash, "name": "NVIDIA H100"}],
                "cuda_visible_devices": uuid_hash},
        # hex digests and commit ids outside variables are facts, kept
        "tensorflow": {"git_version": "v2.16.1-0-g5bc9d26649c",
                       "location": "~/.venv/lib/python3.11/site-packages/tensorflow"},
        "packages": {"numpy": {"version": "1.26.4", "sha256": "ab" * 32}},
        "env": {
            "TF_VAR_db_pass": "[redacted]", "NCCL_IB_PASSWD": "[redacted]",
            "TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false",
            "CUDA_CACHE_ID": "[redacted]", "LD_LIBRARY_PATH": "~/cuda/lib64:/opt/x",
            "NCCL_MODEL_STORE": "https://[redacted]@store.example.com/models",
            "OMP_NOTE": "db password [redacted] set on [hostname]",
        },
    }
    assert uuid_hash != hashed(GPU_UUID, b"another-salt")


def test_secret_values_are_hidden_wherever_they_are_quoted():
    redactor = policy(fingerprint_tree())
    assert redactor.text("env.TF_VAR_db_pass: unset -> 'hunter2-hunter2'") == (
        "env.TF_VAR_db_pass: unset -> '[redacted]'")
    assert redactor.text(f"restored to {GITHUB_TOKEN!r}") == "restored to '[redacted]'"
    # "abc" is too short to hide everywhere ("tabc", "abc-1", "abc"), so only where quoted.
    assert redactor.text("NCCL_IB_PASSWD restored to 'abc', was \"abc\"") == (
        "NCCL_IB_PASSWD restored to '[redacted]', was \"[redacted]\"")
    assert redactor.text("tabc abc-1 abc") == "tabc abc-1 abc"
    assert "hunter2" not in repr(redactor) and "alice" not in repr(redactor)


def test_a_secret_quoted_with_escapes_is_hidden_in_that_form_too():
    tree = {"env": {"TF_VAR_db_pass": "it's\\a \"pw\"-long"}}
    redactor = policy(tree)
    value = tree["env"]["TF_VAR_db_pass"]
    assert redactor.text(f"old {value!r}, json {json.dumps(value)}") == (
        "old '[redacted]', json \"[redacted]\"")


def test_values_by_fingerprint_path():
    redactor = policy(fingerprint_tree())
    assert redactor.value("env.TF_VAR_db_pass", "anything") == "[redacted]"
    assert redactor.value("env.TF_VAR_db_pass", None) is None  # unset is not a secret
    assert redactor.value("env.CUDA_CACHE_ID", GITHUB_TOKEN) == "[redacted]"
    assert redactor.value("env.TF_ENABLE_ONEDNN_OPTS", "0") == "0"
    assert redactor.value("os.hostname", "gpu-node-3") == "[hostname]"
    assert redactor.value("packages.numpy.sha256", "ab" * 32) == "ab" * 32
    assert redactor.value("cpu.flags", ["avx2", "build-7"]) == ["avx2", "[hostname]"]


@pytest.mark.parametrize(("identity", "text", "expected"), [
    (ALICE,
     "/home/alice/cuda:/home/alice2/x:/home/bob/lib:/Users/carol/.cache:/root/cuda:/rootfs/lib"
     ":/data/home/alice/x:/home/alice",
     "~/cuda:/home/[user]/x:/home/[user]/lib:/home/[user]/.cache:~root/cuda:/rootfs/lib"
     ":/data/home/[user]/x:~"),
    (ROOT,
     "/root/.cache:/home/bob/lib:/rootfs/lib:/mnt/root/x",
     "~/.cache:/home/[user]/lib:/rootfs/lib:/mnt/root/x"),
    (Identity.of(hostnames=[], users=["svc"], homes=["/"]),  # HOME=/ hides nothing
     "/usr/lib:/opt/x", "/usr/lib:/opt/x"),
])
def test_home_paths_as_user_and_as_root(identity, text, expected):
    assert policy(identity=identity).text(text) == expected


def test_host_and_user_names_as_whole_words():
    redactor = policy(fingerprint_tree("gpu-node-3"))  # build-7 is this machine, per ALICE
    assert redactor.text("from build-7 to gpu-node-3.example.com, by alice") == (
        "from [hostname] to [hostname], by [user]")  # the domain goes with the name
    assert redactor.text("build-70 gpu-node-3x malice alice_bot") == (
        "build-70 gpu-node-3x malice alice_bot")
    as_root = policy(identity=ROOT)
    assert as_root.text("owned by root in /rootfs") == "owned by root in /rootfs"


def test_golden_and_current_redacted_alike_diff_cleanly():
    """A golden recorded elsewhere and the current tree, each redacted by one policy, differ only
    where the facts do: not by hostname, by secret or by token."""
    golden = fingerprint_tree("gpu-node-3")
    current = fingerprint_tree("build-7")
    current["env"] = {**current["env"], "TF_VAR_db_pass": "other-password", "OMP_NOTE": "",
                      "CUDA_CACHE_ID": "ghp_" + "Qq1Ww2Ee3Rr4Tt5Yy6Uu7Ii8Oo9Pp0Aa1Ss2",
                      "TF_ENABLE_ONEDNN_OPTS": "1"}
    redactor = policy(golden, current)
    changes = diff(Fingerprint(redactor.tree(golden)), Fingerprint(redactor.tree(current)))
    assert [(c.path, c.golden, c.current) for c in changes] == [
        ("env.OMP_NOTE", "db password [redacted] set on [hostname]", ""),
        ("env.TF_ENABLE_ONEDNN_OPTS", "0", "1"),
    ]


# -- property: no generated secret survives -----------------------------------------------------

_NAME_PARTS = ("SECRET", "TOKEN", "KEY", "PASS", "PASSWD", "PASSWORD", "PWD", "AUTH", "COOKIE",
               "SESSION", "PRIVATE", "DSN", "CREDENTIAL", "CRED", "SIGNATURE", "SALT")
_PREFIXES = ("TF_", "NCCL_", "CUDA_", "OMP_", "XLA_", "", "MY_")
_SECRET_CHARS = string.ascii_letters + string.digits + "!#$%&'()*+,-./:;<=>?@[]^_`{|}~\\\" "
_URL_PW_CHARS = string.ascii_letters + string.digits + "!$%&()*+,-.:;=?[]^_`{|}~@"


def _random_case(rng: random.Random, word: str) -> str:
    return "".join(c.lower() if rng.random() < 0.5 else c for c in word)


def _generated_token(rng: random.Random) -> str:
    base62 = string.ascii_letters + string.digits
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(("ghp_", "hf_", "npm_", "glpat-")) + "".join(
            rng.choice(base62) for _ in range(rng.randint(30, 40))) + rng.choice(string.digits)
    if kind == 1:
        return "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((32, 40, 64))))
    return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(15)) + "7"


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def test_property_no_generated_secret_survives():
    rng = random.Random(20240607)
    for case in range(300):
        secret = "".join(rng.choice(_SECRET_CHARS) for _ in range(rng.randint(8, 40)))
        name = rng.choice(_PREFIXES) + _random_case(rng, rng.choice(_NAME_PARTS)) + rng.choice(
            ("", "_FILE", "_2", "WORD", "_db"))
        password = "".join(rng.choice(_URL_PW_CHARS) for _ in range(rng.randint(1, 24)))
        token = _generated_token(rng)
        tree = {
            "os": {"hostname": f"host-{case}"},
            "env": {name: secret, "NCCL_STORE": f"s3://user{case}:{password}@bucket/path",
                    f"CUDA_ID_{case}": token, "TF_ENABLE_ONEDNN_OPTS": "0"},
            "notes": [f"value was {secret!r}", f"raw {secret} end", json.dumps({"v": secret})],
        }
        redactor = policy(tree)
        redacted = redactor.tree(tree)
        texts = [*_strings(redacted),
                 redactor.text(f"env.{name}: {secret!r} -> unset; {token!r}; {secret}"),
                 redactor.text(f"see https://u:{password}@host/x")]
        for text in texts:
            assert secret not in text and repr(secret)[1:-1] not in text, (case, text)
            assert token not in text, (case, text)
            assert f":{password}@" not in text, (case, text)
        assert redacted["env"][f"CUDA_ID_{case}"] == "[redacted]"
        assert redacted["env"]["TF_ENABLE_ONEDNN_OPTS"] == "0"


# -- a check result -----------------------------------------------------------------------------

def check_result_with_secrets():
    base = make_result()
    return dataclasses.replace(
        base,
        headline=f"drift on build-7: {base.headline}",
        golden_path="/home/alice/goldens/default",
        fingerprint_changes=(
            Change("env.TF_VAR_db_pass", "old-pass-123", "new-pass-456", "numerics-env", True),
            Change("os.hostname", "gpu-node-3", "build-7", "info", False),
            Change("python.executable", "/home/bob/.venv/bin/python",
                   "/home/alice/.venv/bin/python", "python", False),
            *base.fingerprint_changes,
        ),
        causes=(
            Cause("env.TF_VAR_db_pass: 'old-pass-123' -> 'new-pass-456'", "possible",
                  ("re-running with TF_VAR_db_pass restored to 'old-pass-123' changed nothing",
                   "recorded on gpu-node-3 by alice in /home/alice/goldens"),
                  "env.TF_VAR_db_pass"),
            *base.causes,
        ),
    )


def test_check_result_is_redacted_field_by_field():
    result = check_result_with_secrets()
    redacted = redact_result(result, policy())  # the secrets come from the changes themselves
    assert redacted.headline == f"drift on [hostname]: {make_result().headline}"
    assert redacted.golden_path == "~/goldens/default"
    changes = redacted.fingerprint_changes[:4]
    assert [(c.path, c.golden, c.current, c.category) for c in changes] == [
        ("env.TF_VAR_db_pass", "[redacted]", "[redacted]", "numerics-env"),
        # this policy knew only build-7; the field itself is hidden whatever it holds
        ("os.hostname", "[hostname]", "[hostname]", "info"),
        ("python.executable", "/home/[user]/.venv/bin/python", "~/.venv/bin/python", "python"),
        ("os.hostname", "[hostname]", "[hostname]", "info"),
    ]
    cause = redacted.causes[0]
    assert cause.change == "env.TF_VAR_db_pass: '[redacted]' -> '[redacted]'"
    assert cause.evidence == (
        "re-running with TF_VAR_db_pass restored to '[redacted]' changed nothing",
        "recorded on gpu-node-3 by [user] in ~/goldens",
    )
    assert (cause.confidence, cause.path) == ("possible", "env.TF_VAR_db_pass")
    # vocabularies and numbers are untouched
    assert (redacted.verdict, redacted.exit_code, redacted.stages, redacted.detections,
            redacted.timings) == (result.verdict, result.exit_code, result.stages,
                                  result.detections, result.timings)


def test_check_result_with_the_policy_of_both_fingerprints_hides_both_hosts():
    redactor = policy(fingerprint_tree("gpu-node-3"), fingerprint_tree("build-7"))
    redacted = redact_result(check_result_with_secrets(), redactor)
    assert redacted.fingerprint_changes[1].golden == "[hostname]"
    assert redacted.causes[0].evidence[1] == "recorded on [hostname] by [user] in ~/goldens"


def _rendered_text(result) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=110, no_color=True).print(check_text.render(result))
    return buffer.getvalue()


@pytest.mark.parametrize("render", [check_json.render, check_md.render, check_junit.render,
                                    _rendered_text])
def test_every_check_format_of_a_redacted_result_is_clean(render):
    redactor = policy(fingerprint_tree("gpu-node-3"))
    leaks = ("old-pass-123", "new-pass-456", "gpu-node-3", "build-7", "alice", "/home/bob")
    unredacted = render(check_result_with_secrets())
    assert any(leak in unredacted for leak in leaks)  # the format shows some of them
    text = render(redact_result(check_result_with_secrets(), redactor))
    assert [leak for leak in leaks if leak in text] == []
    assert "TF_VAR_db_pass" not in text or "[redacted]" in text


def test_mode_names_are_vocabulary_not_data():
    """A host called "xla" must not turn the xla mode of a result into "[hostname]"."""
    from dataclasses import replace

    from test_render_check import make_result

    from envaudit.compare.types import ModeResult
    from envaudit.fingerprint.redact import Identity, Redactor
    from envaudit.redact_result import redact_result

    result = make_result()
    result = replace(result, stages=tuple(replace(s, mode="xla") for s in result.stages),
                     modes=(ModeResult("xla", "drift", None, None),), moved_modes=("xla",),
                     golden_schema="envaudit.golden/2", headline="moved on xla")
    redactor = Redactor.for_trees(salt=b"s", identity=Identity.of(["xla"], [], []))
    shared = redact_result(result, redactor)
    assert {s.mode for s in shared.stages} == {"xla"}
    assert [m.mode for m in shared.modes] == ["xla"] and shared.moved_modes == ("xla",)
    assert shared.golden_schema == "envaudit.golden/2"
    assert shared.headline == "moved on [hostname]"  # free text is still redacted


def test_a_strangers_fingerprint_shows_no_value_this_version_would_not_record():
    """An older envaudit recorded every TF_* variable: a bundle from then (or a forged one) still
    carries Terraform's values; shared output hides them, wherever they are quoted."""
    tree = {"env": {"TF_CLI_ARGS_apply": "-var=admin_pw=s3cr3t-admin", "TF_IN_AUTOMATION": "1",
                    "TF_ENABLE_ONEDNN_OPTS": "0"}}
    redactor = policy(tree)
    assert redactor.tree(tree)["env"] == {"TF_CLI_ARGS_apply": "[redacted]",
                                          "TF_IN_AUTOMATION": "[redacted]",
                                          "TF_ENABLE_ONEDNN_OPTS": "0"}
    assert redactor.text("restored -var=admin_pw=s3cr3t-admin") == "restored [redacted]"


def test_an_index_url_token_in_bisection_evidence_never_reaches_the_markdown():
    from envaudit.attribute.bisect import Bisection

    index = f"https://pkgs.example.com/{CLOUDSMITH_TOKEN}/simple"
    assert not has_token(CLOUDSMITH_TOKEN)  # too short for the bare-token rule: the URL rule
    result = dataclasses.replace(make_result(), bisection=Bisection(
        (), (), (), (), failure=f"uv pip install: Failed to fetch: `{index}/tensorflow-cpu/`"))
    assert CLOUDSMITH_TOKEN in check_md.render(result)  # the format shows the failure
    shared = check_md.render(redact_result(result, policy()))
    assert CLOUDSMITH_TOKEN not in shared and "pkgs.example.com/[redacted]/simple" in shared


# -- hosts: TF_CONFIG's cluster, domain names, forged short hostnames ---------------------------

TF_CONFIG = json.dumps({
    "cluster": {"chief": ["chief-0.corp.example.com:2222"],
                "worker": ["10.1.2.3:2222", "worker-1:2222", "[fd00::7]:2222"]},
    "task": {"type": "worker", "index": 1}})


def test_tf_config_hosts_and_addresses_are_hidden_wherever_quoted():
    tree = {"env": {"TF_CONFIG": TF_CONFIG, "NCCL_COMM_ID": "10.1.2.3:5555",
                    "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "OMP_PLACES": "{0:4},{4:4}",
                    "NCCL_IB_HCA": "mlx5_0:1,mlx5_1:1"}}
    redactor = policy(tree)
    env = redactor.tree(tree)["env"]
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"chief": ["[host]:2222"], "worker": ["[host]:2222"] * 3},
        "task": {"type": "worker", "index": 1}}
    assert env["NCCL_COMM_ID"] == "[host]:5555"
    assert {k: env[k] for k in ("CUBLAS_WORKSPACE_CONFIG", "OMP_PLACES", "NCCL_IB_HCA")} == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "OMP_PLACES": "{0:4},{4:4}",
        "NCCL_IB_HCA": "mlx5_0:1,mlx5_1:1"}
    quoted = redactor.text(f"env.TF_CONFIG: unset -> {TF_CONFIG!r}")
    for host in ("chief-0", "corp.example.com", "10.1.2.3", "worker-1", "fd00::7"):
        assert host not in quoted and host not in env["TF_CONFIG"]
    change = redactor.value("env.TF_CONFIG", TF_CONFIG)
    assert "10.1.2.3" not in change and "[host]:2222" in change


def test_a_hostname_takes_its_domain_with_it():
    redactor = policy({"os": {"hostname": "gpu-node-3.corp.example.com"}})
    assert redactor.text("from gpu-node-3 and gpu-node-3.corp.example.com.") == (
        "from [hostname] and [hostname].")
    assert policy().text("build-7.corp.example.com:22") == "[hostname]:22"


@pytest.mark.parametrize("forged", ["1", "35", "ab", "1.2", "--"])
def test_a_forged_short_hostname_rewrites_nothing_but_its_field(forged):
    tree = {"os": {"hostname": forged}}
    redactor = policy(tree)
    text = "1 of 35 probes moved; ab testing on 1.2 -- see --"
    assert redactor.text(text) == text
    assert redactor.tree(tree) == {"os": {"hostname": "[hostname]"}}
    result = dataclasses.replace(make_result(), golden_fingerprint=Fingerprint(tree))
    shared = check_md.render(redact_result(result, redactor))
    if forged == "1":  # the report really holds the forged name as a whole word
        assert re.search(rf"(?<![\w.-]){forged}(?![\w-])", check_md.render(result))
    # the same as by a policy that never heard of the forged name
    assert shared == check_md.render(redact_result(result, policy()))


# -- other users' data folders ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("/data/carol/imagenet", "/data/[user]/imagenet"),
    ("/scratch/dave:/opt", "/scratch/[user]:/opt"),
    ("'/data/carol'", "'/data/[user]'"), ("/data/home/alice/x", "/data/home/[user]/x"),
    ("/site-packages/tensorflow/data/ops", "/site-packages/tensorflow/data/ops"),
    ("/mnt/data/x", "/mnt/data/x"), ("/database/x", "/database/x"),
])
def test_other_users_data_folders_are_hidden(text, expected):
    assert policy().text(text) == expected


def test_an_unreadable_env_section_keeps_its_reason():
    tree = {"env": {"available": False, "reason": "OSError: environ unreadable"},
            "os": {"hostname": "gpu-node-3"}}
    redactor = policy(tree)
    assert redactor.tree(tree)["env"] == tree["env"]
    assert redactor.text("OSError: environ unreadable") == "OSError: environ unreadable"
