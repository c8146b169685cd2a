"""The CLI's pure parts, in-process: queries, table/tsv rendering, runconfig files, help for every option."""

from __future__ import annotations

import argparse
import io

import pytest

from runs.cli import output, runconfig
from runs.cli.app import build_parser
from runs.cli.errors import CliError, Exit
from runs.cli.records import run_record, runs_table

RUNS = [
    {"runId": "a", "tags": {"worth another look": None}, "properties": {"author": "azureml-user"}},
    {"runId": "b", "tags": {"quality": "fantastic run"}, "properties": {"author": "azureml-user"}},
    {"runId": "c", "tags": {"quality": "fantastic run"}, "properties": {"author": "someone"}},
    {"runId": "d", "tags": {"worth another look again": "1"}, "properties": {}},
    {"runId": "e", "tags": {}, "properties": {}},
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("[?properties.author=='azureml-user']", ["a", "b"]),
        ("[?tags.keys(@)[?starts_with(@, 'worth another look')]]", ["a", "d"]),
        ("[?properties.author=='azureml-user' && tags.quality=='fantastic run']", ["b"]),
    ],
)
def test_the_how_to_queries_are_standard_jmespath(query, expected):
    # `tags.keys(@)` is a function call on the right of '.', evaluated with @ = tags: standard JMESPath.
    found = output.apply_query(output.compile_query(query), RUNS)
    assert [r["runId"] for r in found] == expected


def test_query_errors_are_usage_errors():
    with pytest.raises(CliError) as bad:
        output.compile_query("[?")
    assert bad.value.code == Exit.USAGE and "--query" in bad.value.message
    with pytest.raises(CliError) as wrong_type:  # keys() of a string
        output.apply_query(output.compile_query("[].keys(runId)"), RUNS)
    assert wrong_type.value.code == Exit.USAGE and "keys()" in wrong_type.value.message


def test_every_record_has_tags_and_properties_objects():
    record = run_record({"run_id": "x", "tags": None, "properties": None})
    assert record["tags"] == {} and record["properties"] == {}
    assert output.apply_query(output.compile_query("[?tags.keys(@)[?starts_with(@, 'w')]]"), [record]) == []


def test_table_aligns_wide_characters_and_cuts_long_cells():
    lines = output.table_lines(["Name", "N"], [["日本語タグ", "1"], ["x" * 80, "22"]], numeric={1})
    assert lines[0] == "Name" + " " * 47 + "N"
    widths = {output.display_width(line) for line in lines}
    assert widths == {output.CELL_MAX + 2 + 2}  # every line as wide: 48-column cell, gap, 2-column number
    assert lines[3].startswith("x" * 47 + "…")
    assert lines[2].startswith("日本語タグ" + " " * (48 - 10))


def test_runs_table_is_used_for_runs_even_after_a_query():
    runs = [run_record({"run_id": "r1", "number": 1, "status": "Completed", "experiment": "e", "tags": {"k": "v"}})]
    headers, rows, _ = runs_table(runs)
    assert headers[:3] == ["RunId", "Number", "Status"] and rows[0][-1] == "k=v"
    assert runs_table([{"name": "x"}]) is None
    buffer = io.StringIO()
    output.render([{"runId": "r1", "n": 2}], "table", buffer, table=runs_table)
    assert buffer.getvalue().splitlines()[0].split() == ["RunId", "N"]  # not a run: the generic layout


def test_tsv_values_only_one_line_per_item():
    assert output.tsv_lines([{"a": 1, "b": None, "c": True, "d": {"k": "v"}}, ["x\ty", "line\nbreak"], "z"]) == [
        '1\t\ttrue\t{"k":"v"}',
        "x\\ty\tline\\nbreak",
        "z",
    ]


def test_jsonc_colours_only_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured, plain = Terminal(), io.StringIO()
    output.render({"a": [1, "s", None]}, "jsonc", coloured)
    output.render({"a": [1, "s", None]}, "jsonc", plain)
    assert "\x1b[" in coloured.getvalue() and "\x1b[" not in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    quiet = Terminal()
    output.render({"a": 1}, "jsonc", quiet)
    assert "\x1b[" not in quiet.getvalue()


def test_runconfig_reads_samples_and_v1_files(tmp_path):
    folder = tmp_path / ".studio"
    folder.mkdir()
    assert {p.name for p in runconfig.write_samples(folder, "gpu")} == {"sklearn.runconfig", "local.runconfig"}
    sklearn = runconfig.load(runconfig.find("sklearn", [tmp_path]))
    assert sklearn.target == "gpu" and sklearn.environment_variables == {"PYTHONUNBUFFERED": "1"}
    assert sklearn.max_run_duration_seconds == 2592000 and sklearn.cancel_grace_seconds == 10

    v1 = tmp_path / "aml_config"
    v1.mkdir()
    (v1 / "old.runconfig").write_text(
        "script: train.py\narguments: [--lr, 0.1]\ntarget: local\nframework: Python\nmaxRunDurationSeconds: 60\n"
        "environment:\n  environmentVariables:\n    EXAMPLE_ENV_VAR: EXAMPLE_VALUE\n"
        "  python: {userManagedDependencies: false}\n"
    )
    old = runconfig.load(runconfig.find("old", [tmp_path]))
    assert (old.script, old.arguments, old.max_run_duration_seconds) == ("train.py", ["--lr", "0.1"], 60)
    assert old.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    assert runconfig.load(runconfig.find(str(v1 / "old.runconfig"), [])).script == "train.py"

    (folder / "bad.runconfig").write_text("arguments: {not: a list}\n")
    with pytest.raises(CliError, match="'arguments' must be a list"):
        runconfig.load(runconfig.find("bad", [tmp_path]))
    with pytest.raises(CliError, match="no run configuration 'missing'") as missing:
        runconfig.find("missing", [tmp_path])
    assert missing.value.code == Exit.USAGE and "studio folder attach" in missing.value.message


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from _parsers(sub)


def test_every_command_and_option_has_help_text():
    for parser in _parsers(build_parser()):
        assert parser.description, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(choice.help for choice in action._choices_actions), parser.prog
            else:
                assert action.help and action.help != argparse.SUPPRESS, (parser.prog, action.option_strings)
