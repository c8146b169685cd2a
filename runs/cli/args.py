"""Argument types shared by the commands: argparse reports their errors as usage errors (exit 2)."""

from __future__ import annotations

import argparse

STATUSES = (
    "NotStarted",
    "Queued",
    "Preparing",
    "Starting",
    "Running",
    "Finalizing",
    "CancelRequested",
    "Canceled",
    "Completed",
    "Failed",
    "NotResponding",
)
_STATUS_BY_LOWER = {s.lower(): s for s in STATUSES}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def key_value(text: str) -> tuple[str, str | None]:
    """'k=v' → ('k', 'v'); 'k' → ('k', None) (a tag without a value, as run.tag('k') stores it)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r} has no key; write KEY=VALUE or KEY")
    return key, (value if sep else None)


def key_equals_value(text: str) -> tuple[str, str]:
    """'NAME=value' (the value may be empty)."""
    key, value = key_value(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} must be written NAME=VALUE")
    return key, value


def statuses(text: str) -> list[str]:
    """One status or a comma-separated list, any letter case → the canonical names."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        canonical = _STATUS_BY_LOWER.get(part.lower())
        if canonical is None:
            raise argparse.ArgumentTypeError(f"unknown status {part!r}; use one of {', '.join(STATUSES)}")
        out.append(canonical)
    if not out:
        raise argparse.ArgumentTypeError("give a status, e.g. --status Failed")
    return out
