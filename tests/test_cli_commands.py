"""The `studio` CLI as a subprocess against a live studio: login, folder attach, queries, tags, formats, errors.

Submitting and cancelling real scripts (with a worker) is in test_cli_e2e.py.
"""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.test_cli_support import ENTRY_POINT, assert_one_line_error, cli, new_run, shell

# The CLI fixtures (cli_env, logged_in, studio) live in the support module.
pytest_plugins = ["tests.test_cli_support"]

pytestmark = pytest.mark.django_db(transaction=True)

COMMANDS = [
    [],
    ["login"],
    ["logout"],
    ["folder"],
    ["folder", "attach"],
    ["run"],
    *[["run", name] for name in ("submit-script", "list", "show", "cancel", "fail", "update", "logs", "download")],
    ["experiment"],
    ["experiment", "list"],
    ["compute"],
    ["compute", "list"],
    ["compute", "create"],
    ["compute", "delete"],
]
LEAVES = [c for c in COMMANDS if len(c) == 2 or c in (["login"], ["logout"])]


def json_out(result: subprocess.CompletedProcess):
    assert result.returncode == 0, (result.returncode, result.stderr)
    return json.loads(result.stdout)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- help, entry points, no Django -----------------------------------------------------------------


def test_every_command_has_help(cli_env):
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda c: cli(*c, "--help", env=cli_env), COMMANDS))
    for command, result in zip(COMMANDS, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: {' '.join(['studio', *command])}"), (command, result.stdout[:200])
        if command in LEAVES:
            assert "--output" in result.stdout and "--query" in result.stdout and "--debug" in result.stdout
    top = results[0].stdout
    assert "exit codes:" in top and "130" in top and "STUDIO_TOKEN" in top


def test_the_cli_imports_no_django(cli_env):
    code = (
        "import sys, runs.cli.app as app; app.build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('django', 'rest_framework'))}))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result


def test_the_installed_studio_entry_point_works(logged_in, studio):
    assert ENTRY_POINT.exists(), f"{ENTRY_POINT} is missing: run `pip install --no-deps -e .` (make test does)"
    studio.experiment("entry")
    run_id = new_run(studio, "entry")
    result = cli("run", "list", "-w", "team-a", "-e", "entry", "-o", "json", env=logged_in, entry_point=True)
    assert [r["runId"] for r in json_out(result)] == [run_id]
    version = cli("--version", env=logged_in, entry_point=True)
    assert version.returncode == 0 and version.stdout.startswith("studio ")


# --- login and configuration --------------------------------------------------------------------------


def test_login_checks_the_token_then_saves_it_readable_only_by_the_user(cli_env, live_server, alice, alice_key):
    refused = cli("login", "--url", live_server.url, "--token", "rs_not-a-real-key", env=cli_env)
    assert_one_line_error(refused, 4, "refused the token")
    credentials = Path(cli_env["STUDIO_CONFIG_HOME"]) / "credentials.json"
    assert not credentials.exists()

    missing = cli("run", "list", env=cli_env)
    assert_one_line_error(missing, 4, "studio login --url")

    # Without --token the key is read from stdin, so it stays out of the shell history.
    result = cli("login", "--url", live_server.url + "/", env=cli_env, input_text=alice_key + "\n")
    body = json_out(result)
    assert body["user"] == "alice" and body["workspaces"] == ["team-a"] and body["url"] == live_server.url
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    assert alice_key not in result.stdout + result.stderr
    assert json.loads(credentials.read_text())["servers"][live_server.url]["token"] == alice_key

    # Logged in: alice's only workspace is used without -w; --verbose says where the token came from.
    listing = cli("run", "list", "--verbose", "-o", "json", env=cli_env)
    assert listing.returncode == 0 and json.loads(listing.stdout) == []
    assert "token from `studio login`" in listing.stderr and alice_key not in listing.stderr

    logout = cli("logout", env=cli_env)
    assert json_out(logout) == {"url": live_server.url, "loggedOut": True}
    assert_one_line_error(cli("run", "list", env=cli_env), 4, "no studio configured", "studio login")


def test_environment_variables_override_the_saved_settings(logged_in, live_server, bob_key, bob):
    # bob's key in STUDIO_TOKEN wins over alice's saved login: bob sees team-b, not team-a.
    env = {**logged_in, "STUDIO_TOKEN": bob_key}
    assert json_out(cli("experiment", "list", "-o", "json", env=env)) == []
    refused = cli("experiment", "list", "-w", "team-a", env=env)
    assert_one_line_error(refused, 3, "team-a")
    # STUDIO_URL pointing elsewhere wins over the saved default server.
    env = {**logged_in, "STUDIO_URL": closed_port_url(), "STUDIO_TOKEN": "x", "STUDIO_HTTP_RETRY_SECONDS": "0"}
    assert_one_line_error(cli("run", "list", "-w", "team-a", env=env), 5, "could not reach the studio")


def test_a_config_json_is_found_as_workspace_from_config_finds_it(cli_env, studio_config, studio, tmp_path):
    studio.experiment("from-config")
    run_id = new_run(studio, "from-config")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert studio_config == tmp_path / "config.json"  # url, workspace_name and token, found walking up
    result = cli("run", "list", "-e", "from-config", "-o", "json", env=cli_env, cwd=nested)
    assert [r["runId"] for r in json_out(result)] == [run_id]
    # --path may also name the file itself
    result = cli("run", "list", "-e", "from-config", "--path", str(studio_config), "-o", "json", env=cli_env)
    assert [r["runId"] for r in json_out(result)] == [run_id]


def test_folder_attach_writes_config_and_runconfigs(logged_in, live_server, studio, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    result = cli("folder", "attach", "-w", "team-a", "-e", "testexperiment", "--path", str(project), env=logged_in)
    body = json_out(result)
    config = json.loads((project / ".studio" / "config.json").read_text())
    assert config == {"url": live_server.url, "workspace_name": "team-a", "experiment_name": "testexperiment"}
    assert body["configFile"] == str(project / ".studio" / "config.json")
    for name in ("sklearn", "local"):
        sample = yaml.safe_load((project / ".studio" / f"{name}.runconfig").read_text())
        assert sample["target"] == "local" and sample["script"] is None and sample["max_run_duration_seconds"] > 0
    assert "testexperiment" in {e["name"] for e in studio.ok("GET", "workspaces/team-a/experiments/")}

    # An edited runconfig survives attaching again; config.json is rewritten.
    (project / ".studio" / "sklearn.runconfig").write_text("target: local\narguments: [--edited]\n")
    again = cli("folder", "attach", "-w", "team-a", "-e", "other", "--path", str(project), env=logged_in)
    assert json_out(again)["experimentName"] == "other"
    assert "--edited" in (project / ".studio" / "sklearn.runconfig").read_text()

    # In the folder (or below it), commands use its workspace and experiment.
    studio.experiment("other")
    run_id = new_run(studio, "other")
    inside = project / "src"
    inside.mkdir()
    assert [r["runId"] for r in json_out(cli("run", "list", "-o", "json", env=logged_in, cwd=inside))] == [run_id]

    missing = cli("folder", "attach", "-w", "no-such-workspace", "--path", str(project), env=logged_in)
    assert_one_line_error(missing, 3, "no-such-workspace")


# --- acceptance 1: the how-to's queries, verbatim ---------------------------------------------------------


@pytest.fixture
def labelled_runs(studio) -> dict[str, str]:
    """Runs labelled as in the how-to, older than ten unlabelled ones (so --last 10 would miss them)."""
    studio.experiment("experiment")
    runs = {
        "fantastic": new_run(
            studio, "experiment", properties={"author": "azureml-user"}, tags={"quality": "fantastic run"}
        ),
        "look": new_run(studio, "experiment", properties={"author": "azureml-user"}, tags={"worth another look": None}),
        "other_author": new_run(
            studio, "experiment", properties={"author": "different-user"}, tags={"quality": "fantastic run"}
        ),
        "look_again": new_run(
            studio,
            "experiment",
            properties={"author": "azureml-user"},
            tags={"worth another look, again": "yes", "quality": "great run"},
        ),
        "no_labels": new_run(studio, "experiment"),
    }
    for _ in range(10):
        new_run(studio, "experiment", tags={"filler": "1"})
    return runs


QUERIES = [
    ("\"[?properties.author=='azureml-user']\"", {"fantastic", "look", "look_again"}),
    ("\"[?tags.keys(@)[?starts_with(@, 'worth another look')]]\"", {"look", "look_again"}),
    ("\"[?properties.author=='azureml-user' && tags.quality=='fantastic run']\"", {"fantastic"}),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_the_how_to_queries_work_verbatim(logged_in, labelled_runs, query, expected):
    result = shell(f"studio run list --experiment-name experiment --query {query} -o json", env=logged_in)
    found = {r["runId"] for r in json_out(result)}
    assert found == {labelled_runs[name] for name in expected}


def test_a_query_with_the_default_table_output_shows_the_matching_runs(logged_in, labelled_runs):
    result = shell(
        "studio run list --experiment-name experiment "
        "--query \"[?properties.author=='azureml-user' && tags.quality=='fantastic run']\"",
        env=logged_in,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["RunId", "Number", "Status"] and len(lines) == 3
    assert lines[2].startswith(labelled_runs["fantastic"]) and "quality=fantastic run" in lines[2]


def test_server_side_filters_and_a_query_projection(logged_in, labelled_runs):
    env = logged_in
    tagged = json_out(cli("run", "list", "-e", "experiment", "--tags", "quality=fantastic run", "-o", "json", env=env))
    assert {r["runId"] for r in tagged} == {labelled_runs["fantastic"], labelled_runs["other_author"]}
    present = json_out(cli("run", "list", "-e", "experiment", "--tags", "worth another look", "-o", "json", env=env))
    assert [r["runId"] for r in present] == [labelled_runs["look"]]
    ids = cli("run", "list", "-e", "experiment", "--properties", "author=different-user", "--query", "[].runId",
              "-o", "tsv", env=env)  # fmt: skip
    assert ids.returncode == 0 and ids.stdout == labelled_runs["other_author"] + "\n"
    mixed = cli("run", "list", "-e", "experiment", "--tags", "a=b", "c", env=env)
    assert_one_line_error(mixed, 2, "--tags")


# --- acceptance 3 (tags) and the other run commands -----------------------------------------------------------


def test_run_update_sets_and_removes_tags(logged_in, studio):
    studio.experiment("tagging")
    run_id = new_run(studio, "tagging", tags={"quality": "great run", "draft": "yes"})
    result = shell(f"studio run update -r {run_id} --add-tag quality='fantastic run'", env=logged_in)
    assert json_out(result)["tags"] == {"quality": "fantastic run", "draft": "yes"}
    assert studio.ok("GET", f"runs/{run_id}/tags/") == {"quality": "fantastic run", "draft": "yes"}
    result = cli("run", "update", "-r", run_id, "--add-tag", "worth another look", "--remove-tag", "draft",
                 "--query", "tags", env=logged_in)  # fmt: skip
    assert json_out(result) == {"quality": "fantastic run", "worth another look": None}
    assert_one_line_error(cli("run", "update", "-r", run_id, env=logged_in), 2, "--add-tag")


def test_run_show_fail_and_cancel_of_interactive_runs(logged_in, studio):
    studio.experiment("manual")
    running = new_run(studio, "manual", complete=False, properties={"author": "azureml-user"})
    shown = json_out(cli("run", "show", "-r", running, env=logged_in))
    assert shown["runId"] == running and shown["status"] == "Running" and shown["endTimeUtc"] is None
    assert shown["properties"] == {"author": "azureml-user"} and shown["portalUrl"].endswith(f"/runs/{running}/")
    assert shown["experimentName"] == "manual" and shown["submittedBy"] == "alice"

    failed = json_out(cli("run", "fail", "-r", running, "--message", "wrong data set", env=logged_in))
    assert failed["status"] == "Failed"
    assert studio.run(running)["error"]["error"]["message"] == "wrong data set"

    other = new_run(studio, "manual", complete=False)
    assert shell(f"studio run cancel -r {other} -w team-a -e manual -o tsv --query status", env=logged_in).stdout == (
        "Canceled\n"
    )
    # a final status cannot change: the studio refuses, and the CLI says so
    assert_one_line_error(cli("run", "cancel", "-r", running, env=logged_in), 6, "final status")


def test_run_list_pages_with_last_and_continuation(logged_in, studio):
    studio.experiment("paging")
    created = [new_run(studio, "paging") for _ in range(25)]
    newest_first = created[::-1]
    first = cli("run", "list", "-e", "paging", "--last", "10", "--verbose", "-o", "json", env=logged_in)
    assert [r["runId"] for r in json_out(first)] == newest_first[:10]
    token = re.search(r"^continuation: (\S+)", first.stderr, flags=re.M).group(1)
    second = cli("run", "list", "-e", "paging", "--last", "10", "--continuation", token, "-o", "json", env=logged_in)
    assert [r["runId"] for r in json_out(second)] == newest_first[10:20]
    default = json_out(cli("run", "list", "-e", "paging", "-o", "json", env=logged_in))
    assert len(default) == 10  # --last defaults to 10, as in az
    everything = json_out(cli("run", "list", "-e", "paging", "--all", "--minimal", "-o", "json", env=logged_in))
    assert [r["runId"] for r in everything] == newest_first
    assert list(everything[0]) == ["runId", "runType", "status", "startTimeUtc", "endTimeUtc", "target", "tags"]
    failed = json_out(cli("run", "list", "-e", "paging", "--status", "failed,Canceled", "-o", "json", env=logged_in))
    assert failed == []


def test_run_list_shows_children_only_with_parent_run_id(logged_in, studio):
    studio.experiment("family")
    parent = new_run(studio, "family", complete=False)
    children = studio.ok("POST", f"runs/{parent}/children/", json={"count": 3})["results"]
    top = json_out(cli("run", "list", "-e", "family", "-o", "json", env=logged_in))
    assert [r["runId"] for r in top] == [parent]
    kids = json_out(cli("run", "list", "--parent-run-id", parent, "-o", "json", env=logged_in))
    assert sorted(r["runId"] for r in kids) == sorted(c["run_id"] for c in children)
    assert {r["parentRunId"] for r in kids} == {parent}


def test_run_logs_and_download_of_a_run_with_files(logged_in, studio, tmp_path):
    studio.experiment("files")
    run_id = new_run(studio, "files", complete=False)
    studio.ok("POST", f"runs/{run_id}/files/", data={"name": "outputs/model.txt"}, files={"file": ("m", b"weights")})
    studio.ok(
        "POST",
        f"runs/{run_id}/logs/content/",
        params={"name": "logs/user_log.txt", "offset": 0},
        data=b"hello\nworld\n",
        headers={"Content-Type": "application/octet-stream"},
    )
    logs = cli("run", "logs", "-r", run_id, env=logged_in)
    assert logs.returncode == 0 and logs.stdout == "hello\nworld\n"
    missing = cli("run", "logs", "-r", run_id, "--name", "nope.txt", env=logged_in)
    assert_one_line_error(missing, 3, "logs/user_log.txt")

    target = tmp_path / "dl"
    saved = json_out(cli("run", "download", "-r", run_id, "-d", str(target), "-o", "json", env=logged_in))
    assert {s["name"] for s in saved} == {"outputs/model.txt", "logs/user_log.txt"}
    assert (target / "outputs" / "model.txt").read_bytes() == b"weights"
    assert (target / "logs" / "user_log.txt").read_text() == "hello\nworld\n"


# --- output formats ----------------------------------------------------------------------------------------------


def _column_spans(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]


def test_output_formats(logged_in, studio):
    studio.experiment("formats")
    ids = [
        new_run(studio, "formats", tags={"quality": "fantastic run", "note": "tab\there"}),
        new_run(studio, "formats", tags={}),
        new_run(studio, "formats", complete=False, tags={"long": "x" * 80}),
    ]
    base = ["run", "list", "-e", "formats"]
    as_json = json_out(cli(*base, "-o", "json", env=logged_in))
    assert [r["runId"] for r in as_json] == ids[::-1]
    assert all(isinstance(r["tags"], dict) and isinstance(r["properties"], dict) for r in as_json)

    # table (the default for lists): a header, a rule, one aligned row per run
    table = cli(*base, env=logged_in)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["RunId", "Number", "Status", "Target"] and len(lines) == 2 + len(ids)
    spans = _column_spans(lines[1])
    for line in [lines[0], *lines[2:]]:
        for _, end in spans[:-1]:
            assert line[end : end + 2] in ("  ", ""), (line, spans)  # no cell runs into the next column
    assert "…" in table.stdout  # the 80-character tag is cut

    # tsv: no header, one line per run, the same number of fields, escaped tabs
    tsv = cli(*base, "-o", "tsv", env=logged_in)
    rows = [line.split("\t") for line in tsv.stdout.splitlines()]
    assert len(rows) == len(ids) and len({len(r) for r in rows}) == 1 and rows[0][0] == ids[-1]
    assert '"note":"tab\\there"' in tsv.stdout  # nested objects are compact JSON
    notes = cli(*base, "--query", "[].tags.note", "-o", "tsv", env=logged_in)
    assert notes.stdout == "tab\\there\n"  # a string's tab is escaped, so the item stays on one line
    pairs = cli(*base, "--query", "[].[runId, status]", "-o", "tsv", env=logged_in).stdout.splitlines()
    assert pairs == [f"{ids[2]}\tRunning", f"{ids[1]}\tCompleted", f"{ids[0]}\tCompleted"]

    def steady(records: list[dict]) -> list[dict]:  # a running run's duration grows between calls
        return [{k: v for k, v in r.items() if k != "durationSeconds"} for r in records]

    assert steady(yaml.safe_load(cli(*base, "-o", "yaml", env=logged_in).stdout)) == steady(as_json)
    jsonc = cli(*base, "-o", "jsonc", env=logged_in).stdout  # not a terminal: plain JSON
    assert steady(json.loads(jsonc)) == steady(as_json)
    shown = cli("run", "show", "-r", ids[0], env=logged_in)  # show defaults to json
    assert json.loads(shown.stdout)["runId"] == ids[0]
    assert cli("run", "show", "-r", ids[0], "--query", "tags.quality", "-o", "tsv", env=logged_in).stdout == (
        "fantastic run\n"
    )


# --- experiments and compute targets ---------------------------------------------------------------------------


def test_experiment_and_compute_commands(logged_in, studio):
    studio.experiment("listed")
    table = cli("experiment", "list", env=logged_in)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["Name", "Runs"]
    assert "listed" in table.stdout

    created = json_out(cli("compute", "create", "--name", "gpu-cluster", "--max-concurrency", "4",
                           "--description", "two GPUs", env=logged_in))  # fmt: skip
    assert created["name"] == "gpu-cluster" and created["maxConcurrentRuns"] == 4
    names = cli("compute", "list", "--query", "[].name", "-o", "tsv", env=logged_in).stdout.split()
    assert sorted(names) == ["gpu-cluster", "local"]
    duplicate = cli("compute", "create", "--name", "gpu-cluster", env=logged_in)
    assert_one_line_error(duplicate, 6, "already exists")
    deleted = cli("compute", "delete", "--name", "gpu-cluster", env=logged_in)
    assert deleted.returncode == 0 and deleted.stdout == ""
    assert_one_line_error(cli("compute", "delete", "--name", "gpu-cluster", env=logged_in), 3, "gpu-cluster")
    assert_one_line_error(cli("compute", "delete", "--name", "local", env=logged_in), 6, "local")
    assert_one_line_error(cli("compute", "create", "--name", "x", "--max-concurrency", "0", env=logged_in), 2)


# --- errors: one line, distinct exit codes, a traceback only with --debug --------------------------------------------


def test_errors_are_one_line_with_distinct_exit_codes(logged_in, cli_env, studio, tmp_path):
    studio.experiment("errors")
    done = new_run(studio, "errors")
    cases = {
        2: cli("run", "list", "--last", "many", env=logged_in),
        3: cli("run", "show", "-r", "no-such-run", env=logged_in),
        4: cli("run", "list", env={**logged_in, "STUDIO_TOKEN": "rs_revoked"}),
        5: cli("run", "list", "-w", "team-a", env={**logged_in, "STUDIO_URL": closed_port_url(),
                                                   "STUDIO_TOKEN": "x", "STUDIO_HTTP_RETRY_SECONDS": "0"}),
        6: cli("run", "cancel", "-r", done, env=logged_in),
    }  # fmt: skip
    messages = {code: assert_one_line_error(result, code) for code, result in cases.items()}
    assert "--last" in messages[2] and "studio run list --help" in messages[2]
    assert "no-such-run" in messages[3] and "studio run list" in messages[3]
    assert "STUDIO_TOKEN" in messages[4] and "rs_revoked" not in messages[4]
    assert "could not reach the studio" in messages[5] and "Check that the studio is running" in messages[5]
    assert "Completed" in messages[6]

    # more usage errors, all exit 2 with one line
    for args in (
        ["run", "bogus"],
        ["run", "list", "--status", "Done"],
        ["run", "list", "--query", "[?"],
        ["run", "list", "-o", "xml"],
        ["run", "show"],
        ["run", "update", "-r", done, "--add-tag", "=v"],
        ["run", "submit-script", "-e", "errors", "missing.py"],
        ["run", "submit-script", "-c", "nosuch", "train.py"],
    ):
        assert_one_line_error(cli(*args, env=logged_in, cwd=tmp_path), 2)
    assert "errors" in {e["name"] for e in studio.ok("GET", "workspaces/team-a/experiments/")}
    assert len(studio.ok("GET", "workspaces/team-a/experiments/errors/runs/")["results"]) == 1  # nothing submitted

    # no configuration at all says how to log in
    nothing = {**cli_env, "STUDIO_CONFIG_HOME": str(tmp_path / "nothing-saved")}
    assert_one_line_error(cli("run", "list", env=nothing), 4, "studio login --url URL --token KEY")

    debug = cli("run", "show", "-r", "no-such-run", "--debug", env=logged_in)
    assert debug.returncode == 3 and "Traceback" in debug.stderr and "HTTP GET" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("error: run 'no-such-run'")
    assert logged_in.get("STUDIO_TOKEN") is None
    token = json.loads((Path(logged_in["STUDIO_CONFIG_HOME"]) / "credentials.json").read_text())
    assert all(s["token"] not in debug.stderr for s in token["servers"].values())
