import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

# The embedded broker (no server needed); see studio/broker.py.
TRANSPORT_ALIASES.setdefault("studiofs", "studio.broker:Transport")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["runs"])

# Every worker watches its host's runners (cancel signals, vanished runners).
app.steps["worker"].add("runs.compute.local:HostMonitor")
