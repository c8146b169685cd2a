"""`python -m runs.cli ...` runs the `studio` command."""

from __future__ import annotations

import sys

from runs.cli.app import main

sys.exit(main())
