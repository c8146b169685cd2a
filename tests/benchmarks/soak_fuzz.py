"""Soak: schema fuzzing of every /api/ operation with a large example budget and fresh randomness.

    python -m tests.benchmarks --soak --only fuzz
    STUDIO_FUZZ_EXAMPLES=2000 python -m tests.benchmarks --soak --only fuzz

Runs tests/test_fuzz_api.py (which `make test` runs with a small, derandomized
budget) in a pytest subprocess with its own data folder, then prints how many
requests each principal sent and the status codes they got. A failure prints
schemathesis's report with a curl line to reproduce it; the module then raises.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    examples = int(os.environ.get("STUDIO_FUZZ_EXAMPLES", "500"))
    with tempfile.TemporaryDirectory(prefix="studio-soak-fuzz-") as data_dir:
        stats = Path(data_dir) / "requests.jsonl"
        env = {
            **os.environ,
            # The benchmark runner defaults to the studio's settings; the test needs the test settings.
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "STUDIO_DATA_DIR": data_dir,
            "STUDIO_FUZZ_EXAMPLES": str(examples),
            "STUDIO_FUZZ_SOAK": "1",
            "STUDIO_FUZZ_STATS": str(stats),
        }
        print(
            f"{examples} examples per operation, each sent anonymously, as another workspace's member and as a member"
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_fuzz_api.py", "-q", "-p", "no:randomly"],
            cwd=ROOT,
            env=env,
            timeout=6 * 3600,
        )
        elapsed = time.monotonic() - started
        lines = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
    operations = {line["op"] for line in lines}
    print(f"\n{len(operations)} operations, {len(lines)} requests in {elapsed:.0f} s ({len(lines) / elapsed:.0f}/s)")
    for who in ("anonymous", "other-workspace", "run-token", "member"):
        codes = collections.Counter(line["status"] for line in lines if line["who"] == who)
        shown = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
        print(f"  {who:16} {sum(codes.values()):7} requests  {shown}")
    member_ok = collections.Counter(line["op"] for line in lines if line["who"] == "member" and line["status"] < 300)
    never = sorted(op for op in operations if not member_ok[op])
    print(f"  operations a member never got a 2xx from: {', '.join(never) or 'none'}")
    if result.returncode != 0:
        raise RuntimeError(f"schema fuzzing failed (pytest exit {result.returncode}); see the report above")
