"""Run Studio settings: every knob is an environment variable, read once here.

Embedded default (no variables set): SQLite and a file-based Celery broker under
STUDIO_DATA_DIR (default ./var). DATABASE_URL and CELERY_BROKER_URL switch to
PostgreSQL and Redis. See README "Settings" for the full list.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import secrets
from pathlib import Path

import dj_database_url

from studio.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("STUDIO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data dir."""
    if key := env_str("SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("STUDIO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI from static/, not a CDN (closed networks, script-src 'self')
    "django_htmx",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "studio.request_limits.RefuseNulMiddleware",
    "studio.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "studio.urls"
WSGI_APPLICATION = "studio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "runs.context_processors.studio",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------
SQLITE_PATH = DATA_DIR / "studio.sqlite3"
_SQLITE_OPTIONS = {
    # Several processes (web, workers) write: WAL lets readers run beside a writer,
    # IMMEDIATE takes the write lock at BEGIN so a transaction never fails half-way
    # on an upgrade from read to write, and the timeout waits instead of raising.
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
}
if env_str("DATABASE_URL"):
    # Health checks: a kept connection that a database restart cut is replaced at the start of
    # the next request instead of failing it (a 500 per web thread after every restart).
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL"), conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = dict(_SQLITE_OPTIONS)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            "OPTIONS": dict(_SQLITE_OPTIONS),
            # As for PostgreSQL: a new SQLite connection per request starts with a cold page
            # cache and re-reads the schema, a third of a small API call's CPU.
            "CONN_MAX_AGE": 60,
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests start real worker and runner processes that must share the test
    # database, so it lives in a file rather than in memory.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-studio.sqlite3")}
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "runs:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# plotly.js (4.5 MB) is not kept in the repository: it comes from the pinned `plotly` package in
# requirements.txt, which ships it as package_data/plotly.min.js. The folder is served under a
# name holding the package version, so a browser never mixes a cached old copy with a new page.
_PLOTLY_VERSION = importlib.metadata.version("plotly")
_PLOTLY_DATA = Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data"
PLOTLY_JS = f"vendor/plotly-py-{_PLOTLY_VERSION}/plotly.min.js"  # the templates' {% static %} path
STATICFILES_DIRS = [BASE_DIR / "static", (f"vendor/plotly-py-{_PLOTLY_VERSION}", _PLOTLY_DATA)]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve straight from static/ so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True

# Request bodies: metric batches and log appends are the largest JSON bodies;
# snapshot and file uploads stream to disk and have their own limits below.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("STUDIO_MAX_REQUEST_BYTES", 32 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# --- security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads it to send X-CSRFToken
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Behind TLS (production) set STUDIO_SECURE=1: secure cookies, HSTS, https redirect.
STUDIO_SECURE = env_bool("STUDIO_SECURE", False)
SESSION_COOKIE_SECURE = STUDIO_SECURE
CSRF_COOKIE_SECURE = STUDIO_SECURE
SECURE_SSL_REDIRECT = env_bool("STUDIO_SSL_REDIRECT", STUDIO_SECURE)
SECURE_HSTS_SECONDS = env_int("STUDIO_HSTS_SECONDS", 31536000 if STUDIO_SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = STUDIO_SECURE
SECURE_HSTS_PRELOAD = STUDIO_SECURE
if env_bool("STUDIO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "runs.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "runs.api.schema.StudioAutoSchema",
    "EXCEPTION_HANDLER": "runs.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Run Studio API",
    "DESCRIPTION": "Start, watch, cancel and organise training runs. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "studiofs://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("studiofs://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "messages"),
        "data_folder_out": str(BROKER_DIR / "messages"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.05,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
    # Our tasks are short; a long visibility timeout only delays redelivery of a
    # dispatch whose worker died, which the poller reports anyway.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "studio"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Run Studio -------------------------------------------------------------------
STUDIO_URL = env_str("STUDIO_URL", "")  # how runners reach this server; set for many hosts
ARTIFACT_DIR = DATA_DIR / "artifacts"
LOG_DIR = DATA_DIR / "logs"
SNAPSHOT_DIR = DATA_DIR / "snapshots"
WORK_DIR = Path(env_str("STUDIO_WORK_DIR", str(DATA_DIR / "work"))).resolve()

STUDIO_SNAPSHOT_MAX_BYTES = env_int("STUDIO_SNAPSHOT_MAX_BYTES", 300 * 1024 * 1024, minimum=1024)
STUDIO_SNAPSHOT_MAX_FILES = env_int("STUDIO_SNAPSHOT_MAX_FILES", 20_000, minimum=1)
STUDIO_FILE_MAX_BYTES = env_int("STUDIO_FILE_MAX_BYTES", 1024 * 1024 * 1024, minimum=1024)
STUDIO_POLL_INTERVAL = env_float("STUDIO_POLL_INTERVAL", 5.0, minimum=0.5)
# A runner whose heartbeat is older than this is NotResponding; after the same
# time again (with its host silent too) it is Failed.
STUDIO_HEARTBEAT_TIMEOUT = env_float("STUDIO_HEARTBEAT_TIMEOUT", 20.0, minimum=1.0)
# A live runner unheard of for this long is shown NotResponding with the reason (never failed for it).
STUDIO_UNREACHABLE_AFTER = env_float("STUDIO_UNREACHABLE_AFTER", 120.0, minimum=1.0)
STUDIO_CANCEL_GRACE_SECONDS = env_float("STUDIO_CANCEL_GRACE_SECONDS", 10.0, minimum=0.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("STUDIO_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # One line per poll or dispatch task is noise; failures still log as errors.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        "kombu.connection": {"level": "ERROR"},
    },
}

CELERY_BEAT_SCHEDULE = {
    "poll-runs": {
        "task": "runs.tasks.poll_runs",
        "schedule": STUDIO_POLL_INTERVAL,
        "options": {"queue": "studio", "expires": STUDIO_POLL_INTERVAL * 2},
    }
}
