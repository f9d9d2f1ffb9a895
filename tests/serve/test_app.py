"""The HTTP service through FastAPI's TestClient: every endpoint, the limits and bad input, on tiny models."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from medseg import Predictor, read_image  # noqa: E402
from medseg.inference.volumes import label_volumes  # noqa: E402
from medseg.model_folder import load_config  # noqa: E402
from medseg.serve import ServeLimits, create_app  # noqa: E402
from medseg.serve.results import dicom_seg_available  # noqa: E402

from serve_helpers import wait, write_dicom_series, zip_bytes, zip_folder  # noqa: E402


@pytest.fixture(scope="module")
def client(vessel_model, organ_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve_work")
    app = create_app([vessel_model, organ_model], ServeLimits(job_timeout_s=120, threads_per_job=1), work_dir=work)
    with TestClient(app) as c:
        c.work = work
        yield c
    assert list(work.iterdir()) == []  # the server's folder and every job's files are gone


def _upload(client, path_or_bytes, model="vessels", name="case.png"):
    data = path_or_bytes.read_bytes() if hasattr(path_or_bytes, "read_bytes") else path_or_bytes
    return client.post("/predict", data={"model": model}, files={"file": (name, data)})


def _job_folders(client) -> set[str]:
    return {p.name for p in client.app.state.jobs.root.iterdir()}


def test_models_info_docs(client, vessel_model):
    models = {m["name"]: m for m in client.get("/models").json()}
    assert set(models) == {"vessels", "organs"}
    v = models["vessels"]
    assert v["labels"] == {"background": 0, "vessel": 1} and v["input_channels"] == 3 and v["spatial_dims"] == 2
    assert len(v["version"]) == 12 and models["organs"]["spatial_dims"] == 3
    info = client.get("/info").json()
    assert info["limits"]["job_timeout_s"] == 120 and "nifti" in info["formats"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/models", "/predict", "/jobs/{job_id}", "/jobs/{job_id}/result", "/jobs/{job_id}/volumes"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "viewer.js" in page.text
    assert client.get("/static/viewer.js").status_code == 200


def test_predict_2d_png(client, vessel_model, vessels_data):
    path = vessels_data / "imagesTs" / "case_003_0000.png"
    response = _upload(client, path, name="../../etc/passwd")  # the client's file name is never used
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    status = wait(client, job_id)
    assert status["status"] == "done" and status["progress"] == 1.0, status
    assert status["formats"] == ["nifti", "png"] + (["dicom-seg"] if False else [])
    assert status["warnings"] == []  # no largest-component step removed a rival here

    nifti = client.get(f"/jobs/{job_id}/result", params={"format": "nifti"})
    assert nifti.status_code == 200 and job_id in nifti.headers["content-disposition"]
    out = client.app.state.jobs.root / "check.nii.gz"
    out.write_bytes(nifti.content)
    served = read_image(out)
    out.unlink()
    image = read_image(path)
    assert served.spatial_shape == image.spatial_shape
    direct = Predictor.from_folder(vessel_model, backend="torch").predict(image)
    assert np.mean(served.array != direct.array) < 0.005  # another process, maybe other float rounding
    png = client.get(f"/jobs/{job_id}/result", params={"format": "png"})
    assert png.headers["content-type"] == "image/png"
    from PIL import Image as PILImage

    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(png.content))), served.array[0])

    config = load_config(vessel_model)
    volumes = client.get(f"/jobs/{job_id}/volumes").json()
    png_path = client.app.state.jobs.root / "check.png"
    png_path.write_bytes(png.content)
    as_png = read_image(png_path)  # a raster input: sizes in pixels
    png_path.unlink()
    assert volumes == json.loads(json.dumps(label_volumes(as_png, config, case="case")))
    assert volumes[0]["unit"] == "pixels"
    assert volumes[0]["voxels"] == int((served.array == 1).sum()) > 0
    lesions = client.get(f"/jobs/{job_id}/lesions").json()
    import cc3d

    assert lesions["counts"]["vessel"] == cc3d.connected_components(served.array[0] == 1, connectivity=8,
                                                                     return_N=True)[1]
    assert sum(r["voxels"] for r in lesions["lesions"]) == volumes[0]["voxels"]

    preview = client.get(f"/jobs/{job_id}/preview").json()
    assert preview["slices"] == 1 and preview["rgb"] and preview["labels"][0]["name"] == "vessel"
    labels_png = client.get(f"/jobs/{job_id}/preview/labels/0.png")
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(labels_png.content))), served.array[0])
    assert np.asarray(PILImage.open(io.BytesIO(client.get(f"/jobs/{job_id}/preview/image/0.png").content))).shape == (
        48, 48, 3)
    assert client.get(f"/jobs/{job_id}/preview/image/1.png").status_code == 404
    assert client.get(f"/jobs/{job_id}/preview/other/0.png").status_code == 404
    bad = client.get(f"/jobs/{job_id}/result", params={"format": "dicom-seg"})
    assert bad.status_code == 400 and "dicom-seg" in bad.json()["detail"]
    assert client.get(f"/jobs/{job_id}/result", params={"format": "jpeg"}).status_code == 400


def test_predict_3d_nifti_and_dicom_zip(client, organ_model, organs_data, tmp_path):
    path = organs_data / "imagesTs" / "case_002_0000.nii.gz"
    job = _upload(client, path, model="organs", name="x.nii.gz").json()["id"]
    assert wait(client, job)["status"] == "done"
    result = tmp_path / "r.nii.gz"
    result.write_bytes(client.get(f"/jobs/{job}/result").content)
    image, served = read_image(path), read_image(result)
    assert served.same_geometry(image)
    assert client.get(f"/jobs/{job}/preview").json()["slices"] == image.spatial_shape[0]
    png = client.get(f"/jobs/{job}/result", params={"format": "png"})
    assert png.status_code == 400 and "2D" in png.json()["detail"]
    volumes = client.get(f"/jobs/{job}/volumes").json()
    assert [r["unit"] for r in volumes] == ["mL", "mL"]

    # the same volume as a zipped DICOM series (in a sub-folder of the zip)
    series = write_dicom_series(np.round(image.array[0] * 100), tmp_path / "dicom", "1.2.3.4.5.1")
    job = _upload(client, zip_bytes(zip_folder(series, "study/series1/")), model="organs", name="s.zip").json()["id"]
    status = wait(client, job)
    assert status["status"] == "done" and status["shape"] == list(image.spatial_shape)
    assert ("dicom-seg" in status["formats"]) == dicom_seg_available()
    from_dicom = tmp_path / "d.nii.gz"
    from_dicom.write_bytes(client.get(f"/jobs/{job}/result").content)
    if dicom_seg_available():  # the SEG decodes to the same label map as the NIfTI result
        from medseg.io.dicom_seg import read_dicom_seg

        seg = tmp_path / "labels.dcm"
        response = client.get(f"/jobs/{job}/result", params={"format": "dicom-seg"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/dicom"
        seg.write_bytes(response.content)
        decoded = read_dicom_seg(seg, series, labels=load_config(organ_model).labels).label_map
        assert np.array_equal(np.asarray(decoded.array), read_image(from_dicom).array)


def test_bad_input_gets_a_clear_4xx(client, vessels_data, organs_data, tmp_path):
    before = _job_folders(client)
    png = (vessels_data / "imagesTs" / "case_003_0000.png").read_bytes()
    nifti = (organs_data / "imagesTs" / "case_002_0000.nii.gz").read_bytes()
    cases = {
        "not an image": (_upload(client, b"just some text, not an image"), 415),
        "empty": (_upload(client, b""), 400),
        "truncated png": (_upload(client, png[: len(png) // 2]), 400),
        "truncated nifti": (_upload(client, nifti[: len(nifti) // 2], model="organs"), 400),
        "traversal zip": (_upload(client, zip_bytes({"../../evil.dcm": b"x" * 200}), model="organs"), 400),
        "absolute zip": (_upload(client, zip_bytes({"/tmp/evil.dcm": b"x"}), model="organs"), 400),
        "empty zip": (_upload(client, zip_bytes({}), model="organs"), 400),
        "not dicom zip": (_upload(client, zip_bytes({"a.dcm": b"hello"}), model="organs"), 400),
        "unknown model": (_upload(client, png, model="nope"), 404),
        "missing model": (client.post("/predict", files={"file": ("a.png", png)}), 422),
        "wrong channels": (_upload(client, _grey_png()), 422),
        "wrong dims": (_upload(client, nifti, model="vessels"), 422),
        "unknown job": (client.get("/jobs/0123456789abcdef"), 404),
        "unknown job result": (client.get("/jobs/0123456789abcdef/result"), 404),
    }
    for name, (response, code) in cases.items():
        assert response.status_code == code, (name, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "medseg-serve-" not in detail, (name, detail)
    assert "evil" in cases["traversal zip"][0].json()["detail"]
    assert not (tmp_path.parent / "evil.dcm").exists() and not list(client.work.rglob("evil*"))

    # two series in one zip
    image = read_image(organs_data / "imagesTs" / "case_002_0000.nii.gz").array[0]
    a = write_dicom_series(np.round(image * 100), tmp_path / "a", "1.2.3.4.5.1")
    b = write_dicom_series(np.round(image * 50), tmp_path / "b", "1.2.3.4.5.2")
    two = _upload(client, zip_bytes({**zip_folder(a, "a/"), **zip_folder(b, "b/")}), model="organs")
    assert two.status_code == 400 and "2 DICOM series" in two.json()["detail"]

    # nothing left behind by refused uploads, and the server still serves
    assert _job_folders(client) == before
    assert client.get("/models").status_code == 200
    ok = _upload(client, png)
    assert ok.status_code == 202 and wait(client, ok.json()["id"])["status"] == "done"


def _grey_png() -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.zeros((48, 48), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_result_before_done_409_and_busy_503(client, vessels_data):
    # a large image keeps the only worker busy (its tiles are the model's 32² patches), so the next job is
    # certainly still queued and, with room for two jobs, a third is refused
    jobs = client.app.state.jobs
    limits = jobs.limits
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(buffer, "PNG")
    png = (vessels_data / "imagesTs" / "case_003_0000.png").read_bytes()
    try:
        jobs.limits = replace(limits, max_queued_jobs=2)
        first = _upload(client, buffer.getvalue()).json()["id"]
        second = _upload(client, png).json()["id"]
        busy = _upload(client, png)
        assert busy.status_code == 503 and "busy" in busy.json()["detail"]
        for endpoint in ("result", "volumes", "lesions", "preview"):
            response = client.get(f"/jobs/{second}/{endpoint}")
            assert response.status_code == 409 and "not ready" in response.json()["detail"]
        assert client.get(f"/jobs/{second}").json()["status"] == "queued"
        assert wait(client, first)["status"] == "done" and wait(client, second)["status"] == "done"
    finally:
        jobs.limits = limits


def test_time_limit_stops_the_job_and_the_server_recovers(client, vessels_data):
    jobs = client.app.state.jobs
    limits = jobs.limits
    png = (vessels_data / "imagesTs" / "case_003_0000.png").read_bytes()
    try:
        jobs.limits = replace(limits, job_timeout_s=0.001)
        job = _upload(client, png).json()["id"]
        status = wait(client, job)
        assert status["status"] == "failed" and "time limit" in status["error"]
        assert job not in _job_folders(client)
        response = client.get(f"/jobs/{job}/result")
        assert response.status_code == 409 and "time limit" in response.json()["detail"]
    finally:
        jobs.limits = limits
    again = _upload(client, png).json()["id"]  # a fresh worker takes over
    assert wait(client, again)["status"] == "done"


def test_finished_jobs_expire(client, vessels_data):
    jobs = client.app.state.jobs
    limits = jobs.limits
    png = (vessels_data / "imagesTs" / "case_003_0000.png").read_bytes()
    first = _upload(client, png).json()["id"]
    wait(client, first)
    try:
        jobs.limits = replace(limits, max_kept_jobs=1)
        second = _upload(client, png).json()["id"]
        wait(client, second)
        assert client.get(f"/jobs/{first}").status_code == 404
        assert first not in _job_folders(client) and second in _job_folders(client)
    finally:
        jobs.limits = limits


def test_a_killed_worker_leaves_nothing_in_the_temporary_folder(organ_model, organs_data, tmp_path, monkeypatch):
    # a worker over its time limit is killed; what torch unpacked for it (a loaded 3D package) must not stay behind
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))  # inherited by the spawned workers
    app = create_app([organ_model], ServeLimits(job_timeout_s=120, threads_per_job=1), work_dir=tmp_path)
    with TestClient(app) as client:
        job = _upload(client, organs_data / "imagesTs" / "case_002_0000.nii.gz", model="organs", name="x.nii.gz")
        assert wait(client, job.json()["id"])["status"] == "done"
        jobs = client.app.state.jobs
        unpacked = list(jobs.scratch.glob("aotinductor_*"))
        jobs._slots[0].process.kill()
    if not unpacked:
        pytest.skip("the worker predicted without a compiled package (no compiler): nothing was unpacked")
    assert list(system_tmp.iterdir()) == [] and not jobs.scratch.exists()


def test_upload_size_limit(vessel_model, tmp_path):
    # the body limit answers before the endpoint runs, so no worker is needed (no lifespan)
    app = create_app([vessel_model], ServeLimits(max_upload_bytes=1000), work_dir=tmp_path)
    client = TestClient(app)
    response = client.post("/predict", data={"model": "vessels"}, files={"file": ("a.png", b"\x89PNG" + bytes(5000))})
    assert response.status_code == 413 and "limit" in response.json()["detail"]

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(10):
            yield bytes(500)

    response = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    assert client.get("/models").status_code == 200
    assert list(tmp_path.iterdir()) == []


@pytest.mark.data
def test_real_drive_tiff_upload(client, shared_data, tmp_path):
    """A DRIVE test photograph as distributed (565×584 RGB TIFF) goes through the service."""
    path = shared_data / "DRIVE" / "test" / "images" / "01_test.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    response = _upload(client, path, name="01_test.tif")
    assert response.status_code == 202, response.text
    status = wait(client, response.json()["id"], timeout=600)
    assert status["status"] == "done" and status["shape"] == [584, 565]
    out = tmp_path / "drive.png"
    out.write_bytes(client.get(f"/jobs/{status['id']}/result", params={"format": "png"}).content)
    assert read_image(out).spatial_shape == read_image(path).spatial_shape


def test_a_close_call_of_the_largest_component_step_reaches_the_job(tmp_path):
    from medseg.image import Image
    from medseg.io import write_image
    from medseg.serve.jobs import Job
    from medseg.serve.worker import run_job

    from tests.inference.test_predictor import rival_blobs

    model, blobs = rival_blobs(tmp_path)
    write_image(Image(blobs), tmp_path / "case.nii.gz")
    (tmp_path / "job").mkdir()
    info = run_job(Predictor([model], largest_component=True), "case", tmp_path / "case.nii.gz", tmp_path / "job",
                   "nifti", lambda fraction, stage: None)
    assert len(info["warnings"]) == 1 and "kept 36 voxels and removed 25" in info["warnings"][0]
    job = Job("j", "m", tmp_path / "job", tmp_path / "case.nii.gz", "nifti", info=info)
    assert job.public()["warnings"] == info["warnings"]
