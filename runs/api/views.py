"""REST endpoints. Thin: parse, call one selector or service, render.

Rules (validation, permissions, the lifecycle) live in runs.selectors and
runs.services; errors raised there become HTTP responses in runs.api.errors.
"""

from __future__ import annotations

import base64
import binascii

from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from runs import selectors
from runs.access import Principal
from runs.api import serializers as s
from runs.api.parsers import OrjsonParser, RawBytesParser
from runs.errors import InvalidInput
from runs.models import Run, RunEvent
from runs.services import execution, files, logs, metrics, workspaces
from runs.services import runs as run_services

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 500


def _principal(request: Request) -> Principal:
    return Principal.of(request)


def _run(request: Request, run_id: str, *, write: bool = False) -> Run:
    return selectors.run_get(_principal(request), run_id, for_write=write)


def _body(request: Request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


def _int_param(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", field=name) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}", field=name)
    return value


def _bool_param(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise InvalidInput(f"{name} must be true or false", field=name)


# --- run lists -------------------------------------------------------------------------------

RUN_LIST_PARAMETERS = [
    OpenApiParameter("tags", str, description='JSON object {"k": "v"} (all equal) or a key (present)'),
    OpenApiParameter("properties", str, description="as tags"),
    OpenApiParameter("status", str, many=True),
    OpenApiParameter("include_children", bool),
    OpenApiParameter("submitted_by", str),
    OpenApiParameter("compute_target", str),
    OpenApiParameter("q", str, description="text over name, description, id, experiment, submitter, tags"),
    OpenApiParameter("page_size", int, description=f"1-{PAGE_SIZE_MAX}, default {PAGE_SIZE_DEFAULT}"),
    OpenApiParameter("continuation", str, description="from the previous page"),
]


def _decode_continuation(token: str | None) -> int | None:
    if not token:
        return None
    try:
        return int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("continuation is not one this server issued; start from the first page") from None


def _encode_continuation(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def run_page(request: Request, runs) -> Response:
    """Filter, then page newest-first with a keyset continuation (fast at any depth)."""
    statuses = [v for item in request.query_params.getlist("status") for v in item.split(",") if v]
    runs = selectors.filter_runs(
        runs,
        tags=selectors.parse_kv_filter(request.query_params.get("tags"), "tags"),
        properties=selectors.parse_kv_filter(request.query_params.get("properties"), "properties"),
        status=statuses or None,
        submitted_by=request.query_params.get("submitted_by"),
        compute_target=request.query_params.get("compute_target"),
        text=request.query_params.get("q"),
    )
    size = _int_param(request, "page_size", PAGE_SIZE_DEFAULT, minimum=1, maximum=PAGE_SIZE_MAX)
    after = _decode_continuation(request.query_params.get("continuation"))
    if after is not None:
        runs = runs.filter(pk__lt=after)
    page = list(selectors.with_labels(runs.order_by("-pk"))[: size + 1])
    more = len(page) > size
    page = page[:size]
    return Response(
        {
            "results": [s.run_summary(run) for run in page],
            "continuation": _encode_continuation(page[-1].pk) if more else None,
        }
    )


# --- identity and workspaces --------------------------------------------------------------------


class HealthView(APIView):
    """Liveness for load balancers and for workers checking their STUDIO_URL (no authentication)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses=inline_serializer("Health", {"status": serializers.CharField()}))
    def get(self, request):
        return Response({"status": "ok"})


class MeView(APIView):
    @extend_schema(responses=s.MeSerializer)
    def get(self, request):
        principal = _principal(request)
        return Response(
            {
                "username": request.user.username,
                "workspaces": list(selectors.workspaces_visible(principal).values_list("name", flat=True)),
                "run_id": principal.run.run_id if principal.run else None,
            }
        )


class WorkspaceListView(APIView):
    @extend_schema(responses=s.WorkspaceSerializer(many=True))
    def get(self, request):
        return Response(s.WorkspaceSerializer(selectors.workspaces_visible(_principal(request)), many=True).data)


class WorkspaceDetailView(APIView):
    @extend_schema(responses=s.WorkspaceSerializer)
    def get(self, request, workspace):
        return Response(s.WorkspaceSerializer(selectors.workspace_get(_principal(request), workspace)).data)


class ExperimentListView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(responses=s.ExperimentSerializer(many=True))
    def get(self, request, workspace):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        experiments = selectors.experiments_visible(principal).filter(workspace=ws).select_related("workspace")
        return Response(s.ExperimentSerializer(experiments, many=True).data)

    @extend_schema(
        request=inline_serializer("ExperimentCreate", {"name": serializers.CharField()}),
        responses={200: s.ExperimentSerializer, 201: s.ExperimentSerializer},
        description="Get or create an experiment by name (Experiment(ws, name)).",
    )
    def post(self, request, workspace):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        experiment, created = workspaces.experiment_get_or_create(principal, ws, _body(request).get("name"))
        return Response(
            s.ExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ExperimentDetailView(APIView):
    @extend_schema(responses=s.ExperimentSerializer)
    def get(self, request, workspace, experiment):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        return Response(s.ExperimentSerializer(selectors.experiment_get(principal, ws, experiment)).data)


class ExperimentRunsView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(parameters=RUN_LIST_PARAMETERS, responses=s.RunPageSerializer)
    def get(self, request, workspace, experiment):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        exp = selectors.experiment_get(principal, ws, experiment)
        runs = selectors.runs_visible(principal).filter(experiment=exp)
        if not _bool_param(request, "include_children"):
            runs = runs.filter(parent__isnull=True)
        return run_page(request, runs)

    @extend_schema(
        request=s.RunCreateSerializer,
        responses={201: s.RunDetailSerializer},
        description="Start an interactive run (Experiment.start_logging); it is Running.",
    )
    def post(self, request, workspace, experiment):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        exp = selectors.experiment_get(principal, ws, experiment)
        run = run_services.run_start_logging(principal, exp, _body(request))
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


class SubmitView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(
        request=s.SubmitSerializer,
        responses={201: s.RunDetailSerializer},
        description="Queue a script run from an uploaded snapshot (Experiment.submit).",
    )
    def post(self, request, workspace, experiment):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        exp = selectors.experiment_get(principal, ws, experiment)
        run = execution.run_submit(principal, exp, _body(request))
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


class WorkspaceRunsView(APIView):
    @extend_schema(
        parameters=[*RUN_LIST_PARAMETERS, OpenApiParameter("experiment", str)],
        responses=s.RunPageSerializer,
        description="Search runs across a workspace's experiments.",
    )
    def get(self, request, workspace):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        runs = selectors.runs_visible(principal).filter(experiment__workspace=ws)
        if name := request.query_params.get("experiment"):
            runs = runs.filter(experiment__name=name)
        if not _bool_param(request, "include_children"):
            runs = runs.filter(parent__isnull=True)
        return run_page(request, runs)


class SnapshotUploadView(APIView):
    parser_classes = [MultiPartParser, FormParser, RawBytesParser]

    @extend_schema(
        request={
            "application/zip": OpenApiTypes.BINARY,
            "multipart/form-data": inline_serializer("SnapshotUpload", {"file": serializers.FileField()}),
        },
        responses={201: s.SnapshotSerializer},
        description="Upload a zip of the source folder; identical content is stored once.",
    )
    def post(self, request, workspace):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        if request.content_type in ("application/zip", "application/octet-stream"):
            stream = request.stream
        else:
            stream = request.FILES.get("file")
        if stream is None:
            raise InvalidInput("send the zip as the body (application/zip) or as the multipart field 'file'")
        snap = execution.snapshot_store(principal, ws, stream)
        return Response(
            {"sha256": snap.sha256, "size": snap.size, "file_count": snap.file_count}, status=status.HTTP_201_CREATED
        )

    def get_parsers(self):
        # Zip bodies stream straight to disk; only multipart goes through DRF parsers.
        if self.request is not None and self.request.content_type in ("application/zip", "application/octet-stream"):
            return []
        return super().get_parsers()


class SnapshotDetailView(APIView):
    @extend_schema(responses=s.SnapshotSerializer)
    def get(self, request, workspace, sha256):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        snap = ws.snapshots.filter(sha256=sha256).first()
        if snap is None or not execution.snapshot_path(sha256).exists():
            from runs.errors import NotFound

            raise NotFound(f"snapshot {sha256[:16]} is not stored in this workspace")
        return Response({"sha256": snap.sha256, "size": snap.size, "file_count": snap.file_count})


class ComputeListView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(responses=s.ComputeTargetSerializer(many=True))
    def get(self, request, workspace):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        return Response(s.ComputeTargetSerializer(selectors.compute_targets(principal, ws), many=True).data)

    @extend_schema(request=s.ComputeTargetWriteSerializer, responses={201: s.ComputeTargetSerializer})
    def post(self, request, workspace):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        target = workspaces.compute_target_create(principal, ws, _body(request))
        return Response(s.ComputeTargetSerializer(target).data, status=status.HTTP_201_CREATED)


class ComputeDetailView(APIView):
    parser_classes = [OrjsonParser]

    def _target(self, request, workspace, name):
        principal = _principal(request)
        ws = selectors.workspace_get(principal, workspace)
        return principal, selectors.compute_target_get(principal, ws, name)

    @extend_schema(responses=s.ComputeTargetSerializer)
    def get(self, request, workspace, name):
        return Response(s.ComputeTargetSerializer(self._target(request, workspace, name)[1]).data)

    @extend_schema(request=s.ComputeTargetWriteSerializer, responses=s.ComputeTargetSerializer)
    def patch(self, request, workspace, name):
        principal, target = self._target(request, workspace, name)
        target = workspaces.compute_target_update(principal, target, _body(request))
        return Response(s.ComputeTargetSerializer(target).data)

    @extend_schema(responses={204: None})
    def delete(self, request, workspace, name):
        principal, target = self._target(request, workspace, name)
        workspaces.compute_target_delete(principal, target)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- one run ----------------------------------------------------------------------------------------


class RunDetailView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(responses=s.RunDetailSerializer)
    def get(self, request, run_id):
        run = selectors.with_labels(selectors.runs_visible(_principal(request)).filter(run_id=run_id)).first()
        if run is None:
            run = _run(request, run_id)  # raises the NotFound with its message
        return Response(s.RunDetailSerializer(run).data)

    @extend_schema(request=s.RunUpdateSerializer, responses=s.RunDetailSerializer)
    def patch(self, request, run_id):
        run = run_services.run_update(_principal(request), _run(request, run_id, write=True), _body(request))
        return Response(s.RunDetailSerializer(run).data)


def _status_response(run: Run) -> Response:
    return Response(s.RunDetailSerializer(selectors.with_labels(Run.objects.filter(pk=run.pk)).get()).data)


class RunStartView(APIView):
    @extend_schema(request=None, responses=s.RunDetailSerializer)
    def post(self, request, run_id):
        return _status_response(run_services.run_start(_principal(request), _run(request, run_id, write=True)))


class RunCompleteView(APIView):
    @extend_schema(request=None, responses=s.RunDetailSerializer)
    def post(self, request, run_id):
        return _status_response(run_services.run_complete(_principal(request), _run(request, run_id, write=True)))


class RunFailView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(request=s.FailSerializer, responses=s.RunDetailSerializer)
    def post(self, request, run_id):
        data = _body(request)
        run = run_services.run_fail(
            _principal(request),
            _run(request, run_id, write=True),
            error_details=data.get("error_details"),
            error_code=data.get("error_code"),
        )
        return _status_response(run)


class RunCancelView(APIView):
    @extend_schema(request=None, responses=s.RunDetailSerializer)
    def post(self, request, run_id):
        return _status_response(run_services.run_cancel(_principal(request), _run(request, run_id, write=True)))


class RunChildrenView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(
        # include_children means nothing here: `recursive` says which descendants to list.
        parameters=[
            *(p for p in RUN_LIST_PARAMETERS if p.name != "include_children"),
            OpenApiParameter("recursive", bool),
        ],
        responses=s.RunPageSerializer,
    )
    def get(self, request, run_id):
        principal = _principal(request)
        parent = _run(request, run_id)
        return run_page(request, selectors.run_children(principal, parent, recursive=_bool_param(request, "recursive")))

    @extend_schema(
        request=s.ChildrenCreateSerializer,
        responses={201: inline_serializer("ChildrenCreated", {"results": s.RunSerializer(many=True)})},
        description="Create up to 10,000 children in one request: count, tag_key + tag_values, or children.",
    )
    def post(self, request, run_id):
        principal = _principal(request)
        parent = _run(request, run_id, write=True)
        children = run_services.children_create(principal, parent, _body(request))
        return Response({"results": [s.new_run_summary(child) for child in children]}, status=status.HTTP_201_CREATED)


class RunTagsView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(responses={200: s.LABELS})
    def get(self, request, run_id):
        return Response(run_services.tags_of(_run(request, run_id)))

    @extend_schema(
        request={"application/json": s.LABELS_IN},
        responses={200: s.LABELS},
        description="Merge tags (tags are mutable); null values allowed.",
    )
    def patch(self, request, run_id):
        return Response(run_services.tags_set(_principal(request), _run(request, run_id, write=True), request.data))


class RunTagsRemoveView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(request=s.TagsRemoveSerializer, responses={200: s.LABELS})
    def post(self, request, run_id):
        run = _run(request, run_id, write=True)
        return Response(run_services.tags_remove(_principal(request), run, _body(request).get("keys")))


class RunPropertiesView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(responses={200: s.LABELS})
    def get(self, request, run_id):
        return Response(run_services.properties_of(_run(request, run_id)))

    @extend_schema(
        request={"application/json": s.LABELS_IN},
        responses={200: s.LABELS},
        description="Add properties. They are immutable: a different value for a stored key is a 409.",
    )
    def post(self, request, run_id):
        return Response(
            run_services.properties_add(_principal(request), _run(request, run_id, write=True), request.data)
        )


class RunMetricsView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(responses=OpenApiTypes.OBJECT, description="get_metrics(): {name: value or list}.")
    def get(self, request, run_id):
        return Response(metrics.metrics_summary(_run(request, run_id)))

    @extend_schema(
        request=s.MetricBatchSerializer,
        responses=s.MetricBatchResultSerializer,
        description="Store a batch of points; a repeated batch_id is acknowledged and not stored twice.",
    )
    def post(self, request, run_id):
        return Response(metrics.metrics_ingest(_run(request, run_id, write=True), request.data))


class RunMetricPointsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, required=True),
            OpenApiParameter("x", str, enum=["step", "time"]),
            OpenApiParameter(
                "max_points",
                int,
                description="downsample to at most this many (min/max buckets); a downsampled chart by "
                "step leaves `times` empty (not read, to stay fast)",
            ),
        ],
        responses=s.MetricPointsSerializer,
    )
    def get(self, request, run_id):
        run = _run(request, run_id)
        series = metrics.series_get(run, request.query_params.get("name", ""))
        max_points = request.query_params.get("max_points")
        limit = _int_param(request, "max_points", 0, minimum=10, maximum=100_000) if max_points else None
        return Response(metrics.series_points(series, x=request.query_params.get("x") or "step", max_points=limit))


class RunLogListView(APIView):
    @extend_schema(responses=s.LogFileSerializer(many=True))
    def get(self, request, run_id):
        return Response(s.LogFileSerializer(logs.log_files(_run(request, run_id)), many=True).data)


class RunLogContentView(APIView):
    parser_classes = [RawBytesParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, required=True),
            OpenApiParameter("offset", int),
            OpenApiParameter("limit", int),
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        description="Bytes of the log after `offset`; headers X-Log-Size (whole size) and X-Log-Offset.",
    )
    def get(self, request, run_id):
        run = _run(request, run_id)
        offset = _int_param(request, "offset", 0)
        limit = _int_param(request, "limit", 1024 * 1024, minimum=1, maximum=16 * 1024 * 1024)
        data, size = logs.log_read(run, request.query_params.get("name"), offset, limit)
        response = HttpResponse(data, content_type="application/octet-stream")
        response["X-Log-Size"] = str(size)
        response["X-Log-Offset"] = str(min(offset, size))
        return response

    @extend_schema(
        parameters=[OpenApiParameter("name", str, required=True), OpenApiParameter("offset", int, required=True)],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses=s.LogAppendResultSerializer,
        description="Append bytes at `offset`; bytes already stored there are acknowledged, not written twice.",
    )
    def post(self, request, run_id):
        run = _run(request, run_id, write=True)
        offset = _int_param(request, "offset", -1, minimum=0) if request.query_params.get("offset") else None
        if offset is None:
            raise InvalidInput("offset is required: the byte position this data starts at", field="offset")
        data = request.data if isinstance(request.data, bytes) else request.body
        return Response(logs.log_append(run, request.query_params.get("name"), offset, data))


class RunFileListView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(parameters=[OpenApiParameter("prefix", str)], responses=s.RunFileSerializer(many=True))
    def get(self, request, run_id):
        run = _run(request, run_id)
        return Response(s.RunFileSerializer(files.file_list(run, request.query_params.get("prefix")), many=True).data)

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "FileUpload",
                {
                    "name": serializers.CharField(),
                    "file": serializers.FileField(),
                    "origin": serializers.ChoiceField(choices=["upload", "outputs", "image"], required=False),
                },
            )
        },
        responses={201: s.RunFileSerializer},
    )
    def post(self, request, run_id):
        run = _run(request, run_id, write=True)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput("send the file as the multipart field 'file' and its name as 'name'", field="file")
        origin = request.data.get("origin") or "upload"
        if origin not in ("upload", "outputs", "image"):
            raise InvalidInput("origin must be upload, outputs or image", field="origin")
        record = files.file_upload(run, request.data.get("name") or upload.name, upload, origin=origin)
        return Response(s.RunFileSerializer(record).data, status=status.HTTP_201_CREATED)


class RunFileContentView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("name", str, required=True)],
        # Sent with the type guessed from the file's name when it was uploaded (text/plain, image/png, ...).
        responses={(200, "*/*"): OpenApiTypes.BINARY},
    )
    def get(self, request, run_id):
        record, path = files.file_get(_run(request, run_id), request.query_params.get("name") or "")
        return FileResponse(
            open(path, "rb"),
            as_attachment=True,
            filename=record.path.rsplit("/", 1)[-1],
            content_type=record.content_type or "application/octet-stream",
        )


class RunEventsView(APIView):
    @extend_schema(responses=s.RunEventSerializer(many=True))
    def get(self, request, run_id):
        run = _run(request, run_id)
        return Response(s.RunEventSerializer(RunEvent.objects.filter(run=run).select_related("actor"), many=True).data)


class RunSnapshotView(APIView):
    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, run_id):
        run = _run(request, run_id)
        if run.snapshot is None:
            from runs.errors import NotFound

            raise NotFound(f"run {run.run_id} has no snapshot (it was not submitted from a source folder)")
        return FileResponse(
            open(execution.snapshot_path(run.snapshot.sha256), "rb"),
            as_attachment=True,
            filename=f"{run.run_id}-snapshot.zip",
            content_type="application/zip",
        )


# --- the runner's reports -------------------------------------------------------------------------------


class RunnerHeartbeatView(APIView):
    @extend_schema(request=None, responses=s.RunnerInstructionsSerializer)
    def post(self, request, run_id):
        return Response(execution.runner_heartbeat(_principal(request), _run(request, run_id, write=True)))


class RunnerStartedView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(
        request=inline_serializer(
            "RunnerStarted",
            {
                "pid": serializers.IntegerField(required=False, allow_null=True, min_value=1),
                "runner_pid": serializers.IntegerField(required=False, allow_null=True, min_value=1),
            },
        ),
        responses=s.RunnerInstructionsSerializer,
    )
    def post(self, request, run_id):
        data = _body(request)
        return Response(execution.runner_started(_principal(request), _run(request, run_id, write=True), data))


class RunnerFinalizingView(APIView):
    @extend_schema(request=None, responses=s.RunnerInstructionsSerializer)
    def post(self, request, run_id):
        return Response(execution.runner_finalizing(_principal(request), _run(request, run_id, write=True)))


class RunnerExitView(APIView):
    parser_classes = [OrjsonParser]

    @extend_schema(request=s.RunnerExitSerializer, responses=s.RunnerInstructionsSerializer)
    def post(self, request, run_id):
        return Response(execution.runner_exit(_principal(request), _run(request, run_id, write=True), _body(request)))


class HeartbeatView(APIView):
    @extend_schema(
        request=None,
        responses=inline_serializer("Heartbeat", {"status": serializers.CharField()}),
        description="An SDK process says it is alive (runs created with heartbeat_timeout_seconds).",
    )
    def post(self, request, run_id):
        run = run_services.heartbeat(_principal(request), _run(request, run_id, write=True))
        return Response({"status": run.status})
