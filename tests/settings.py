"""Settings for the test suite: the studio's own, with a data folder of its own.

Tests start real worker and runner processes; they get this module through
DJANGO_SETTINGS_MODULE so they share the test database and data folder.
"""

import os
from pathlib import Path

os.environ.setdefault("STUDIO_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from studio.settings import *  # noqa: F403

# The live server answers each request on a new thread; persistent connections
# would outlive those threads and keep the test database busy at teardown.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# Every test creates users; the production hasher would spend most of the suite's time hashing.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
