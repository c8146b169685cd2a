"""Load, short (issue 6): 10 runs logging 100 points/s and a line per 100 ms for 30 s, 4 browsers.

The same harness as the soak (tests/benchmarks/soak_load.py, `make soak`: 50 runs for 5
minutes, 20 browsers), sized for `make bench`: real submitted runs through a real `manage.py
up` on SQLite and on PostgreSQL + Redis; prints latency per endpoint kind, points and bytes
stored vs sent, CPU and memory.
"""

from __future__ import annotations

from tests.benchmarks.soak_load import measure
from tests.benchmarks.util import postgres_available


def main() -> None:
    measure("sqlite", runs=10, seconds=30, browsers=4)
    if postgres_available():
        measure("postgres", runs=10, seconds=30, browsers=4)
    else:
        print("\n[postgres] skipped: no PostgreSQL at STUDIO_BENCH_PG (tests/stack.py)")


if __name__ == "__main__":
    main()
