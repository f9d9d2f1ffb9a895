"""``medseg serve MODEL [MODEL...]``: the HTTP service with its web viewer (loopback by default)."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.constants import DEFAULT_BACKEND
from medseg.cli import app


@app.command("serve")
def serve_command(
    models: list[Path] = typer.Argument(..., help="Model folders to serve (each under its folder name)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; loopback by default (the "
                             "service has no authentication: expose it only behind one)."),
    port: int = typer.Option(8000, "--port", help="Port (0: any free port; the address is printed)."),
    jobs: int = typer.Option(1, "--jobs", help="Jobs predicting at once (one worker process each)."),
    queue: int = typer.Option(32, "--queue", help="Most jobs queued or running; more get HTTP 503."),
    job_timeout: str = typer.Option("10m", "--job-timeout", help="Time limit per job (e.g. 90s, 10m)."),
    max_upload_mb: float = typer.Option(512, "--max-upload-mb", help="Largest upload in MiB."),
    max_voxels: int = typer.Option(512 * 512 * 512, "--max-voxels", help="Largest image, voxels × channels."),
    keep: str = typer.Option("1h", "--keep", help="How long finished results are kept."),
    threads: int = typer.Option(0, "--threads", help="Torch threads per job (0: the cores shared among --jobs)."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", help="auto (default), torch, onnx or compile, as for `medseg predict`."),
    tile_size: str = typer.Option(None, "--tile-size", help="Sliding-window tile, as for `medseg predict` (e.g. "
                                  "592,576: a whole DRIVE image in one tile)."),
    work_dir: Path = typer.Option(None, "--work-dir", help="Where the server makes its temporary folder "
                                  "(default: the system's temporary directory); removed when it stops."),
) -> None:
    """Serve trained models over HTTP with a web viewer: upload an image, watch the job, scroll the slices
    with the label overlay, read the volumes, download the label map.

    API: GET /models, POST /predict, GET /jobs/{id}, GET /jobs/{id}/result?format=nifti|png|dicom-seg,
    GET /jobs/{id}/volumes, GET /jobs/{id}/lesions; OpenAPI docs at /docs.

    Example: medseg serve demo_output/model --port 8000
    """
    from medseg.serve.limits import MIB, ServeLimits
    from medseg.serve.server import serve
    from medseg.training.config import parse_duration, parse_size

    limits = ServeLimits(max_upload_bytes=int(max_upload_mb * MIB), max_voxels=max_voxels,
                         max_concurrent_jobs=jobs, max_queued_jobs=max(queue, jobs),
                         job_timeout_s=parse_duration(job_timeout), result_ttl_s=parse_duration(keep),
                         threads_per_job=threads)
    options = {"tile_size": parse_size(tile_size)} if tile_size else {}
    serve(models, host, port, limits, backend=backend, work_dir=work_dir, predictor_options=options,
          announce=lambda line: typer.echo(line, err=False))
