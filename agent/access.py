"""Who may call ``mtrec serve``, and how much: API keys with scopes, rate limits, limits.

Keys are bearer tokens (``Authorization: Bearer mtk_...``). Each has a name, scopes —
``read`` (recommend, similar, chat, the details of ``/health``) and ``feedback`` (write
events) — optionally one user id it is bound to, and a rate limit. They come from:

* a keys file (``--keys-file`` or ``$MTREC_API_KEYS_FILE``), TOML holding only SHA-256 hashes
  of the tokens (``mtrec keys add`` writes an entry and prints the token once)::

      [[keys]]
      name = "web"
      hash = "sha256:9f2c..."
      scopes = ["read", "feedback"]
      user = "42"              # optional: this key acts for user 42 only
      rate_per_minute = 120    # optional (default: the server's --rate-limit)

* the environment, ``MTREC_API_KEYS="SCOPES[@USER]=TOKEN; ..."`` (e.g.
  ``read,feedback@42=mtk_abc...``), for secret stores that inject environment variables. The
  tokens are hashed at once and never printed (``agent.errors.redact`` knows them).

A presented token is hashed and compared with every stored hash by ``hmac.compare_digest``
(constant time, no early exit). Tokens are 256-bit random strings, so a plain SHA-256 is the
right hash (a slow password hash protects low-entropy secrets, which these are not).

Rate limits are token buckets per key and per serving process: with ``--workers N`` on M
nodes a key may get up to N x M times its rate in total.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import UsageError, remember_secret

SCOPES = ("read", "feedback")
ENV_KEYS = "MTREC_API_KEYS"
ENV_KEYS_FILE = "MTREC_API_KEYS_FILE"
ENV_RATE = "MTREC_SERVE_RATE_LIMIT"
ENV_MAX_BODY = "MTREC_SERVE_MAX_BODY"
ENV_CORS = "MTREC_SERVE_CORS_ORIGINS"
#: Requests per minute per key when neither the key nor the server says otherwise.
DEFAULT_RATE_PER_MINUTE = 600.0
#: Largest request body accepted (bytes); a chat message is at most 4,000 characters.
DEFAULT_MAX_BODY = 1 << 20
TOKEN_PREFIX = "mtk_"
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One key, as the server knows it (never the token itself)."""

    name: str
    digest: bytes
    scopes: frozenset[str]
    user: str | None = None
    rate_per_minute: float | None = None


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class AccessPolicy:
    """The access rules of one serving process.

    Attributes:
        keys: The known keys; empty means the service is open (loopback only, or
            ``--insecure``).
        rate_per_minute: Default rate limit of a key.
        max_body: Largest request body in bytes.
        cors_origins: Origins a browser may call the API from (none by default).
    """

    keys: tuple[ApiKey, ...] = ()
    rate_per_minute: float = DEFAULT_RATE_PER_MINUTE
    max_body: int = DEFAULT_MAX_BODY
    cors_origins: tuple[str, ...] = ()
    _buckets: dict[str, _Bucket] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def required(self) -> bool:
        """Whether requests need a key."""
        return bool(self.keys)

    def match(self, token: str) -> ApiKey | None:
        """The key whose hash matches ``token`` (constant-time over every key), or None."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def take(self, key: ApiKey, now: float | None = None) -> float:
        """Spend one request of ``key``'s budget; returns 0, or the seconds to wait (429)."""
        rate = (key.rate_per_minute or self.rate_per_minute) / 60.0
        burst = max(1.0, rate * 10)  # ten seconds' worth at once
        now = time.monotonic() if now is None else now
        with self._lock:
            b = self._buckets.get(key.name)
            if b is None:
                b = self._buckets[key.name] = _Bucket(burst, now)
            b.tokens = min(burst, b.tokens + (now - b.at) * rate)
            b.at = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate

    @classmethod
    def load(
        cls,
        keys_file: str | Path | None = None,
        rate_per_minute: float | None = None,
        max_body: int | None = None,
        cors_origins: list[str] | tuple[str, ...] | None = None,
    ) -> AccessPolicy:
        """The policy from arguments, falling back to the environment (``MTREC_API_KEYS``,
        ``MTREC_API_KEYS_FILE``, ``MTREC_SERVE_RATE_LIMIT``, ``MTREC_SERVE_MAX_BODY``,
        ``MTREC_SERVE_CORS_ORIGINS``).

        Raises:
            UsageError: a malformed keys file or variable, one line naming what is wrong
                (never a token).
        """
        path = keys_file or os.environ.get(ENV_KEYS_FILE) or None
        keys = list(read_keys_file(Path(path))) if path else []
        keys += parse_env_keys(os.environ.get(ENV_KEYS, ""))
        names = [k.name for k in keys]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UsageError(f"API key names must be unique; repeated: {', '.join(dup)}")
        rate = rate_per_minute or _env_float(ENV_RATE) or DEFAULT_RATE_PER_MINUTE
        body = max_body or int(_env_float(ENV_MAX_BODY) or DEFAULT_MAX_BODY)
        if rate <= 0 or body <= 0:
            raise UsageError("--rate-limit and --max-body must be positive")
        origins = cors_origins
        if origins is None:
            origins = [o for o in os.environ.get(ENV_CORS, "").split(",") if o.strip()]
        for o in origins:
            if o == "*" or not re.match(r"^https?://[^\s/]+$", o.strip()):
                raise UsageError(
                    f"--cors-origin must be an origin such as https://app.example.com, got {o!r}"
                )
        return cls(tuple(keys), float(rate), int(body), tuple(o.strip() for o in origins))


def read_keys_file(path: Path) -> list[ApiKey]:
    """The keys of a TOML keys file (hashes only).

    Raises:
        UsageError: unreadable or malformed, or an entry holds a raw token.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read the keys file {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"the keys file {path} is not valid TOML: {e}") from None
    entries = data.get("keys", [])
    if not isinstance(entries, list):
        raise UsageError(f"the keys file {path} must hold [[keys]] tables")
    out = []
    for n, entry in enumerate(entries, start=1):
        where = f"{path}, key #{n}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: not a table")
        if {"token", "key", "secret"} & set(entry):
            raise UsageError(f'{where}: a keys file holds hashes only (hash = "sha256:...")')
        unknown = set(entry) - {"name", "hash", "scopes", "user", "rate_per_minute"}
        if unknown:
            raise UsageError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        digest = str(entry.get("hash", ""))
        if not _HASH.match(digest):
            raise UsageError(f'{where}: hash must be "sha256:" and 64 hex digits')
        out.append(
            _key(
                str(entry.get("name", f"key{n}")),
                bytes.fromhex(digest[7:]),
                entry.get("scopes", []),
                entry.get("user"),
                entry.get("rate_per_minute"),
                where,
            )
        )
    return out


def parse_env_keys(value: str) -> list[ApiKey]:
    """Keys from ``MTREC_API_KEYS``: ``SCOPES[@USER]=TOKEN`` entries split by ``;`` or newlines.

    Raises:
        UsageError: a malformed entry (named by position, never by its token).
    """
    out = []
    entries = [e.strip() for e in re.split(r"[;\n]", value) if e.strip()]
    for n, entry in enumerate(entries, start=1):
        head, sep, token = entry.partition("=")
        token = token.strip()
        if token:
            remember_secret(token)
        where = f"{ENV_KEYS} entry #{n}"
        if not sep or len(token) < 16:
            raise UsageError(f"{where}: write SCOPES[@USER]=TOKEN with a token of 16+ characters")
        scopes, _, user = head.strip().partition("@")
        out.append(
            _key(
                f"env{n}",
                hashlib.sha256(token.encode()).digest(),
                [s.strip() for s in scopes.split(",") if s.strip()],
                user.strip() or None,
                None,
                where,
            )
        )
    return out


def _key(
    name: str, digest: bytes, scopes: object, user: object, rate: object, where: str
) -> ApiKey:
    if not _NAME.match(name):
        raise UsageError(f"{where}: name must be 1-64 letters, digits or _.-")
    if not isinstance(scopes, list) or not scopes:
        raise UsageError(f"{where}: give scopes, a list of {' and '.join(SCOPES)}")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise UsageError(f"{where}: unknown scope(s) {bad}; use {' and '.join(SCOPES)}")
    if user is not None and (not isinstance(user, str) or not user.strip() or len(user) > 200):
        raise UsageError(f"{where}: user must be a non-empty user id")
    if rate is not None and (not isinstance(rate, int | float) or rate <= 0):
        raise UsageError(f"{where}: rate_per_minute must be a positive number")
    return ApiKey(name, digest, frozenset(scopes), user, float(rate) if rate else None)


def key_entry(name: str, token: str, scopes: list[str], user: str | None,
              rate_per_minute: float | None) -> str:  # fmt: skip
    """The TOML text of one keys-file entry for ``token`` (its hash, never the token).

    Raises:
        UsageError: a bad name, scope, user or rate.
    """
    _key(name, b"", scopes, user, rate_per_minute, "the new key")
    lines = [
        "[[keys]]",
        f'name = "{name}"',
        f'hash = "{hash_token(token)}"',
        "scopes = [" + ", ".join(f'"{s}"' for s in scopes) + "]",
    ]
    if user is not None:
        lines.append(f"user = {_toml_string(user)}")
    if rate_per_minute is not None:
        lines.append(f"rate_per_minute = {float(rate_per_minute)}")
    return "\n".join(lines) + "\n"


def _toml_string(s: str) -> str:
    escaped = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _env_float(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{name} must be a number, got {value!r}") from None
