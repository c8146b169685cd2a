"""API keys: user tokens (`rs_…`) and run tokens (`rt_…`). Only hashes are stored."""

from __future__ import annotations

import hashlib
import secrets

USER_TOKEN_PREFIX = "rs_"
RUN_TOKEN_PREFIX = "rt_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_user_key() -> str:
    return USER_TOKEN_PREFIX + secrets.token_urlsafe(30)


def new_run_key() -> str:
    return RUN_TOKEN_PREFIX + secrets.token_urlsafe(30)
