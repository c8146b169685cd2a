"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import math
import os
from pathlib import Path


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation, so p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def pss_kib(pids: list[int]) -> int:
    """Proportional set size of these processes, in KiB (shared pages split fairly)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) these processes have used so far; processes gone are skipped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def postgres_available() -> bool:
    """Whether the PostgreSQL that tests.stack uses for benchmarks answers."""
    try:
        import psycopg

        from tests.stack import PG_ADMIN_URL

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False
