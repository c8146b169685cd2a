"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import math
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
