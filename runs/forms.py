"""What the pages accept from users: the experiment page's URL state and the submit form.

The experiment page keeps its whole state (filters, columns, sort, selection,
charts, paging) in the query string, so a copied URL or a saved view opens
exactly the same thing. `TableState.parse` reads it leniently (a bad value is
dropped with a note, never a crash: shared links outlive column names), and
`TableState.to_query` writes it back in one canonical order.
"""

from __future__ import annotations

import io
import shlex
import zipfile
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlencode

from django import forms
from django.conf import settings
from django.http import QueryDict

from runs import limits
from runs.errors import InvalidInput, PayloadTooLarge
from runs.lifecycle import Status
from runs.paths import clean_relative_path

# --- the experiment page's state ------------------------------------------------------------------

BUILTIN_COLUMNS: dict[str, str] = {
    "number": "Run",
    "name": "Display name",
    "status": "Status",
    "duration": "Duration",
    "target": "Compute target",
    "submitter": "Submitted by",
    "started": "Start time",
    "tags": "Tags",
    "description": "Description",
    "created": "Submitted",
}
DEFAULT_COLUMNS = ["number", "name", "status", "duration", "target", "submitter", "started", "tags"]
# Prefixes of chosen columns: a metric's last value, a property, one tag.
COLUMN_PREFIXES = {"m": "metric", "p": "property", "t": "tag"}
SORT_KEYS = {"number", "name", "status", "started", "duration", "target", "submitter", "created"}
DEFAULT_SORT = "-number"
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_SELECTED = 50
MAX_CHARTS = 12
MAX_FILTERS = 20
CHART_KINDS = {"line": "Curves", "bar": "Final value", "par": "Parallel coordinates"}
# Keys that make a URL a one-off action; they are applied, then dropped from the canonical URL.
ACTION_KEYS = ("add_chart", "remove_chart", "new_kind", "new_metric", "new_x", "new_dims", "clear_sel")


def _quote_part(text: str) -> str:
    return quote(text, safe=" !$&'()*+,;=:@/?-._")


@dataclass(frozen=True)
class Chart:
    """One chart of a custom view.

    line: `metric` over `x` (step or time) for each compared run; bar: the
    metric's last value per run; par: parallel coordinates of `dims`
    (p:<property> or t:<tag>) against the metric's last value.
    """

    kind: str
    metric: str
    x: str = "step"
    dims: tuple[str, ...] = ()

    def encode(self) -> str:
        parts = [self.kind, self.metric]
        if self.kind == "line":
            parts.append(self.x)
        elif self.kind == "par":
            parts.extend(self.dims)
        return "~".join(p.replace("%", "%25").replace("~", "%7E") for p in parts)

    @classmethod
    def decode(cls, raw: str) -> Chart:
        parts = [unquote(p) for p in raw.split("~")]
        if len(parts) < 2 or parts[0] not in CHART_KINDS:
            raise ValueError(f"chart '{raw[:60]}' is not one this page understands")
        kind, metric = parts[0], parts[1].strip()
        if not metric or len(metric) > limits.KEY_MAX:
            raise ValueError("a chart needs a metric name")
        if kind == "line":
            x = parts[2] if len(parts) > 2 else "step"
            if x not in ("step", "time"):
                raise ValueError(f"chart x axis must be step or time, not '{x[:20]}'")
            return cls(kind, metric, x=x)
        if kind == "par":
            dims = tuple(d for d in parts[2:] if _valid_dim(d))
            if not dims:
                raise ValueError("a parallel-coordinates chart needs at least one p:<property> or t:<tag>")
            return cls(kind, metric, dims=dims[:12])
        return cls(kind, metric)

    @property
    def title(self) -> str:
        if self.kind == "line":
            return f"{self.metric} by {self.x}"
        if self.kind == "bar":
            return f"{self.metric}: final value"
        return f"{', '.join(self.dims)} → {self.metric}"


def _valid_dim(dim: str) -> bool:
    return len(dim) > 2 and dim[:2] in ("p:", "t:") and len(dim) <= limits.KEY_MAX + 2


def _valid_column(col: str) -> bool:
    if col in BUILTIN_COLUMNS:
        return True
    prefix, _, name = col.partition(":")
    return prefix in COLUMN_PREFIXES and bool(name.strip()) and len(name) <= limits.KEY_MAX


def parse_pair(raw: str) -> tuple[str, str | None]:
    """'key' → (key, None) meaning "key present"; 'key=value' → (key, value)."""
    key, eq, value = raw.partition("=")
    return key.strip(), (value if eq else None)


@dataclass(frozen=True)
class TableState:
    q: str = ""
    status: tuple[str, ...] = ()
    tags: tuple[tuple[str, str | None], ...] = ()
    props: tuple[tuple[str, str | None], ...] = ()
    submitter: str = ""
    target: str = ""
    children: bool = False
    sort: str = DEFAULT_SORT
    cols: tuple[str, ...] = tuple(DEFAULT_COLUMNS)
    sel: tuple[int, ...] = ()
    charts: tuple[Chart, ...] = ()
    size: int = DEFAULT_PAGE_SIZE
    after: str = ""
    before: str = ""
    view: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    # --- reading ---

    @classmethod
    def parse(cls, params: QueryDict) -> TableState:
        notes: list[str] = []
        q = params.get("q", "").strip()[:200]
        status = []
        for raw in params.getlist("status"):
            for value in raw.split(","):
                if value in Status.values:
                    status.append(value)
                elif value:
                    notes.append(f"unknown status '{value[:30]}' was ignored")
        tags = cls._pairs(params.getlist("tag"), "tag", notes)
        props = cls._pairs(params.getlist("prop"), "property", notes)
        sort = params.get("sort") or DEFAULT_SORT
        key = sort.lstrip("-")
        if not (key in SORT_KEYS or (key.startswith("m:") and len(key) > 2)):
            notes.append(f"cannot sort by '{key[:40]}'; sorted by run number")
            sort = DEFAULT_SORT
        if "cols_form" in params:
            # The column chooser's checkboxes, plus free-text entries like "m:loss, p:author".
            raw_cols = [part.strip() for c in params.getlist("col") for part in c.split(",")]
        elif "cols" in params:
            raw_cols = params.get("cols", "").split(",")
        else:
            raw_cols = DEFAULT_COLUMNS
        cols = tuple(dict.fromkeys(c for c in raw_cols if _valid_column(c))) or tuple(DEFAULT_COLUMNS)
        sel: list[int] = []
        for raw in params.getlist("sel"):
            for part in raw.split(","):
                if part.strip().isdigit():
                    sel.append(int(part))
        if len(set(sel)) > MAX_SELECTED:
            notes.append(f"only the first {MAX_SELECTED} selected runs are kept")
        charts = []
        for raw in params.getlist("chart")[:MAX_CHARTS]:
            try:
                charts.append(Chart.decode(raw))
            except ValueError as exc:
                notes.append(str(exc))
        try:
            size = int(params.get("size") or DEFAULT_PAGE_SIZE)
        except ValueError:
            size = DEFAULT_PAGE_SIZE
        if size not in PAGE_SIZES:
            size = DEFAULT_PAGE_SIZE
        view = params.get("view", "")
        return cls(
            q=q,
            status=tuple(dict.fromkeys(status)),
            tags=tags,
            props=props,
            submitter=params.get("submitter", "").strip()[:150],
            target=params.get("target", "").strip()[:64],
            children=params.get("children") in ("1", "true", "on"),
            sort=sort,
            cols=cols,
            sel=tuple(dict.fromkeys(sel))[:MAX_SELECTED],
            charts=tuple(dict.fromkeys(charts)),
            size=size,
            after=params.get("after", "")[:500],
            before=params.get("before", "")[:500] if not params.get("after") else "",
            view=int(view) if view.isdigit() else None,
            notes=tuple(notes),
        )

    @staticmethod
    def _pairs(raws: list[str], what: str, notes: list[str]) -> tuple[tuple[str, str | None], ...]:
        pairs = []
        for raw in raws[:MAX_FILTERS]:
            key, value = parse_pair(raw)
            if not key:
                continue
            if len(key) > limits.KEY_MAX or (value is not None and len(value) > limits.VALUE_MAX):
                notes.append(f"a {what} filter was too long and was ignored")
                continue
            pairs.append((key, value))
        return tuple(dict.fromkeys(pairs))

    def apply_actions(self, params: QueryDict) -> TableState:
        """Apply one-off form actions (add/remove a chart, clear the selection)."""
        state = self
        if params.get("clear_sel"):
            state = replace(state, sel=())
        if params.get("add_chart"):
            kind = params.get("new_kind", "line")
            metric = params.get("new_metric", "").strip()
            dims = [d.strip() for d in params.get("new_dims", "").split(",") if d.strip()]
            dims = [d if d[:2] in ("p:", "t:") else f"p:{d}" for d in dims]
            try:
                chart = Chart.decode(
                    Chart(
                        kind if kind in CHART_KINDS else "line", metric, x=params.get("new_x", "step"), dims=tuple(dims)
                    ).encode()
                )
            except ValueError as exc:
                return replace(state, notes=(*state.notes, f"chart not added: {exc}"))
            if len(state.charts) >= MAX_CHARTS:
                return replace(state, notes=(*state.notes, f"a view holds at most {MAX_CHARTS} charts"))
            if chart not in state.charts:
                state = replace(state, charts=(*state.charts, chart))
        remove = params.get("remove_chart", "")
        if remove.isdigit() and int(remove) < len(state.charts):
            index = int(remove)
            state = replace(state, charts=state.charts[:index] + state.charts[index + 1 :])
        return state

    @staticmethod
    def has_actions(params: QueryDict) -> bool:
        return any(key in params for key in ("add_chart", "remove_chart", "clear_sel"))

    # --- writing ---

    def items(self, *, paging: bool = True, view: bool = True) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if view and self.view is not None:
            out.append(("view", str(self.view)))
        if self.q:
            out.append(("q", self.q))
        out += [("status", s) for s in self.status]
        out += [("tag", k if v is None else f"{k}={v}") for k, v in self.tags]
        out += [("prop", k if v is None else f"{k}={v}") for k, v in self.props]
        if self.submitter:
            out.append(("submitter", self.submitter))
        if self.target:
            out.append(("target", self.target))
        if self.children:
            out.append(("children", "1"))
        if self.sort != DEFAULT_SORT:
            out.append(("sort", self.sort))
        if list(self.cols) != DEFAULT_COLUMNS:
            out.append(("cols", ",".join(self.cols)))
        if self.sel:
            out.append(("sel", ",".join(str(n) for n in self.sel)))
        out += [("chart", c.encode()) for c in self.charts]
        if self.size != DEFAULT_PAGE_SIZE:
            out.append(("size", str(self.size)))
        if paging and self.after:
            out.append(("after", self.after))
        elif paging and self.before:
            out.append(("before", self.before))
        return out

    def to_query(self, *, paging: bool = True, view: bool = True) -> str:
        return urlencode(self.items(paging=paging, view=view))

    def saved_form(self) -> str:
        """The query string a saved view stores: everything but paging and the view's own id."""
        return self.to_query(paging=False, view=False)

    def with_(self, **changes) -> TableState:
        """A copy with changes; any change but paging starts again at the first page."""
        if not {"after", "before"} & set(changes):
            changes = {"after": "", "before": "", **changes}
        return replace(self, **changes)

    # --- derived ---

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def is_first_page(self) -> bool:
        return not self.after and not self.before

    @property
    def is_filtered(self) -> bool:
        return bool(self.q or self.status or self.tags or self.props or self.submitter or self.target)

    def column_names(self, prefix: str) -> list[str]:
        return [c[2:] for c in self.cols if c.startswith(f"{prefix}:")]

    @property
    def chart_metrics(self) -> list[str]:
        return list(dict.fromkeys(c.metric for c in self.charts))


# --- sign-in helpers, tokens, saved views --------------------------------------------------------


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, label="Token name", help_text="What the token is for, e.g. 'laptop CLI'.")


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=100, label="View name")


# --- submitting a run from the browser -------------------------------------------------------------


class SubmitForm(forms.Form):
    """Submit or resubmit a script run: where, what, and with which arguments.

    The source is an upload (a .zip, one or more files, or a folder picked with
    the browser's folder chooser) or a previous run's snapshot.
    """

    SOURCE_UPLOAD = "upload"
    SOURCE_SNAPSHOT = "snapshot"

    experiment = forms.CharField(
        label="Experiment", max_length=255, widget=forms.TextInput(attrs={"list": "experiment-names"})
    )
    compute_target = forms.ChoiceField(label="Compute target")
    source = forms.ChoiceField(
        label="Source",
        choices=[
            (SOURCE_UPLOAD, "Upload a folder, files or a .zip"),
            (SOURCE_SNAPSHOT, "Reuse a previous run's snapshot"),
        ],
        widget=forms.RadioSelect,
        initial=SOURCE_UPLOAD,
    )
    from_run = forms.ChoiceField(label="Previous run", required=False)
    script = forms.CharField(
        label="Script",
        required=False,
        max_length=limits.FILE_PATH_MAX,
        help_text="Path inside the source folder, e.g. train.py. Left empty, the only .py file is used.",
    )
    arguments = forms.CharField(
        label="Arguments",
        required=False,
        max_length=10_000,
        help_text="As on a shell command line, e.g. --epochs 10 --lr 0.01",
    )
    display_name = forms.CharField(label="Display name", required=False, max_length=limits.DISPLAY_NAME_MAX)

    def __init__(self, *args, experiments: list[str], targets: list[str], runs: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.experiment_names = experiments
        self.fields["compute_target"].choices = [(t, t) for t in targets]
        self.fields["from_run"].choices = [("", "—"), *runs]

    def clean_arguments(self) -> list[str]:
        raw = self.cleaned_data.get("arguments") or ""
        try:
            return shlex.split(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"the arguments cannot be split like a shell line: {exc}") from None

    def clean_script(self) -> str:
        raw = (self.cleaned_data.get("script") or "").strip()
        if not raw:
            return ""
        try:
            return clean_relative_path(raw, "script")
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self):
        data = super().clean()
        if data.get("source") == self.SOURCE_SNAPSHOT and not data.get("from_run"):
            self.add_error("from_run", "choose the run whose snapshot to reuse")
        return data


@dataclass
class UploadedSource:
    """A source folder uploaded from the browser, packed as a snapshot zip in memory or on disk."""

    stream: io.BufferedIOBase
    names: list[str]


def _spooled():
    import tempfile

    return tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)


def pack_upload(files: list, relative_paths: list[str]) -> UploadedSource:
    """Turn the browser's upload into a snapshot zip.

    One .zip file is taken as the snapshot itself (its entries are checked
    when it is stored). Other files are packed under their relative paths,
    which the folder chooser sends separately because Django keeps only base
    names. Raises InvalidInput (nothing uploaded, unsafe or repeated paths) or
    PayloadTooLarge (past STUDIO_SNAPSHOT_MAX_BYTES).
    """
    limit = settings.STUDIO_SNAPSHOT_MAX_BYTES
    if not files:
        raise InvalidInput("nothing was uploaded: choose a folder, the script file(s) or a .zip of the source folder")
    total = sum(f.size for f in files)
    if total > limit:
        raise PayloadTooLarge(
            f"the upload is {total:,} bytes; the limit is {limit:,} bytes (STUDIO_SNAPSHOT_MAX_BYTES) — "
            "leave data sets and checkpoints out of the source folder"
        )
    if len(files) == 1 and files[0].name.lower().endswith(".zip"):
        upload = files[0]
        upload.seek(0)
        try:
            with zipfile.ZipFile(upload) as archive:
                names = [i.filename for i in archive.infolist() if not i.is_dir()]
        except zipfile.BadZipFile:
            raise InvalidInput(f"'{upload.name[:80]}' is not a valid zip archive") from None
        upload.seek(0)
        return UploadedSource(stream=upload, names=names)
    if len(files) > settings.STUDIO_SNAPSHOT_MAX_FILES:
        raise PayloadTooLarge(
            f"the upload has {len(files)} files; the limit is {settings.STUDIO_SNAPSHOT_MAX_FILES} "
            "(STUDIO_SNAPSHOT_MAX_FILES)"
        )
    paths = relative_paths if len(relative_paths) == len(files) else [f.name for f in files]
    # A folder upload carries the folder's own name first ("proj/train.py"); the run starts inside it.
    split = [p.replace("\\", "/").split("/") for p in paths]
    if len(split) > 0 and all(len(s) > 1 for s in split) and len({s[0] for s in split}) == 1:
        paths = ["/".join(s[1:]) for s in split]
    out = _spooled()
    names: list[str] = []
    seen: set[str] = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for upload, raw_path in zip(files, paths, strict=True):
            name = clean_relative_path(raw_path, "uploaded file path")
            if name in seen:
                raise InvalidInput(
                    f"two uploaded files are both named '{name[:80]}'; upload the folder (or a .zip) so each "
                    "file keeps its place"
                )
            seen.add(name)
            names.append(name)
            with archive.open(name, "w") as dest:
                for chunk in upload.chunks():
                    dest.write(chunk)
    out.seek(0)
    return UploadedSource(stream=out, names=names)


def choose_script(script: str, names: list[str]) -> str:
    """The script to run: the one named, or the only .py file. Raises InvalidInput naming the choices."""
    python_files = [n for n in names if n.endswith(".py")]
    if script:
        if script not in names:
            listed = ", ".join(python_files[:10]) or "no .py files"
            raise InvalidInput(
                f"script '{script[:80]}' is not in the uploaded folder (it holds: {listed}); name a file inside it",
                field="script",
            )
        return script
    top_level = [n for n in python_files if "/" not in n]
    if len(top_level) == 1:
        return top_level[0]
    if not python_files:
        raise InvalidInput("the upload has no script: include the .py file to run (e.g. train.py)", field="script")
    listed = ", ".join(python_files[:10])
    raise InvalidInput(f"name the script to run; the upload holds several: {listed}", field="script")
