import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from runs.services.bootstrap import bootstrap


class Command(BaseCommand):
    help = "Create the admin user, default workspace, an API token and config.json if missing."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the studio's address for clients")
        parser.add_argument("--config", default=str(settings.DATA_DIR / "config.json"))
        parser.add_argument("--username", default="admin")
        parser.add_argument("--workspace", default="default")
        parser.add_argument("--json", dest="as_json", action="store_true", help="print the result as JSON")

    def handle(self, *args, url, config, username, workspace, as_json, **options):
        result = bootstrap(url, Path(config), username=username, workspace=workspace)
        if as_json:
            self.stdout.write(json.dumps({**result.as_config(), "password": result.password}))
            return
        if result.password:
            self.stdout.write(f"Admin user: {result.username}  password: {result.password}  (shown once)")
        if result.token:
            self.stdout.write(f"API token:  {result.token}  (shown once; also in {result.config_path})")
        self.stdout.write(f"Workspace:  {result.workspace}; SDK config: {result.config_path}")
