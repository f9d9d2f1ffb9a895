"""The viewer in a real browser: Debian's headless Chromium, driven by Selenium, against `medseg serve`.

Starts the command line's server on a free loopback port (a subprocess), uploads a synthetic fundus image,
waits for the overlay, and checks the pixels, the label toggle and the volume table; saves a screenshot
(``viewer.png`` in the test's tmp_path). Skips with a message only where chromium / chromedriver or
Selenium are not installed (`.ci/run` installs them).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medseg import read_image
from medseg.inference.volumes import label_volumes
from medseg.model_folder import load_config

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no system Chromium / chromedriver (apt-get install chromium chromium-driver; .ci/run does)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    return chromium, driver


@pytest.fixture
def server(vessel_model, organ_model, tmp_path):
    """`medseg serve VESSELS ORGANS --port 0` in a subprocess; yields (url, work folder)."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "medseg", "serve", str(vessel_model), str(organ_model), "--port", "0",
                             "--threads", "1", "--work-dir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env)
    try:
        line = proc.stdout.readline()
        assert "viewer at http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split("viewer at ")[1].split()[0]
        yield url, work
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert list(work.iterdir()) == []  # the server removed its temporary folder


def _canvas(driver) -> np.ndarray:
    data = driver.execute_script(
        "const c = document.getElementById('view');"
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];")
    width, height, pixels = data
    return np.asarray(pixels, np.uint8).reshape(height, width, 4)[..., :3]


def _wait_ready(driver, wait) -> None:
    wait.until(lambda d: d.find_element("id", "viewer").get_attribute("data-state") == "ready")


def _set_input(driver, element_id: str, value) -> None:
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                          "e.dispatchEvent(new Event('input'));", element_id, str(value))


def test_viewer_in_chromium(server, vessel_model, vessels_data, organs_data, tmp_path):
    chromium, chromedriver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, _ = server
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        wait = WebDriverWait(driver, 180)
        driver.get(url)
        wait.until(lambda d: len(Select(d.find_element("id", "model")).options) == 2)
        Select(driver.find_element("id", "model")).select_by_value("vessels")
        case = vessels_data / "imagesTs" / "case_003_0000.png"
        driver.find_element("id", "file").send_keys(str(case))
        driver.find_element("id", "upload").click()
        _wait_ready(driver, wait)
        job = driver.execute_script("return window.medsegViewer.job;")
        assert "done in" in driver.find_element("id", "status-text").text
        driver.save_screenshot(str(tmp_path / "viewer.png"))

        # the served prediction, as the download link gives it
        result = tmp_path / "labels.nii.gz"
        with urllib.request.urlopen(f"{url}jobs/{job}/result?format=nifti", timeout=30) as response:
            result.write_bytes(response.read())
        labels = read_image(result).array[0]
        assert labels.shape == read_image(case).spatial_shape and (labels == 1).any()

        overlay = _canvas(driver)
        _set_input(driver, "opacity", 0)
        _wait_ready(driver, wait)
        plain = _canvas(driver)
        changed = (overlay != plain).any(-1)
        assert changed.any(), "the overlay left the image unchanged"
        assert not changed[labels == 0].any(), "the overlay painted outside the label map"
        assert changed[labels == 1].mean() > 0.9  # where the colour equals the pixel the blend changes nothing

        _set_input(driver, "opacity", 100)  # a full-opacity label turned off shows the plain image
        _wait_ready(driver, wait)
        assert (_canvas(driver)[labels == 1] == (0x56, 0xB4, 0xE9)).all()  # Okabe–Ito sky blue
        driver.find_element("css selector", "#legend input[data-label-index='1']").click()
        _wait_ready(driver, wait)
        assert np.array_equal(_canvas(driver), plain)

        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('#volumes tbody tr')).map("
            "r => Array.from(r.cells).map(c => c.textContent));")
        as_png = tmp_path / "labels.png"  # the PNG input's label map: no physical size, as on the page
        with urllib.request.urlopen(f"{url}jobs/{job}/result?format=png", timeout=30) as response:
            as_png.write_bytes(response.read())
        expected = label_volumes(read_image(as_png), load_config(vessel_model), case="case")
        assert expected[0]["unit"] == "pixels"
        assert rows == [[r["label"], r["value"], str(r["voxels"]), _js_number(r["volume"]), r["unit"]]
                        for r in expected]
        links = driver.execute_script("return Array.from(document.querySelectorAll('#download-list a')).map(a => a.href);")
        assert any(link.endswith(f"/jobs/{job}/result?format=nifti") for link in links)
        assert (tmp_path / "viewer.png").stat().st_size > 0

        # a 3D case: the slider scrolls through its slices
        Select(driver.find_element("id", "model")).select_by_value("organs")
        volume = organs_data / "imagesTs" / "case_002_0000.nii.gz"
        driver.find_element("id", "file").clear()
        driver.find_element("id", "file").send_keys(str(volume))
        driver.find_element("id", "upload").click()
        wait.until(lambda d: d.execute_script("return window.medsegViewer.job;") != job)
        _wait_ready(driver, wait)
        slices = read_image(volume).spatial_shape[0]
        assert driver.find_element("id", "slice").get_attribute("max") == str(slices - 1)
        first = _canvas(driver)
        assert first.shape[:2] == read_image(volume).spatial_shape[1:]
        components = driver.find_elements("css selector", "#components button")
        assert components, "no component listed"
        components[0].click()  # jumps to the slice through the largest component's centroid
        lesions = json.loads(urllib.request.urlopen(f"{url}jobs/{driver.execute_script('return window.medsegViewer.job;')}"
                                                    "/lesions", timeout=30).read())
        target = str(math.floor(lesions["lesions"][0]["centroid_voxel"][0] + 0.5))  # JavaScript Math.round
        wait.until(lambda d: d.find_element("id", "viewer").get_attribute("data-slice") == target)
        _set_input(driver, "slice", 0)
        wait.until(lambda d: d.find_element("id", "viewer").get_attribute("data-slice") == "0")
        _wait_ready(driver, wait)
        assert not np.array_equal(_canvas(driver), first)  # another slice of the phantom
        assert driver.find_element("id", "slice-label").text == f"1 / {slices}"
        driver.save_screenshot(str(tmp_path / "viewer3d.png"))

        # the API docs render offline (Swagger UI served by the app, no CDN)
        driver.get(f"{url}docs")
        wait.until(lambda d: "medseg" in d.execute_script(
            "const t = document.querySelector('.swagger-ui .info .title'); return t ? t.textContent : '';"))
        assert "/predict" in driver.find_element("css selector", ".swagger-ui").text
        driver.get(url)
        wait.until(lambda d: len(Select(d.find_element("id", "model")).options) == 2)

        # a file that is not an image: the page shows the server's one-line reason
        text = tmp_path / "notes.txt"
        text.write_text("not an image", encoding="utf-8")
        driver.find_element("id", "file").clear()
        driver.find_element("id", "file").send_keys(str(text))
        driver.find_element("id", "upload").click()
        wait.until(lambda d: d.find_element("id", "error").is_displayed())
        assert "415" in driver.find_element("id", "error").text and "not an image" in driver.find_element(
            "id", "error").text
        assert driver.find_element("id", "viewer").get_attribute("hidden") is not None
    finally:
        driver.quit()


def _js_number(value: float) -> str:
    """How JavaScript's String(number) writes a volume (integers without '.0')."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
