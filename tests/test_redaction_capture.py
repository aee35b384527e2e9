"""What capture records, so that a fingerprint never holds a secret even with --no-redact: which
variable names are recorded (TensorFlow's and the numerics libraries', never Terraform's) or hide
their values, which values are tokens, URL userinfo and URL tokens (in a variable, in a package's
``direct_url.json``). The redaction of what leaves the machine: tests/test_redaction.py.
"""

from __future__ import annotations

import json
import random
import string

import pytest

from envaudit.fingerprint import env_vars
from envaudit.fingerprint.credentials import (
    has_token,
    looks_secret_name,
    mask_url_credentials,
    mask_url_tokens,
)

# Shaped like the real thing (prefix, length, alphabet), made up.
GITHUB_TOKEN = "ghp_" + "Zx8Qw3Er7Ty1Ui5Op9As2Df6Gh0Jk4Lz7Xc3V"
AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documentation example
BASE64_40 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTIz"
GPU_UUID = "GPU-8c3d8b3e-3e26-5a4f-9f3b-2c1d0e9f8a7b"


# -- which names hide their values --------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "TF_VAR_db_pass", "NCCL_IB_PASSWD", "PGPASSWORD", "MYSQL_PWD", "GITHUB_TOKEN", "api_key",
    "AWS_SECRET_ACCESS_KEY", "NPM_AUTHTOKEN", "HF_AUTH", "SESSION_COOKIE", "FLASK_SESSION",
    "SSH_PRIVATE_KEY_FILE", "SENTRY_DSN", "GOOGLE_APPLICATION_CREDENTIALS", "REGISTRY_CREDS",
    "REQUEST_SIGNATURE", "PASSWORD_SALT", "BEARER", "SLACK_WEBHOOK_URL",
    "AZURE_STORAGE_CONNECTION_STRING", "tf_var_Db_Pass",
])
def test_secret_looking_names(name):
    assert looks_secret_name(name)


@pytest.mark.parametrize("name", [
    "TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "NCCL_IB_HCA", "KMP_AFFINITY",
    "TF_PAS",  # one letter short of PASS
    "NCCL_PW",  # PW is not PWD
    "SSL_CERT_FILE",  # certificates are public; CERT is deliberately not on the list
    "CUDA_CACHE_PATH", "TF_CRE", "OMP_SCHEDULE",
])
def test_names_just_outside_the_list_are_kept(name):
    assert not looks_secret_name(name)


# -- which values are tokens (looked for in variable values only) -------------------------------

@pytest.mark.parametrize("value", [
    "--xla_cpu_enable_fast_math=false", "--xla_gpu_autotune_level=0", "/usr/lib/x86_64-linux-gnu",
    ":4096:8", "AVX512_CORE", "AVX512_CORE_AMX_FP16", "0", "granularity=fine,compact,1,0",
    "/usr/local/cuda-12.5/lib64", "/usr/lib/python3.11/site-packages/nvidia/cudnn/lib",
    "--xla_dump_to=/tmp/xla_dump --xla_gpu_cuda_data_dir=/usr/local/cuda-12.4",
    "v2.16.1-0-g5bc9d26649c", GPU_UUID,  # a device id: hashed by the redaction, not dropped
    "aB3dE5gH7jK9mN1pQ2r",  # 19 characters: one short of a token
    "0123456789abcdef0123456789abcde",  # 31 hex digits: one short of 128 bits
])
def test_ordinary_values_are_not_tokens(value):
    assert not has_token(value)


@pytest.mark.parametrize("value", [
    GITHUB_TOKEN, AWS_SECRET_KEY, BASE64_40, "AKIAIOSFODNN7EXAMPLE",
    "aB3dE5gH7jK9mN1pQ2rS",  # 20 characters, three classes: the shortest token
    "0123456789abcdef0123456789abcdef",  # 32 hex digits
    "e5b4f3a2-1c0d-4e9f-8a7b-6c5d4e3f2a1b",  # a UUID as an API key
    "xoxb-2048-4096-aB3dE5gH7jK9mN1pQ2rSaB3d", "Bearer aB3dE5gH7jK9mN1pQ2rSaB3dE5gH",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
])
def test_credential_values_are_tokens(value):
    assert has_token(value)


def test_random_tokens_are_caught_at_the_documented_rate():
    """Statistics, not a prefix, catch these: at least 99% of random base64 keys of 40 characters
    (AWS secret key shape) and of base62 tokens of 32 (a typical API key)."""
    rng = random.Random(11)
    base62 = string.ascii_letters + string.digits
    for alphabet, length in ((base62 + "+/", 40), (base62, 32)):
        tokens = ["".join(rng.choice(alphabet) for _ in range(length)) for _ in range(1000)]
        assert sum(map(has_token, tokens)) >= 990


# -- URL userinfo -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "masked"), [
    ("postgres://app:pa@ss@db.internal:5432/x", "postgres://[redacted]@db.internal:5432/x"),
    ("git+ssh://git@github.com/org/repo", "git+ssh://[redacted]@github.com/org/repo"),
    ("'redis://:pw@cache:6379/0'", "'redis://[redacted]@cache:6379/0'"),
    ("see http://u:p@h and https://x:y@z/a", "see http://[redacted]@h and https://[redacted]@z/a"),
    ("https://github.com/org/repo@v1", "https://github.com/org/repo@v1"),  # "@" in the path
    ("user@example.com", "user@example.com"),  # no scheme: not a URL
])
def test_url_userinfo_is_masked(text, masked):
    assert mask_url_credentials(text) == masked


# -- capture: the fingerprint never holds a secret ----------------------------------------------

def test_capture_drops_secret_names_and_masks_credential_values():
    environ = {
        "TF_VAR_db_pass": "hunter2", "NCCL_IB_PASSWD": "x", "TF_HUB_AUTH": "y",
        "TF_ENABLE_ONEDNN_OPTS": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu",
        "XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_gpu_autotune_level=0",
        "NCCL_MODEL_STORE": "https://bob:s3cret@store.example.com/models",
        "CUDA_CACHE_ID": GITHUB_TOKEN, "CUDA_VISIBLE_DEVICES": GPU_UUID,
        "HOME": "/home/alice",
    }
    assert env_vars.probe(environ) == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "CUDA_VISIBLE_DEVICES": GPU_UUID,
        "LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "CUDA_CACHE_ID": "[redacted]",
        "NCCL_MODEL_STORE": "https://[redacted]@store.example.com/models",
        "XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_gpu_autotune_level=0",
    }
    assert not env_vars.is_recorded("TF_VAR_db_pass")
    assert env_vars.is_recorded("TF_ENABLE_ONEDNN_OPTS")


# -- which variables are recorded: TensorFlow's, never Terraform's ------------------------------

# Terraform's documented variables (and a plan's inputs): none is TensorFlow's.
TERRAFORM = ("TF_VAR_db_pw", "TF_VAR_region", "TF_CLI_ARGS", "TF_CLI_ARGS_apply",
             "TF_CLI_CONFIG_FILE", "TF_LOG", "TF_LOG_PATH", "TF_LOG_CORE", "TF_LOG_PROVIDER",
             "TF_INPUT", "TF_DATA_DIR", "TF_WORKSPACE", "TF_IN_AUTOMATION",
             "TF_REGISTRY_DISCOVERY_RETRY", "TF_REGISTRY_CLIENT_TIMEOUT",
             "TF_TOKEN_app_terraform_io", "TF_PLUGIN_CACHE_DIR",
             "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE", "TF_IGNORE",
             "TF_STATE_PERSIST_INTERVAL", "TF_APPEND_USER_AGENT", "TF_ACC", "TF_REATTACH_PROVIDERS")


@pytest.mark.parametrize("name", TERRAFORM)
def test_terraform_variables_are_never_recorded(name):
    assert name.startswith("TF_")  # the prefix TensorFlow shares: the attack's precondition
    assert not env_vars.is_recorded(name)


def test_terraform_values_stay_out_of_the_fingerprint():
    environ = {"TF_VAR_db_pw": "hunter2", "TF_CLI_ARGS_apply": "-var=admin_pw=s3cr3t-admin",
               "TF_CLI_CONFIG_FILE": "/home/alice/.terraformrc", "TF_WORKSPACE": "prod",
               "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CUDNN_USE_AUTOTUNE": "0"}
    assert env_vars.probe(environ) == {"TF_CUDNN_USE_AUTOTUNE": "0", "TF_ENABLE_ONEDNN_OPTS": "0"}


def test_every_setting_in_the_table_is_recorded():
    from envaudit.settings import SETTINGS

    assert [s.name for s in SETTINGS if not env_vars.is_recorded(s.name)] == []


def test_the_recorded_names_and_families_are_the_settings_tables():
    """One table: a variable or family the fingerprint records has its record, with what it
    changes; a record the fingerprint could not record would be a setting nobody sees."""
    from envaudit.settings import SETTINGS, setting

    assert set(env_vars.NAMES) | set(env_vars.FAMILIES) == {s.name for s in SETTINGS}
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)  # one record per name
    assert setting("TF_GPU_ALLOCATOR").devices == {"gpu"}  # recorded by name, with its reach
    assert setting("TF_CPP_MIN_LOG_LEVEL").name == "TF_CPP_"  # recorded by family


@pytest.mark.parametrize("prefix", ["TF_", "NVIDIA_", "TF_VAR_", "TF_CLI_", "TF_TOKEN_"])
def test_the_table_lists_no_family_another_tool_writes(prefix):
    from envaudit.settings import SETTINGS

    assert prefix not in {s.name for s in SETTINGS}


@pytest.mark.parametrize("name", [
    "TF_ENABLE_ONEDNN_OPTS", "TF_DETERMINISTIC_OPS", "TF_CUDNN_USE_FRONTEND", "TF_XLA_FLAGS",
    "TF_GPU_ALLOCATOR", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_NUM_INTRAOP_THREADS", "TF_CONFIG",
    "TF_USE_LEGACY_KERAS", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "TF_CPP_MIN_LOG_LEVEL",
    "TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_LEVEL", "CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE",
    "OMP_NUM_THREADS", "MKL_CBWR", "NCCL_ALGO", "ONEDNN_MAX_CPU_ISA", "XLA_FLAGS",
])
def test_tensorflow_and_library_variables_are_recorded(name):
    assert env_vars.is_recorded(name)


@pytest.mark.parametrize("name", ["NVIDIA_API_KEY", "NVIDIA_BASE_URL", "NVIDIA_ORG_ID",
                                  "TF_MY_OWN_THING", "TF_"])
def test_vendor_namespaces_and_unknown_tf_names_are_not_recorded(name):
    assert not env_vars.is_recorded(name)


# -- URL tokens: in paths and queries, at capture and in every shared string --------------------

CLOUDSMITH_TOKEN = "aB3dE5gH7jK9mN1p"  # 16 characters: too short for the bare-token rule


@pytest.mark.parametrize(("url", "masked"), [
    (f"https://dl.cloudsmith.io/{CLOUDSMITH_TOKEN}/org/repo/python/simple/",
     "https://dl.cloudsmith.io/[redacted]/org/repo/python/simple/"),
    ("https://packagecloud.io/priv/" + "0a1b2c3d" * 6 + "/org/repo/pypi/simple",
     "https://packagecloud.io/priv/[redacted]/org/repo/pypi/simple"),
    ("https://h.example/p/pkg-1.0.tar.gz?access_token=abc&v=2",
     "https://h.example/p/pkg-1.0.tar.gz?access_token=[redacted]&v=2"),
    ("https://acct.blob.core.windows.net/c/x.whl?sv=2022-11-02&se=2030-01-01&sig=a%2Fb%3D",
     "https://acct.blob.core.windows.net/c/x.whl?sv=2022-11-02&se=2030-01-01&sig=[redacted]"),
    ("https://s3.example/x.whl?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=abc123",
     "https://s3.example/x.whl?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]"),
    (f"(https://h.example/{CLOUDSMITH_TOKEN})", "(https://h.example/[redacted])"),
])
def test_url_tokens_are_masked(url, masked):
    assert mask_url_tokens(url) == masked


@pytest.mark.parametrize("url", [
    "https://pypi.org/simple/tensorflow-cpu/", "file:///work/main",
    "git+https://github.com/org/repo.git@v2.16.1",
    "https://download.pytorch.org/whl/cu121/torch-2.3.0%2Bcu121-cp311-cp311-linux_x86_64.whl",
    "https://h.example/simple?page=2&format=json", "see https://example.com/a_b-c.",
])
def test_ordinary_urls_are_kept(url):
    assert mask_url_tokens(url) == url


def test_direct_url_tokens_never_reach_the_fingerprint(tmp_path, monkeypatch):
    """A real distribution in a real site folder, installed from a URL with tokens (pip writes
    direct_url.json as it got the URL)."""
    from envaudit.fingerprint import packages

    info = tmp_path / "leaky_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leaky-pkg\nVersion: 1.0\n")
    url = (f"https://pkgs.example.com/{CLOUDSMITH_TOKEN}/simple/leaky-pkg/leaky_pkg-1.0.tar.gz"
           "?access_token=tok-0ne-s3cret")
    (info / "direct_url.json").write_text(json.dumps({"url": url, "archive_info": {}}))
    monkeypatch.syspath_prepend(str(tmp_path))
    from importlib import metadata

    assert any(d.read_text("direct_url.json") and url in d.read_text("direct_url.json")
               for d in metadata.distributions())  # the leak is in place
    recorded = packages.probe()["leaky-pkg"]["direct_url"]["url"]
    assert recorded == ("https://pkgs.example.com/[redacted]/simple/leaky-pkg/leaky_pkg-1.0.tar.gz"
                        "?access_token=[redacted]")
    # and a fingerprint recorded before this rule is masked in every shared string
    from envaudit.fingerprint.redact import Identity, Redactor

    redactor = Redactor.for_trees(salt=b"s", identity=Identity.of([], [], []))
    assert redactor.text(url) == recorded


