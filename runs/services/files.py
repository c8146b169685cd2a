"""Files uploaded to runs (upload_file, outputs, images). Names are write-once, as in v1."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction

from runs.errors import Conflict, NotFound, PayloadTooLarge
from runs.models import Run, RunFile
from runs.paths import clean_relative_path, inside

_COPY_BLOCK = 1024 * 1024


def run_file_dir(run: Run) -> Path:
    return Path(settings.ARTIFACT_DIR) / str(run.pk)


def file_upload(run: Run, name: object, stream: BinaryIO, *, origin: str = RunFile.Origin.UPLOAD) -> RunFile:
    """Store a file under the run at `name`.

    Raises InvalidInput for an unsafe name, PayloadTooLarge past
    STUDIO_FILE_MAX_BYTES, Conflict if the name already exists.
    """
    name = clean_relative_path(name, "file name")
    base = run_file_dir(run)
    target = inside(base, name)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".upload-{uuid.uuid4().hex}"
    digest, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            while block := stream.read(_COPY_BLOCK):
                size += len(block)
                if size > settings.STUDIO_FILE_MAX_BYTES:
                    raise PayloadTooLarge(
                        f"file '{name}' is larger than the limit of {settings.STUDIO_FILE_MAX_BYTES} bytes "
                        "(STUDIO_FILE_MAX_BYTES)"
                    )
                digest.update(block)
                out.write(block)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            with transaction.atomic():
                record = RunFile.objects.create(
                    run=run, path=name, size=size, sha256=digest.hexdigest(), content_type=content_type, origin=origin
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
        except IntegrityError:
            raise Conflict(
                f"file '{name}' already exists in run {run.run_id}; file names are write-once, upload under a new name"
            ) from None
        return record
    finally:
        tmp.unlink(missing_ok=True)


def file_get(run: Run, name: str) -> tuple[RunFile, Path]:
    name = clean_relative_path(name, "file name")
    record = RunFile.objects.filter(run=run, path=name).first()
    if record is None:
        raise NotFound(f"run {run.run_id} has no file named '{name}'")
    return record, inside(run_file_dir(run), name)


def file_list(run: Run, prefix: str | None = None):
    files = RunFile.objects.filter(run=run)
    if prefix:
        files = files.filter(path__startswith=prefix)
    return files.order_by("path")
