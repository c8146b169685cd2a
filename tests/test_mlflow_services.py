"""runs.services.mlflow_support and the selector options the MLflow API added (soft deletion, lean lookups)."""

from __future__ import annotations

import pytest

from runs import selectors
from runs.access import Principal
from runs.errors import Conflict, Forbidden, InvalidInput, NotFound
from runs.models import Experiment, Run, Workspace
from runs.services import mlflow_support, workspaces
from runs.services import runs as run_services
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def me(alice) -> Principal:
    return Principal(user=alice)


@pytest.fixture
def experiment(me) -> Experiment:
    return workspaces.experiment_get_or_create(me, Workspace.objects.get(name="team-a"), "exp")[0]


@pytest.fixture
def run(me, experiment) -> Run:
    return run_services.run_start_logging(me, experiment, {})


def test_default_workspace_is_the_first_one_joined(alice, me, bob):
    assert mlflow_support.default_workspace(me).name == "team-a"
    workspaces.workspace_create("aaa-first-by-name", alice)  # joined later, so not the default
    workspaces.member_add(Workspace.objects.get(name="team-b"), alice)
    assert mlflow_support.default_workspace(me).name == "team-a"


def test_default_workspace_of_a_user_in_none_is_not_found(db):
    with pytest.raises(NotFound, match="not a member of any workspace"):
        mlflow_support.default_workspace(Principal(user=make_user("loner")))


def test_default_workspace_of_a_run_token_is_its_runs(me, run):
    assert mlflow_support.default_workspace(Principal(user=me.user, run=run)).name == "team-a"


def test_the_default_experiment_is_created_once(me):
    ws = Workspace.objects.get(name="team-a")
    first = mlflow_support.experiment_default(me, ws)
    assert first.name == "Default" and mlflow_support.experiment_default(me, ws).pk == first.pk


def test_archive_and_restore_an_experiment(me, experiment):
    mlflow_support.experiment_archive(me, experiment)
    mlflow_support.experiment_archive(me, experiment)  # twice is harmless
    assert Experiment.objects.get(pk=experiment.pk).archived_at is not None
    mlflow_support.experiment_restore(me, experiment)
    assert Experiment.objects.get(pk=experiment.pk).archived_at is None


def test_the_default_experiment_cannot_be_archived_or_renamed(me):
    default = mlflow_support.experiment_default(me, Workspace.objects.get(name="team-a"))
    with pytest.raises(InvalidInput):
        mlflow_support.experiment_archive(me, default)
    with pytest.raises(InvalidInput):
        mlflow_support.experiment_rename(me, default, "renamed")


def test_rename_checks_the_name_and_that_it_is_free(me, experiment):
    workspaces.experiment_get_or_create(me, experiment.workspace, "taken")
    with pytest.raises(InvalidInput, match="experiment name"):
        mlflow_support.experiment_rename(me, experiment, "no spaces please")
    with pytest.raises(Conflict, match="already exists"):
        mlflow_support.experiment_rename(me, experiment, "taken")
    mlflow_support.experiment_rename(me, experiment, "fresh")
    assert Experiment.objects.get(pk=experiment.pk).name == "fresh"


def test_run_tokens_cannot_change_experiments(me, experiment, run):
    token = Principal(user=me.user, run=run)
    for change in (
        lambda: mlflow_support.experiment_archive(token, experiment),
        lambda: mlflow_support.experiment_restore(token, experiment),
        lambda: mlflow_support.experiment_rename(token, experiment, "x1"),
        lambda: mlflow_support.experiment_describe(token, experiment, "x"),
    ):
        with pytest.raises(Forbidden):
            change()


def test_describe_sets_the_experiment_description_within_limits(me, experiment):
    mlflow_support.experiment_describe(me, experiment, "about")
    assert Experiment.objects.get(pk=experiment.pk).description == "about"
    with pytest.raises(InvalidInput):
        mlflow_support.experiment_describe(me, experiment, "x" * 6000)


def test_a_soft_deleted_run_is_hidden_kept_and_restorable(me, run):
    first = mlflow_support.run_soft_delete(me, run).deleted_at
    assert mlflow_support.run_soft_delete(me, run).deleted_at == first  # twice keeps the first time
    assert not selectors.runs_visible(me).filter(pk=run.pk).exists()
    assert selectors.runs_visible(me, include_deleted=True).filter(pk=run.pk).exists()
    with pytest.raises(NotFound):
        selectors.run_get(me, run.run_id)
    assert selectors.run_get(me, run.run_id, include_deleted=True).pk == run.pk
    mlflow_support.run_restore(me, run)
    assert selectors.run_get(me, run.run_id).deleted_at is None


def test_run_get_can_join_fewer_related_rows_with_the_same_rules(me, bob, run):
    lean = selectors.run_get(me, run.run_id, related=("experiment",))
    assert lean.pk == run.pk and lean.experiment.name == "exp"
    with pytest.raises(NotFound):
        selectors.run_get(Principal(user=bob), run.run_id, related=())
