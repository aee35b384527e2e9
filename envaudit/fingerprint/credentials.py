"""What looks like a credential: a variable name, the userinfo of a URL, a token in a URL's path
or query, a long random token.

One definition shared by capture (``env_vars`` and ``packages``: secret-named variables are never
recorded, URL userinfo and URL tokens are masked and token values are replaced before anything is
stored) and by redaction (``redact``: the same rules on everything that leaves the machine), so
the two never disagree.
Constraints: pure functions on strings, stdlib only, nothing read from the environment here; a
rule may hide a harmless value (the cost is a less precise report) but must not let a credential
through, so every threshold below errs towards redacting and says what it gives up.
"""

from __future__ import annotations

import math
import re
from collections import Counter

REDACTED = "[redacted]"

# Substrings of a variable name (compared upper-case) that mark its value as secret. Substrings
# rather than whole words, because credentials hide in run-together names (PGPASSWORD, APIKEY,
# NPM_AUTHTOKEN, DBPASS). PASS covers PASSWD/PASSWORD/PASSPHRASE; CRED covers CREDENTIAL(S); KEY
# covers API_KEY/ACCESS_KEY/PRIVATE_KEY. The false positives this buys (PWD and OLDPWD, *BYPASS*,
# a TF_..._KEY setting) cost a hidden value, never a leak; no numerics variable that TensorFlow,
# XLA, oneDNN, CUDA or NCCL reads is hit, except TF_DEFAULT_PREEMPTION_NOTICE_KEY (preemption
# handling, not numerics). Left out: CERT (a certificate is public and *_CERT* names hold paths,
# while the private key beside it is caught by KEY/PRIVATE), PAT and PIN (inside PATH, PINNED).
SECRET_NAME_WORDS = (
    "SECRET", "TOKEN", "KEY", "PASS", "PWD", "AUTH", "COOKIE", "SESSION", "PRIVATE", "DSN",
    "CRED", "SIGNATURE", "SALT", "BEARER", "WEBHOOK", "CONNECTION_STRING",
)

# scheme://userinfo@host. Greedy up to the last "@" before the path, so a password with a raw
# "@" in it is hidden whole; a raw "/" in a password ends the authority (as for every URL
# parser), and such a value is only caught by its variable's name.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/'\"<>]*@")

# A URL, split where its parts begin: scheme and authority, path, query, fragment. Quotes, spaces
# and angle brackets end it (as they end a URL in text); nothing else does, so a token that a
# bracket or a comma follows is still judged (the rule below looks at runs inside each part).
_URL = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#'\"<>]*)(?P<path>[^\s?#'\"<>]*)"
    r"(?P<query>\?[^\s#'\"<>]*)?(?P<fragment>#[^\s'\"<>]*)?"
)
# A run inside a path segment or a query value: what a token is written with.
_URL_RUN = re.compile(r"[A-Za-z0-9_~-]+")
# Query parameters whose value is a credential whatever it looks like, besides the secret-looking
# names: Azure's shared-access signature (sig), OAuth's authorization code, a bare "pw".
_SECRET_QUERY_NAMES = frozenset({"sig", "code", "pw", "jwt", "ticket"})
# Tokens embedded in a URL are shorter than the ones a variable holds alone: Cloudsmith's
# entitlement tokens in an index path have 16 characters. A 16-character piece of letters and
# digits is also what a commit id, a content hash or a UUID in a download path looks like, so
# those are hidden too (a less precise report, never a leak).
URL_TOKEN_MIN_CHARS = 16

# GPU and MIG UUIDs are device identifiers, hashed by the redaction rather than dropped, so the
# token rule does not see them (CUDA_VISIBLE_DEVICES=GPU-... stays comparable).
DEVICE_ID = re.compile(r"\b(?:GPU|MIG)-[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\b")

# Issuers' own token formats (GitHub, GitLab, Hugging Face, npm, AWS key ids, Google API keys):
# the prefix and 16 more token characters, one a digit, are proof enough whatever the statistics
# say. Not "sk-": too many words start with it.
_KNOWN_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:gh[pousr]_|github_pat_|glpat-|hf_|npm_|AKIA|ASIA|AIza)"
    r"(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{16,}"
)
# A run of the characters tokens are made of (base64, base64url, hex). "." ends a run, so file
# names and versions split up, and a JWT is judged one segment at a time (each is long enough).
_RUN = re.compile(r"[A-Za-z0-9+/_-]+")
_SEPARATOR = re.compile(r"[/_+-]")
# A piece that reads as a word or a CamelCase identifier: "usr", "linux", "Root", "CodeGen".
_WORD = re.compile(r"(?:[A-Z]?[a-z]{2,})+")

# The shortest common issued tokens (GitLab: 20); shorter strings of mixed letters and digits are
# mostly versions, ISA names and ids.
TOKEN_MIN_CHARS = 20
# 128 bits, the shortest hex secret in use; shorter hex is abbreviated commits, build ids, caches.
HEX_MIN_CHARS = 32
# Bits per character: 20 random base62 characters carry ~4.1; identifiers repeat letters.
ENTROPY_MIN_BITS = 3.5
# Fraction of neighbours that change class (lower, upper, digit): ~0.62 for random base62,
# 0.15-0.25 for x86_64 or AVX512_CORE_AMX_FP16; CamelCase words reach ~0.35, which is why a
# token must also contain a digit and why pieces that read as words are judged apart.
CLASS_SWITCH_MIN = 0.3


def looks_secret_name(name: str) -> bool:
    """Whether a variable called ``name`` holds a secret (case-insensitive substring match)."""
    upper = name.upper()
    return any(word in upper for word in SECRET_NAME_WORDS)


def mask_url_credentials(text: str) -> str:
    """``scheme://user:pw@host`` -> ``scheme://[redacted]@host``, wherever it occurs in ``text``."""
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


def mask_url_tokens(text: str) -> str:
    """Every URL in ``text`` with tokens in its path, query and fragment replaced by
    ``[redacted]``: the value of a secret-named query parameter (``access_token``, ``sig``,
    ``X-Amz-Signature``) whole, and elsewhere each run of token characters that looks random
    (``url_token``). Scheme, host, port and ordinary path words are kept."""
    return _URL.sub(_masked_url, text)


def url_token(run: str) -> bool:
    """Whether ``run`` (letters, digits, ``_ ~ -``) inside a URL looks like a token: a long random
    token (``has_token``), or a piece between ``_ ~ -`` of URL_TOKEN_MIN_CHARS or more letters
    and digits that holds both (no word or version number is written that way)."""
    if has_token(run):
        return True
    return any(
        len(piece) >= URL_TOKEN_MIN_CHARS and re.search(r"[0-9]", piece)
        and re.search(r"[A-Za-z]", piece)
        for piece in re.split(r"[_~-]", run)
    )


def _masked_url(match: re.Match[str]) -> str:
    path = _URL_RUN.sub(_masked_run, match["path"])
    query = match["query"] or ""
    fragment = match["fragment"] or ""
    return match["head"] + path + (query and "?" + _masked_query(query[1:])) + (
        fragment and "#" + _masked_query(fragment[1:]))


def _masked_run(match: re.Match[str]) -> str:
    return REDACTED if url_token(match.group(0)) else match.group(0)


def _masked_query(query: str) -> str:
    parts = re.split(r"([&;])", query)
    for index, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if sep and value and (looks_secret_name(name) or name.lower() in _SECRET_QUERY_NAMES):
            parts[index] = f"{name}={REDACTED}"
        elif part not in "&;":
            parts[index] = _URL_RUN.sub(_masked_run, part)
    return "".join(parts)


def has_token(value: str) -> bool:
    """Whether ``value`` contains something that looks like a long random token.

    Meant for variable values only: elsewhere in a fingerprint, hex digests and commit ids are
    facts. A run of token characters is cut at ``/ _ + -`` when it contains words (a path, a flag
    name, ``x86_64-linux-gnu``) and judged whole otherwise (an AWS secret key contains ``/``).
    A piece is a token when it has at least TOKEN_MIN_CHARS letters and digits and is either
    single-case hex of HEX_MIN_CHARS or more, or mixes upper case, lower case and digits with
    ENTROPY_MIN_BITS and CLASS_SWITCH_MIN. Single-case non-hex strings (base32, base36) are not
    told from words and are left to the name rules.
    """
    value = DEVICE_ID.sub(" ", value)
    if _KNOWN_TOKEN.search(value):
        return True
    return any(_random_looking(piece) for run in _RUN.findall(value) for piece in _pieces(run))


def _pieces(run: str) -> list[str]:
    pieces = _SEPARATOR.split(run)
    words = [p for p in pieces if len(p) >= 3 and _WORD.fullmatch(p)]
    # One short word ("ghp" in ghp_..., a 3-letter fluke inside base64) does not make a path.
    if len(words) >= 2 or any(len(w) >= 4 for w in words):
        return pieces
    return [run]


def _random_looking(piece: str) -> bool:
    chars = re.sub(r"[^A-Za-z0-9]", "", piece)
    if len(chars) < TOKEN_MIN_CHARS:
        return False
    digits = any(c.isdigit() for c in chars)
    upper = any(c.isupper() for c in chars)
    lower = any(c.islower() for c in chars)
    if not digits or not (upper or lower):
        return False
    if re.fullmatch(r"[0-9a-f]+|[0-9A-F]+", chars):
        return len(chars) >= HEX_MIN_CHARS
    if not (upper and lower):
        return False
    return _entropy(chars) >= ENTROPY_MIN_BITS and _class_switches(chars) >= CLASS_SWITCH_MIN


def _entropy(chars: str) -> float:
    counts = Counter(chars)
    return -sum(n / len(chars) * math.log2(n / len(chars)) for n in counts.values())


def _class_switches(chars: str) -> float:
    kinds = ["d" if c.isdigit() else "u" if c.isupper() else "l" for c in chars]
    return sum(a != b for a, b in zip(kinds, kinds[1:])) / (len(kinds) - 1)
