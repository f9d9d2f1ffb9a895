"""A worker process: loads the models once, then predicts the jobs the queue sends it, one at a time.

Prediction runs in a separate process so that a job over its time limit can be stopped for certain (the
process is ended and a fresh one started) and a crash in native code cannot take the service down.
Messages on the pipe: ``("job", id, model, source, folder, kind)`` in; ``("ready",)``, ``("progress", id,
fraction, stage)``, ``("done", id, info)`` and ``("failed", id, reason)`` out; ``None`` stops the worker.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

from medseg.constants import DEFAULT_BACKEND
from medseg.errors import MedsegError


def run_job(predictor, name: str, source: Path, folder: Path, kind: str, report) -> dict[str, Any]:
    """Predict one uploaded case and write its results into ``folder``; ``report(fraction, stage)``."""
    from medseg.inference.volumes import label_volumes
    from medseg.io import read_image
    from medseg.serve.results import lesion_table, write_results

    report(0.05, "reading")
    image = read_image(source)
    report(0.15, "predicting")
    warnings: list[str] = []  # largest-component steps that removed a rival of comparable size
    label_map = predictor.predict_with_probabilities(image, probabilities=False, notes=warnings)[0]
    report(0.85, "measuring")
    config = predictor.config
    volumes = label_volumes(label_map, config, case=name)
    lesions = lesion_table(label_map, config.labels)
    report(0.92, "writing")
    formats, notes = write_results(folder, image, label_map, config.labels, volumes, lesions,
                                   source if kind == "dicom" and source.is_dir() else None)
    return {"formats": formats, "notes": notes, "shape": list(label_map.spatial_shape),
            "spatial_dims": label_map.spatial_dims, "warnings": warnings}


def worker_main(conn, model_folders: dict[str, str], threads: int, backend: str = DEFAULT_BACKEND,
                options: dict[str, Any] | None = None, temp_dir: str | None = None) -> None:
    """Entry point of a worker process (``multiprocessing`` spawn target); its temporary files go to
    ``temp_dir`` (the server's scratch folder) when given."""
    if temp_dir is not None:
        # a worker over its time limit is killed, and what native code had unpacked into the temporary folder
        # stays (a loaded 3D package: /tmp/aotinductor_*, ~2 MB, removed only by its destructor); inside the
        # server's folder it goes when the server stops. This process's own environment: nothing else reads it.
        os.environ["TMPDIR"] = tempfile.tempdir = str(temp_dir)
    import torch

    from medseg.inference.predictor import Predictor

    torch.set_num_threads(max(1, int(threads)))
    try:
        predictors = {name: Predictor.from_folder(folder, backend=backend, **(options or {}))
                      for name, folder in model_folders.items()}
    except Exception as exc:  # noqa: BLE001 — reported to the queue, which fails the jobs with the reason
        conn.send(("broken", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        _, job_id, model, source, folder, kind = message

        def report(fraction: float, stage: str, job_id: str = job_id) -> None:
            conn.send(("progress", job_id, float(fraction), stage))

        try:
            info = run_job(predictors[model], "case", Path(source), Path(folder), kind, report)
        except MedsegError as exc:
            conn.send(("failed", job_id, exc.message))
        except MemoryError:
            conn.send(("failed", job_id, "out of memory while predicting"))
        except Exception as exc:  # noqa: BLE001 — one line for the client; the traceback for the server log
            traceback.print_exc()
            conn.send(("failed", job_id, f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("done", job_id, info))
