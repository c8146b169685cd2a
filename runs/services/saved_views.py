"""Saved custom views: named experiment-page states shared by a workspace.

A view's state is the page's query string in canonical form (see
runs.forms.TableState), so opening a saved view and opening a copied URL
give the same page. Any member of the workspace may create, rename, update
and delete any view of it; run tokens may not touch views at all.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.http import QueryDict

from runs import limits
from runs.access import Principal
from runs.errors import Conflict, Forbidden, InvalidInput
from runs.forms import TableState
from runs.models import Experiment, SavedView
from runs.selectors import is_member

NAME_MAX = 100
STATE_MAX = 8000


def _require_member(principal: Principal, experiment: Experiment) -> None:
    if principal.run is not None:
        raise Forbidden("a run token cannot change saved views")
    if not is_member(principal.user, experiment.workspace):
        raise Forbidden(f"only members of workspace '{experiment.workspace.name}' may change its views")


def clean_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("give the view a name", field="name")
    name = " ".join(name.split())
    if len(name) > NAME_MAX:
        raise InvalidInput(f"a view name is at most {NAME_MAX} characters; this one has {len(name)}", field="name")
    limits.check_text(name, "name", NAME_MAX)
    return name


def clean_state(state: object) -> str:
    """Normalise a query string to what a view stores: filters, columns, sort, selection, charts."""
    if not isinstance(state, str):
        raise InvalidInput("the view state must be a query string", field="state")
    if len(state) > STATE_MAX:
        raise InvalidInput(
            f"the view state is {len(state)} characters; the limit is {STATE_MAX} — remove some filters or charts",
            field="state",
        )
    return TableState.parse(QueryDict(state.lstrip("?"))).saved_form()


def _taken(experiment: Experiment, name: str) -> Conflict:
    return Conflict(
        f"a view named '{name}' already exists in experiment '{experiment.name}'; "
        "choose another name or update that view",
        code="view_name_taken",
    )


def view_create(principal: Principal, experiment: Experiment, name: object, state: object) -> SavedView:
    """Save the state under a name. Raises InvalidInput, Forbidden, or Conflict for a taken name."""
    _require_member(principal, experiment)
    name, state = clean_name(name), clean_state(state)
    try:
        with transaction.atomic():
            return SavedView.objects.create(
                workspace=experiment.workspace,
                experiment=experiment,
                name=name,
                state=state,
                created_by=principal.user,
                updated_by=principal.user,
            )
    except IntegrityError:
        raise _taken(experiment, name) from None


def view_rename(principal: Principal, view: SavedView, name: object) -> SavedView:
    """Rename a view. Raises InvalidInput, Forbidden, or Conflict for a taken name."""
    _require_member(principal, view.experiment)
    name = clean_name(name)
    if name == view.name:
        return view
    view.name, view.updated_by = name, principal.user
    try:
        with transaction.atomic():
            view.save(update_fields=["name", "updated_by", "updated_at"])
    except IntegrityError:
        view.refresh_from_db()
        raise _taken(view.experiment, name) from None
    return view


def view_update(principal: Principal, view: SavedView, state: object) -> SavedView:
    """Replace a view's state with the current page's. Raises InvalidInput or Forbidden."""
    _require_member(principal, view.experiment)
    view.state, view.updated_by = clean_state(state), principal.user
    view.save(update_fields=["state", "updated_by", "updated_at"])
    return view


def view_delete(principal: Principal, view: SavedView) -> None:
    _require_member(principal, view.experiment)
    view.delete()
