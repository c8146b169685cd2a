import os

from celery import Celery, bootsteps
from click import Option
from kombu.transport import TRANSPORT_ALIASES

# The embedded broker (no server needed); see studio/broker.py.
TRANSPORT_ALIASES.setdefault("studiofs", "studio.broker:Transport")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["runs"])


class ThreadedBeat(bootsteps.StartStopStep):
    """Celery beat in a thread of this worker (`--studio-beat`).

    Celery's own `--beat` forks a process that holds another copy of Django
    (~50 MiB); the poller is one small periodic task, so a thread does.
    Run it in exactly one worker of a studio.
    """

    label = "ThreadedBeat"
    conditional = True

    def __init__(self, worker, studio_beat: bool = False, **options):
        self.enabled = bool(studio_beat)
        super().__init__(worker, **options)

    def create(self, worker):
        from celery.beat import EmbeddedService

        return EmbeddedService(worker.app, thread=True, schedule_filename=worker.app.conf.beat_schedule_filename)


app.user_options["worker"].add(
    Option(("--studio-beat",), is_flag=True, default=False, help="run the studio's periodic poller in this worker")
)
app.steps["worker"].add(ThreadedBeat)
# Every worker watches its host's runners (cancel signals, vanished runners).
app.steps["worker"].add("runs.compute.local:HostMonitor")
