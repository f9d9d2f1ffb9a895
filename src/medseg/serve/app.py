"""The HTTP service: :func:`create_app` builds the FastAPI application (API, viewer page, OpenAPI at /docs).

Endpoints
---------
``GET /`` the viewer page · ``GET /models`` · ``POST /predict`` (multipart: ``model``, ``file``) →
``{"id": ...}`` · ``GET /jobs/{id}`` status and progress · ``GET /jobs/{id}/result?format=nifti|png|dicom-seg``
· ``GET /jobs/{id}/volumes`` · ``GET /jobs/{id}/lesions`` · ``GET /jobs/{id}/preview`` and
``/jobs/{id}/preview/{image|labels}/{slice}.png`` (the viewer's slices) · ``GET /info`` (version, limits).

Every refusal is a 4xx (or 503 when full) with ``{"detail": "<one line>"}``; the server keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import medseg
from medseg.constants import DEFAULT_BACKEND
from medseg.errors import MedsegError
from medseg.serve.errors import RequestError
from medseg.serve.jobs import Job, JobQueue
from medseg.serve.limits import ServeLimits
from medseg.serve.models import ServedModel, load_models
from medseg.serve.results import MEDIA_TYPES, RESULT_FILES, dicom_seg_available, slice_png
from medseg.serve.uploads import ACCEPTED, read_upload, remove_tree, store_upload

STATIC = Path(__file__).parent / "static"
#: uploads read and checked at once (each holds one image in memory)
UPLOAD_READERS = 2


class _BodyTooLarge(HTTPException):
    """Raised from inside ``receive``: an HTTPException, so that FastAPI's body parser lets it through."""

    def __init__(self, limit: int):
        super().__init__(413, f"the upload exceeds the limit of {limit} bytes")


class BodyLimit:
    """ASGI middleware: refuse a ``POST /predict`` body over the limit, by its header or while it streams."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_error(send, 413, f"the upload exceeds the limit of {self.limit} bytes")
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge as exc:  # raised where no FastAPI handler sees it (before the response starts)
            await _send_error(send, 413, exc.detail)


async def _send_error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(model_folders: Sequence[str | Path], limits: ServeLimits | None = None, *, backend: str = DEFAULT_BACKEND,
               work_dir: str | Path | None = None, predictor_options: dict[str, Any] | None = None) -> FastAPI:
    """The service for the given model folders.

    Parameters
    ----------
    model_folders : sequence of path
        Trained model folders; each is served under its folder name (made unique when two agree).
    limits : ServeLimits, optional
        Upload / image / job limits (defaults: :class:`ServeLimits`).
    backend : str
        Inference backend of the worker processes (``torch``, ``onnx``, ``compile``, ``auto``).
    work_dir : path, optional
        Where the server makes its own temporary folder (default: the system's temporary directory); the
        folder and every job's files are removed when the server stops.
    predictor_options : dict, optional
        Passed to :meth:`medseg.Predictor.from_folder` (e.g. ``tile_size``, ``tta``, ``fast``).

    Returns
    -------
    FastAPI
        Start it with uvicorn (``medseg serve``) or ``fastapi.testclient.TestClient(app)`` used as a
        context manager (the worker processes start and stop with the application's lifespan).

    Examples
    --------
    >>> app = create_app(["demo_output/model"])                       # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                 # doctest: +SKIP
    """
    limits = limits or ServeLimits()
    models = load_models(model_folders)
    state: dict[str, Any] = {}
    readers = threading.BoundedSemaphore(UPLOAD_READERS)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        root = Path(tempfile.mkdtemp(prefix="medseg-serve-", dir=work_dir))
        jobs = JobQueue({name: m.folder for name, m in models.items()}, limits, root, backend=backend,
                        predictor_options=predictor_options)
        state["jobs"] = _app.state.jobs = jobs
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()
            shutil.rmtree(root, ignore_errors=True)

    # fastapi-offline serves the /docs page's Swagger UI from the package (FastAPI's default loads it from a CDN)
    app = FastAPIOffline(title="medseg", version=medseg.__version__, lifespan=lifespan,
                         description="Medical image segmentation as a service: upload an image, get its label "
                         "map, volumes and lesions. The viewer is at /.")
    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    def jobs() -> JobQueue:
        return state["jobs"]

    def model(name: str) -> ServedModel:
        if name not in models:
            raise RequestError(404, f"unknown model '{name[:100]}'; served: {', '.join(models)}")
        return models[name]

    def done_job(job_id: str) -> Job:
        job = jobs().get(job_id)
        if job.status == "failed":
            raise RequestError(409, f"job {job.id} failed: {job.error}")
        if job.status != "done":
            raise RequestError(409, f"job {job.id} is {job.status} ({job.stage}); its result is not ready yet")
        return job

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/info")
    def info() -> dict[str, Any]:
        """Version, limits, accepted uploads and result formats of this server."""
        return {"version": medseg.__version__, "limits": limits.as_dict(), "accepts": ACCEPTED,
                "formats": ["nifti", "png"] + (["dicom-seg"] if dicom_seg_available() else []),
                "jobs": jobs().counts()}

    @app.get("/models")
    def list_models() -> list[dict[str, Any]]:
        """The served models: name, labels, input channels, dimensions and version."""
        return [m.public() for m in models.values()]

    @app.post("/predict", status_code=202)
    def predict(model_name: str = Form(..., alias="model", description="a name from GET /models"),
                file: UploadFile = File(..., description=f"the image: {ACCEPTED}")) -> dict[str, Any]:
        """Upload one case; returns the job id (poll ``GET /jobs/{id}``)."""
        served = model(model_name)
        jobs().check_capacity()
        job_id, folder = jobs().new_folder()
        try:
            with readers:
                stored = store_upload(file.file, folder, limits)
                image, source, kind = read_upload(stored, folder, limits)
            served.check_image(image)
            del image
            job = jobs().submit(Job(job_id, served.name, folder, source, kind))
        except BaseException:
            remove_tree(folder)
            raise
        return {"id": job.id, "status": job.status, "status_url": f"/jobs/{job.id}"}

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        """Status (queued, running, done, failed), stage, progress (0–1) and any error of a job."""
        return jobs().get(job_id).public()

    @app.get("/jobs/{job_id}/result")
    def job_result(job_id: str, format: str = Query("nifti", description="nifti, png (2D) or dicom-seg")):
        """The label map: NIfTI (input geometry), PNG (2D inputs) or DICOM SEG (DICOM inputs)."""
        if format not in RESULT_FILES:
            raise RequestError(400, f"unknown format '{format[:40]}'; use {', '.join(RESULT_FILES)}")
        job = done_job(job_id)
        if format not in job.info.get("formats", []):
            why = {"png": "PNG holds 2D label maps only", "dicom-seg": (
                "DICOM SEG needs a DICOM series input" if dicom_seg_available() else "DICOM SEG output is not installed")}
            why.update(job.info.get("notes", {}))
            raise RequestError(400, f"format '{format}' is not available for job {job.id}: "
                               f"{why.get(format, '')}; available: {', '.join(job.info.get('formats', []))}")
        name = RESULT_FILES[format]
        return FileResponse(job.folder / name, media_type=MEDIA_TYPES[format], filename=f"{job.id}_{name}")

    @app.get("/jobs/{job_id}/volumes")
    def job_volumes(job_id: str) -> list[dict[str, Any]]:
        """Voxels and volume (mL in 3D, mm² in 2D) of every label."""
        return json.loads((done_job(job_id).folder / "volumes.json").read_text(encoding="utf-8"))

    @app.get("/jobs/{job_id}/lesions")
    def job_lesions(job_id: str) -> dict[str, Any]:
        """Connected components per label: count, and per component voxels, volume, box and centroid."""
        return json.loads((done_job(job_id).folder / "lesions.json").read_text(encoding="utf-8"))

    @app.get("/jobs/{job_id}/preview")
    def job_preview(job_id: str) -> dict[str, Any]:
        """What the viewer needs: shape, slices, spacing, the labels' display indices."""
        return json.loads((done_job(job_id).folder / "preview.json").read_text(encoding="utf-8"))

    @app.get("/jobs/{job_id}/preview/{kind}/{index}.png")
    def job_preview_slice(job_id: str, kind: str, index: int) -> Response:
        """One 8-bit slice of the image (grey or RGB) or of the label indices, as PNG."""
        job = done_job(job_id)
        if kind not in ("image", "labels"):
            raise RequestError(404, f"unknown preview '{kind[:40]}' (image or labels)")
        slices = json.loads((job.folder / "preview.json").read_text(encoding="utf-8"))["slices"]
        if not 0 <= index < slices:
            raise RequestError(404, f"slice {index} is outside 0..{slices - 1}")
        return Response(slice_png(job.folder, kind, index), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    return app


__all__ = ["create_app", "ServeLimits", "MedsegError"]
