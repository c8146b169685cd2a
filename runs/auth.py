"""DRF authentication for user and run tokens.

`Authorization: Token <key>` (or `Bearer <key>`, which MLflow clients send).
A run token authenticates as the run's submitter with `request.auth` set to the
run, which narrows what the selectors let it see (runs.access.Principal).
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from runs import tokens
from runs.lifecycle import TERMINAL
from runs.models import ApiToken, Run
from runs.tokens import RUN_TOKEN_PREFIX, hash_key

# last_used_at is informative; writing it on every request would make each
# metric batch a write to the token table.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate_key(key: str):
    """Return (user, auth) for a key, or raise AuthenticationFailed."""
    digest = hash_key(key)
    cached = tokens.cached_user_token(digest)
    if cached is not None:
        return cached
    if key.startswith(RUN_TOKEN_PREFIX):
        run = Run.objects.select_related("submitted_by", "experiment").filter(token_hash=digest).first()
        if run is None or run.submitted_by is None:
            raise exceptions.AuthenticationFailed("invalid run token")
        if run.status in TERMINAL:
            raise exceptions.AuthenticationFailed(
                f"run token of {run.run_id} is no longer valid: the run has ended ({run.status})"
            )
        return run.submitted_by, run
    token = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
    if token is None or token.revoked_at is not None:
        raise exceptions.AuthenticationFailed(
            "invalid or revoked API token; create one on the studio's Tokens page or with `studio login`"
        )
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("this user is disabled")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    tokens.cache_user_token(digest, token.user, token)
    return token.user, token


class TokenAuthentication(authentication.BaseAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower().decode(errors="replace") not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>'")
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("the token contains invalid characters") from None
        return authenticate_key(key)

    def authenticate_header(self, request) -> str:
        return "Token"


class BasicTokenAuthentication(authentication.BaseAuthentication):
    """HTTP Basic with an API token as the password (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).

    The username is not checked: any name (the user's own, "token", ...) goes
    with the token, which alone identifies the user. Used by the MLflow API only.
    """

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"basic":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Basic <base64 of user:token>'")
        try:
            decoded = base64.b64decode(header[1], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed("Basic credentials are not valid base64 of 'user:token'") from None
        _username, sep, key = decoded.partition(":")
        if not sep or not key:
            raise exceptions.AuthenticationFailed("Basic credentials need a password: the API token")
        return authenticate_key(key)

    def authenticate_header(self, request) -> str:
        return 'Basic realm="Run Studio"'
