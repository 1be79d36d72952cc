"""``pianogen serve``: the HTTP API over a real tiny run, and the page driven in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def server(trained_run, tmp_path):
    """``pianogen serve RUN --port 0`` in a subprocess; yields its base URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "pianogen", "serve", str(trained_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving 1 run(s) on http://127.0.0.1:"), line + proc.stderr.read()
        yield line.split()[-1].rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def post(url: str, body: bytes) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_done(base: str, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = json.loads(get(f"{base}/api/jobs/{job_id}")[1])
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


def stereo_take(path: Path, seconds: float = 1.5, rate: int = 22050) -> np.ndarray:
    """A stereo 16-bit take at a rate the codec does not use; returns its int16 samples [S, 2]."""
    t = np.arange(int(seconds * rate)) / rate
    music = np.stack([0.3 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 495 * t)], axis=1)
    sf.write(path, music, rate, subtype="PCM_16")
    return sf.read(path, dtype="int16")[0]


def test_api_queues_one_generation_at_a_time_and_serves_only_its_files(server, tmp_path):
    original = stereo_take(tmp_path / "mine.wav")
    body = (tmp_path / "mine.wav").read_bytes()
    query = "run=run&filename=mine.wav&seconds=0.5&prompt_seconds=0.5&num=1"
    status, first = post(f"{server}/api/jobs?{query}&seed=1", body)
    assert status == 202, first
    status, second = post(f"{server}/api/jobs?{query}&seed=2", body)
    assert status == 202 and second["state"] == "queued" and second["ahead"] == 1, second
    first, second = wait_done(server, first["id"]), wait_done(server, second["id"])
    assert first["state"] == second["state"] == "done", (first["error"], second["error"])
    assert first["model_reused"] is False and second["model_reused"] is True  # loaded once, not per generation
    assert second["started"] >= first["finished"]  # queued: the second began only after the first ended

    status, data = get(server + first["takes"][0]["take"])
    assert status == 200
    (tmp_path / "take.wav").write_bytes(data)
    take, rate = sf.read(tmp_path / "take.wav", dtype="int16")
    assert rate == 22050 and take.shape[1] == 2 and abs(len(take) - 2.0 * rate) <= 2  # 1.5 s + 0.5 s
    fade = round(0.05 * rate)
    assert np.array_equal(take[: len(original) - fade], original[:-fade])  # the pianist's samples, untouched
    status, part = get(server + first["takes"][0]["take"], {"Range": "bytes=4-11"})
    assert status == 206 and part == data[4:12]

    status, extension = post(f"{server}/api/jobs?extend={first['id']}/take_0.wav&seconds=0.25&seed=1", b"")
    assert status == 202, extension
    extension = wait_done(server, extension["id"])
    assert extension["state"] == "done" and extension["extends"] == "take_0.wav", extension["error"]
    assert extension["prompt_window_s"][1] == pytest.approx(2.0, abs=1e-4)  # from where the take ended
    (tmp_path / "longer.wav").write_bytes(get(server + extension["takes"][0]["take"])[1])
    longer = sf.read(tmp_path / "longer.wav", dtype="int16")[0]
    assert abs(len(longer) - 2.25 * rate) <= 1 and np.array_equal(longer[: len(take) - fade], take[:-fade])
    assert post(f"{server}/api/jobs?extend={first['id']}/mine.wav", b"")[0] == 400  # not a take

    for path in ("/files/{id}/../recipe.toml", "/files/{id}/recipe.toml", "/files/nope/take_0.wav", "/etc/passwd"):
        assert get(server + path.format(id=first["id"]))[0] == 404, path


def test_a_streamed_job_serves_take_0_chunk_by_chunk_as_the_finished_continuation(server, tmp_path):
    stereo_take(tmp_path / "mine.wav")
    query = "run=run&filename=mine.wav&seconds=1.5&prompt_seconds=0.5&num=2&seed=3&stream=1"
    status, job = post(f"{server}/api/jobs?{query}", (tmp_path / "mine.wav").read_bytes())
    assert status == 202 and job["stream"] == {"chunks": 0, "first_audio": None}, job
    job = wait_done(server, job["id"])
    assert job["state"] == "done", job["error"]
    n = job["stream"]["chunks"]
    assert n >= 3  # a short first chunk, then one per 0.25 s
    assert job["started"] < job["stream"]["first_audio"] < job["finished"]
    pieces = []
    for k in range(n):
        status, data = get(f"{server}/api/jobs/{job['id']}/chunks/{k}")
        assert status == 200
        (tmp_path / f"chunk{k}.wav").write_bytes(data)
        pieces.append(sf.read(tmp_path / f"chunk{k}.wav", dtype="int16")[0])
    assert get(f"{server}/api/jobs/{job['id']}/chunks/{n}")[0] == 404
    (tmp_path / "cont.wav").write_bytes(get(server + job["takes"][0]["continuation"])[1])
    continuation = sf.read(tmp_path / "cont.wav", dtype="int16")[0]
    streamed = np.concatenate(pieces)
    # what the page played is the finished continuation of take 0 (one 16-bit step of rounding at most)
    assert streamed.shape == continuation.shape and np.abs(streamed.astype(int) - continuation).max() <= 1


def test_loaded_runs_are_kept_until_what_they_loaded_changes(trained_run):
    """The same run, checkpoint and precision reuse the loaded model; another precision or a checkpoint
    written again (a run trained further while serving) loads afresh."""
    import torch

    from pianogen.generate import GenerationRequest
    from pianogen.serve import LoadedRuns

    loaded, cpu = LoadedRuns(size=2), torch.device("cpu")
    fp32 = GenerationRequest(prompt="test:0", seconds=1.0, out=Path("unused"))
    first = loaded(trained_run, fp32, cpu)
    assert not loaded.last_hit and loaded(trained_run, fp32, cpu)[2] is first[2] and loaded.last_hit
    int8 = loaded(trained_run, GenerationRequest(prompt="test:0", seconds=1.0, out=Path("unused"), precision="int8"),
                  cpu)
    assert not loaded.last_hit and int8[2] is not first[2]
    kinds = lambda model: {type(m).__name__ for m in model.modules()}  # noqa: E731
    assert "Int8Linear" in kinds(int8[2]) and "Int8Linear" not in kinds(first[2])  # the cached fp32 one untouched
    model_file = trained_run / "checkpoints" / "best" / "model.safetensors"
    os.utime(model_file, ns=(model_file.stat().st_atime_ns, model_file.stat().st_mtime_ns + 10**9))
    assert loaded(trained_run, fp32, cpu)[2] is not first[2] and not loaded.last_hit


@pytest.mark.parametrize("query, body, message", [
    ("run=run&filename=notes.txt", b"these are not samples", "cannot read audio file notes.txt"),
    ("run=run&filename=mine.wav&seconds=nan", None, "--seconds must be > 0"),
    ("run=run&filename=mine.wav&to=9", None, "not inside the 1.50 s recording"),
    ("run=other&filename=mine.wav", None, "unknown run 'other'"),
    ("run=run&filename=mine.wav", b"", "the upload is empty"),
])
def test_bad_uploads_get_one_clear_message(server, tmp_path, query, body, message):
    stereo_take(tmp_path / "mine.wav")
    status, answer = post(f"{server}/api/jobs?{query}", (tmp_path / "mine.wav").read_bytes() if body is None else body)
    assert status == 400 and message in answer["error"], answer


def test_runs_dir_offers_every_trained_run(trained_run, tmp_path):
    from pianogen.errors import PianogenError
    from pianogen.serve import find_runs

    for name in ("solo", "duet"):
        shutil.copytree(trained_run, tmp_path / "runs" / name, ignore=shutil.ignore_patterns("generated"))
    (tmp_path / "runs" / "notes").mkdir()
    assert list(find_runs(tmp_path / "runs")) == ["duet", "solo"]
    assert list(find_runs(tmp_path / "runs" / "solo")) == ["solo"]
    with pytest.raises(PianogenError, match="holds no trained run"):
        find_runs(tmp_path / "runs" / "notes")
    done = subprocess.run([sys.executable, "-m", "pianogen", "serve", str(tmp_path / "runs" / "notes")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no trained run" in done.stderr


def test_page_in_headless_chromium(server, trained_run, tmp_path):
    """Upload a take, continue it while hearing take 0 as it is made, play the continued take; a bad file
    shows its message; record from a (fake) microphone. Saves the page's screenshot (PIANOGEN_SCREENSHOT=path
    keeps a copy)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: apt-get install chromium (make test does it as root)")
        pytest.skip("no chromium here: apt-get install chromium")
    from playwright.sync_api import expect, sync_playwright

    stereo_take(tmp_path / "mine.wav")
    (tmp_path / "notes.txt").write_text("not audio")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            script_errors = []
            page.on("pageerror", lambda err: script_errors.append(str(err)))
            page.goto(server)
            expect(page.locator("#seconds")).to_have_value("0.5")  # the run's recipe defaults arrived

            page.set_input_files("#file", str(tmp_path / "notes.txt"))
            page.click("#generate")
            expect(page.locator("#error")).to_contain_text("cannot read audio file notes.txt", timeout=60_000)

            page.set_input_files("#file", str(tmp_path / "mine.wav"))
            page.fill("#seconds", "1")
            page.fill("#num", "2")
            page.click("#generate")
            expect(page.locator("audio.take-audio")).to_have_count(2, timeout=300_000)
            expect(page.locator("#error")).to_be_empty()
            live = page.locator("#live")  # take 0 played chunk by chunk (Web Audio) before the job was done
            assert int(live.get_attribute("data-chunks")) >= 2 and int(live.get_attribute("data-while-running")) >= 1
            assert abs(float(live.get_attribute("data-seconds")) - 1.0) < 0.01
            first = page.locator("audio.take-audio").first
            page.wait_for_function("a => a.readyState >= 4", arg=first.element_handle(), timeout=60_000)
            assert abs(first.evaluate("a => a.duration") - 2.5) < 0.01  # 1.5 s take + 1 s continuation
            first.evaluate("a => a.play()")
            page.wait_for_function("a => a.currentTime > 0.2", arg=first.element_handle(), timeout=30_000)
            assert page.locator("img.mel").first.evaluate("i => i.complete && i.naturalWidth > 500")
            page.locator("details").first.evaluate("d => d.open = true")
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)

            page.fill("#seconds", "0.5")
            page.locator("button.extend").nth(1).click()  # extend take 1 by half a second
            page.wait_for_function("document.querySelector('#error').textContent || document.querySelector('#takes p')"
                                   ".textContent.startsWith('Extending')", timeout=300_000)
            assert page.inner_text("#error") == "" and not script_errors, script_errors
            expect(page.locator("#takes p")).to_contain_text("Extending take_1.wav")
            extended = page.locator("audio.take-audio")
            expect(extended).to_have_count(2)
            page.wait_for_function("a => a.readyState >= 1", arg=extended.first.element_handle(), timeout=60_000)
            assert abs(extended.first.evaluate("a => a.duration") - 3.0) < 0.01

            page.click("#record")
            page.wait_for_timeout(1200)
            page.click("#stop")
            expect(page.locator("#chosen")).to_contain_text("recording-")
            preview = page.locator("#preview")
            page.wait_for_function("a => a.readyState >= 1", arg=preview.element_handle(), timeout=30_000)
            assert preview.evaluate("a => a.duration") > 0.5
            assert not script_errors, script_errors
        finally:
            browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    if os.environ.get("PIANOGEN_SCREENSHOT"):
        shutil.copyfile(tmp_path / "serve.png", os.environ["PIANOGEN_SCREENSHOT"])
    kept = sorted(trained_run.glob("generated/mine-*/upload_mine.wav"))
    assert kept and kept[-1].read_bytes() == (tmp_path / "mine.wav").read_bytes()  # the upload, kept as given
