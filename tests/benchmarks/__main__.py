"""Run every benchmark module (tests/benchmarks/bench_*.py) and print its figures.

    python -m tests.benchmarks                 # all of them
    python -m tests.benchmarks --only sdk pages
    python -m tests.benchmarks --soak          # the long load runs (soak_*.py)

A benchmark that fails prints its error and the others still run; the exit
status is non-zero only if one crashed, never because a figure was slow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks")
    parser.add_argument("--only", nargs="*", help="module names without the bench_ prefix")
    parser.add_argument("--soak", action="store_true", help="run the soak_* modules instead")
    args = parser.parse_args()
    prefix = "soak_" if args.soak else "bench_"
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith(prefix))
    if args.only:
        names = [n for n in names if n.removeprefix(prefix) in args.only]
    crashed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"tests.benchmarks.{name}").main()
        except Exception:
            traceback.print_exc()
            crashed.append(name)
        print(f"--- {name} took {time.monotonic() - started:.1f} s", flush=True)
    if crashed:
        print(f"\ncrashed: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
