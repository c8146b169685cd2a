"""Who is asking: a user, or a submitted run acting with its own scoped token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from runs.models import Run


@dataclass(frozen=True)
class Principal:
    """The caller of a service or selector.

    `run` is set when the caller authenticated with a run token: it may then
    change that run and its descendants, read its ancestors, its experiment and
    its workspace's compute targets, and nothing else.
    """

    user: User
    run: Run | None = None

    @property
    def is_run_token(self) -> bool:
        return self.run is not None

    @classmethod
    def of(cls, request) -> Principal:
        scope = getattr(request, "auth", None)
        from runs.models import Run

        return cls(user=request.user, run=scope if isinstance(scope, Run) else None)
