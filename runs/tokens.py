"""API keys: user tokens (`rs_…`) and run tokens (`rt_…`). Only hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
import time

USER_TOKEN_PREFIX = "rs_"
RUN_TOKEN_PREFIX = "rt_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_user_key() -> str:
    return USER_TOKEN_PREFIX + secrets.token_urlsafe(30)


def new_run_key() -> str:
    return RUN_TOKEN_PREFIX + secrets.token_urlsafe(30)


# A user token's (user, token) is remembered in each process for a few seconds:
# every API call (every metric batch, every MLflow log_metric) authenticates, and
# the lookup was a fifth of a small request's server time. Revoking clears this
# process's memory at once; other processes forget within USER_TOKEN_CACHE_SECONDS.
# Run tokens are not cached: their run's status decides whether they still work.
USER_TOKEN_CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
_user_tokens: dict[str, tuple[float, object, object]] = {}


def cached_user_token(digest: str):
    entry = _user_tokens.get(digest)
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1], entry[2]


def cache_user_token(digest: str, user, token) -> None:
    if len(_user_tokens) >= _CACHE_MAX:
        _user_tokens.clear()
    _user_tokens[digest] = (time.monotonic() + USER_TOKEN_CACHE_SECONDS, user, token)


def forget_cached_tokens() -> None:
    _user_tokens.clear()
