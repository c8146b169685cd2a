"""Files, logs and snapshots of a run: the part of Run that moves bytes (mixed into runs.sdk.run.Run).

Uploads are write-once on the studio (a name that exists is a ServiceException,
409); downloads stream to a temporary name and are renamed into place, so an
interrupted download never leaves a half file under the real name.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, BinaryIO

from runs.sdk._http import UPLOAD_TIMEOUT
from runs.sdk.exceptions import NotFoundException, ServiceException, StudioConnectionException, UserErrorException

log = logging.getLogger("runs.sdk")


class RunFiles:
    """Run's file, log and snapshot methods. They use Run's _client, _path, _id, _outputs_dir,
    _uploaded_outputs, _info() and get_details()."""

    _client: Any
    _path: str
    _id: str
    _outputs_dir: Path | None
    _uploaded_outputs: set[str]

    # --- logs ------------------------------------------------------------------------------------------

    def get_all_logs(self, destination: str | os.PathLike | None = None) -> list[str]:
        """Write every log of the run under `destination` (default ./assets/<run id>); return the paths."""
        folder = Path(destination) if destination is not None else Path("assets") / self._id
        paths = []
        for name in self.get_details()["logFiles"]:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._read_log(name))
            paths.append(str(target))
        return paths

    def _read_log_from(self, name: str, offset: int) -> tuple[bytes, int]:
        """Bytes of a log after `offset` and the log's size; (b"", 0) while the log does not exist."""
        try:
            response = self._client.request(
                "GET", f"{self._path}/logs/content/", params={"name": name, "offset": offset}
            )
        except NotFoundException:
            return b"", 0
        return response.content, int(response.headers.get("X-Log-Size") or 0)

    def _read_log(self, name: str) -> bytes:
        chunks, offset = [], 0
        while True:
            data, size = self._read_log_from(name, offset)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            offset += len(data)
            if offset >= size:
                return b"".join(chunks)

    # --- files -----------------------------------------------------------------------------------------

    def _upload_bytes(self, name: str, data: bytes, origin: str = "upload") -> dict:
        return self._upload_stream(name, io.BytesIO(data), origin)

    def _upload_stream(self, name: str, stream: BinaryIO, origin: str = "upload") -> dict:
        response = self._client.request(
            "POST",
            f"{self._path}/files/",
            data={"name": name, "origin": origin},
            files={"file": (name.rsplit("/", 1)[-1], stream)},
            timeout=UPLOAD_TIMEOUT,
            retry=False,
        )
        return response.json()

    def upload_file(self, name: str, path_or_stream: str | os.PathLike | BinaryIO, datastore_name: Any = None) -> dict:
        """Store a file (a path or a binary stream) in the run as `name`. Names are write-once:
        uploading an existing name raises ServiceException (409)."""
        if isinstance(path_or_stream, str | os.PathLike):
            try:
                with open(path_or_stream, "rb") as fh:
                    return self._upload_stream(name, fh)
            except OSError as exc:
                raise UserErrorException(f"cannot read {path_or_stream}: {exc}") from None
        return self._upload_stream(name, path_or_stream)

    def upload_files(self, names: list[str], paths: list[Any], return_artifacts: bool = False, **kwargs: Any) -> Any:
        """upload_file for each (name, path) pair."""
        if len(names) != len(paths):
            raise TypeError("names and paths must have the same length")
        records = [self.upload_file(name, path) for name, path in zip(names, paths, strict=True)]
        return records if return_artifacts else None

    def upload_folder(self, name: str, path: str | os.PathLike, datastore_name: Any = None) -> list[dict]:
        """Upload every file under `path` as <name>/<relative path>, in sorted order."""
        root = Path(path)
        if not root.is_dir():
            raise UserErrorException(f"upload_folder: {root} is not a folder")
        prefix = name.rstrip("/")
        records = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = file.relative_to(root).as_posix()
            records.append(self.upload_file(f"{prefix}/{relative}" if prefix else relative, file))
        return records

    def get_file_names(self) -> list[str]:
        return [f["path"] for f in self._client.get(f"{self._path}/files/")]

    def download_file(self, name: str, output_file_path: str | os.PathLike | None = None, **kwargs: Any) -> str:
        """Save the run's file `name` to `output_file_path` (default: its base name in the current
        folder; a folder gets the base name inside it). Returns the local path."""
        target = Path(output_file_path) if output_file_path is not None else Path(name.rsplit("/", 1)[-1])
        if target.is_dir():
            target = target / name.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        response = self._client.request(
            "GET", f"{self._path}/files/content/", params={"name": name}, stream=True, timeout=UPLOAD_TIMEOUT
        )
        tmp = target.with_name(f".{target.name}.part")
        with open(tmp, "wb") as out:
            for block in response.iter_content(1024 * 1024):
                out.write(block)
        os.replace(tmp, target)
        return str(target)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike | None = None,
        output_paths: list[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: float | None = None,
    ) -> list[str]:
        """Download the files whose names start with `prefix` into `output_directory` (default: the
        current folder), keeping their paths (without the prefix when append_prefix=False)."""
        names = [f["path"] for f in self._client.get(f"{self._path}/files/", params={"prefix": prefix or ""})]
        if output_paths is not None and len(output_paths) != len(names):
            raise UserErrorException(f"output_paths has {len(output_paths)} entries for {len(names)} files")
        base = Path(output_directory) if output_directory is not None else Path.cwd()
        saved = []
        for i, name in enumerate(names):
            if output_paths is not None:
                target = Path(output_paths[i])
            else:
                relative = name if append_prefix or not prefix else name[len(prefix) :].lstrip("/")
                target = base / relative
            saved.append(self.download_file(name, target))
        return saved

    def _upload_outputs(self) -> None:
        folder = self._outputs_dir
        if folder is None or not folder.is_dir():
            return
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
            name = "outputs/" + file.relative_to(folder).as_posix()
            if name in self._uploaded_outputs:
                continue
            try:
                self.upload_file(name, file)
            except ServiceException as exc:
                if exc.status_code != 409:
                    log.warning("could not upload %s to run %s: %s", name, self._id, exc)
            except StudioConnectionException as exc:
                log.warning("could not upload %s to run %s: %s", name, self._id, exc)
                return
            self._uploaded_outputs.add(name)

    # --- snapshots -------------------------------------------------------------------------------------

    def get_snapshot_id(self) -> str | None:
        info = self._info()
        return (info.get("run_definition") or {}).get("snapshotId") or (info.get("properties") or {}).get(
            "ContentSnapshotId"
        )

    def restore_snapshot(self, snapshot_id: str | None = None, path: str | os.PathLike | None = None) -> str:
        """Save the run's snapshot zip as <path>/<snapshot id>.zip (default: the current folder)."""
        sha = snapshot_id or self.get_snapshot_id()
        if not sha:
            raise UserErrorException(f"run {self._id} has no snapshot")
        folder = Path(path) if path is not None else Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{sha}.zip"
        response = self._client.request("GET", f"{self._path}/snapshot/", stream=True, timeout=UPLOAD_TIMEOUT)
        with open(target, "wb") as out:
            for block in response.iter_content(1024 * 1024):
                out.write(block)
        return str(target.resolve())
