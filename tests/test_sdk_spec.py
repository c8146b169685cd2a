"""SPEC §1, run as written: every SDK code block that needs no submitted script, against a live studio.

The only change to the seed code is `Workspace.from_config(studio_config)` (the
path of the live server's config.json) instead of `Workspace.from_config()`.
"""

from __future__ import annotations

import pytest

from runs.models import Run as RunRow

pytestmark = pytest.mark.django_db(transaction=True)


def test_section_1_start_logging_status_details_and_context_manager(studio_config, capsys):
    from runs.sdk import Experiment, Run, ScriptRunConfig, Workspace  # noqa: F401  (the seed's import line)

    ws = Workspace.from_config(studio_config)  # finds config.json: ./, ./.studio/, then parents
    exp = Experiment(workspace=ws, name="explore-runs")  # created if missing

    notebook_run = exp.start_logging()  # an interactive run, status Running
    notebook_run.log(name="message", value="Hello from run!")
    print(notebook_run.get_status())  # "Running"
    print(notebook_run.get_details())  # runId, target, status, startTimeUtc, ...
    notebook_run.complete()
    print(notebook_run.get_status())  # "Completed"

    with exp.start_logging() as notebook_run:  # completes on exit
        notebook_run.log(name="message", value="Hello from run!")
        print(notebook_run.get_status())  # "Running"
    print(notebook_run.get_status())  # "Completed"

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Running"
    details = eval(lines[1])  # the printed dict, as a notebook shows it
    assert details["status"] == "Running" and details["target"] == "local" and details["submittedBy"] == "alice"
    assert "startTimeUtc" in details and "endTimeUtc" not in details
    assert {"runId", "properties", "tags", "runDefinition", "logFiles", "inputDatasets"} <= set(details)
    assert lines[2:] == ["Completed", "Running", "Completed"]
    first = RunRow.objects.exclude(run_id=notebook_run.id).get()
    assert first.status == "Completed" and first.ended_at is not None
    assert Run.get(ws, first.run_id).get_metrics() == {"message": "Hello from run!"}
    assert notebook_run.get_metrics() == {"message": "Hello from run!"}


def test_section_1_child_runs_and_batches(studio_config, capsys):
    from runs.sdk import Experiment, Workspace

    ws = Workspace.from_config(studio_config)
    exp = Experiment(workspace=ws, name="explore-runs")

    with exp.start_logging() as parent_run:
        for c, count in enumerate(range(5)):  # noqa: B007  (as in the seed)
            with parent_run.child_run() as child:  # completed on exit
                child.log(name="Hello from child run", value=c)

    children = parent_run.create_children(count=1000)  # ONE network call for the batch
    assert len(children) == 1000
    children = parent_run.create_children(tag_key="fruit", tag_values=["Apple", "Banana"])
    assert [c.get_tags() for c in children] == [{"fruit": "Apple"}, {"fruit": "Banana"}]

    everyone = list(parent_run.get_children(recursive=True))  # children and grandchildren
    assert len(everyone) == 5 + 1000 + 2
    first_five = sorted((r for r in everyone if r.status == "Completed"), key=lambda r: r.number)
    assert [r.get_metrics() for r in first_five] == [{"Hello from child run": c} for c in range(5)]
    assert all(r.parent.id == parent_run.id for r in everyone[:3])


def test_section_1_tags_and_properties(studio_config):
    from runs.sdk import Experiment, ServiceException, Workspace

    ws = Workspace.from_config(studio_config)
    exp = Experiment(workspace=ws, name="explore-runs")
    local_run = exp.start_logging()  # the seed uses a submitted run; any run has tags and properties

    local_run.add_properties({"author": "azureml-user"})
    assert local_run.get_properties() == {"author": "azureml-user"}
    with pytest.raises(ServiceException) as refused:
        local_run.add_properties({"author": "different-user"})  # raises: properties are immutable
    assert str(refused.value).startswith("property 'author' is already set to 'azureml-user'; properties are immutable")
    local_run.add_properties({"author": "azureml-user"})  # re-adding the same value is a no-op

    local_run.tag("quality", "great run")
    assert local_run.get_tags() == {"quality": "great run"}
    local_run.tag("quality", "fantastic run")  # tags are mutable
    local_run.tag("worth another look")  # value None
    assert local_run.get_tags() == {"quality": "fantastic run", "worth another look": None}

    other = exp.start_logging()
    other.add_properties({"author": "azureml-user"})
    other.tag("quality", "great run")
    found = list(exp.get_runs(properties={"author": "azureml-user"}, tags={"quality": "fantastic run"}))
    assert [r.id for r in found] == [local_run.id]
    found = list(exp.get_runs(properties={"author": "azureml-user"}, tags="worth another look"))
    assert [r.id for r in found] == [local_run.id]


def test_version_answers_azureml_core_version():
    import runs.sdk

    assert runs.sdk.VERSION == "1.0.0"
    print(runs.sdk.VERSION)
