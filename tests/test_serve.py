"""``pianogen serve``: the HTTP API over a real tiny run, and the page driven in headless Chromium."""

from __future__ import annotations

import json
import os
import re
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


def page_token(base: str) -> str:
    """The token the server wrote into its page: what the page sends with every POST."""
    page = get(base + "/")[1].decode()
    return re.search(r'<meta name="pianogen-token" content="([^"]+)">', page).group(1)


def post(url: str, body: bytes, headers: dict | None = None, token: bool = True) -> tuple[int, dict]:
    base = "/".join(url.split("/")[:3])
    sent = {**({"X-Pianogen-Token": page_token(base)} if token else {}), **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST", headers=sent),
                                    timeout=60) as answer:
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

    from pianogen.generation.generate import GenerationRequest
    from pianogen.serving.serve import LoadedRuns

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
    ("run=run&filename=mine.wav&seconds=nan", None, "Continuation length must be > 0"),
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
    from pianogen.serving.serve import find_runs

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
    """Upload a take, drag its prompt window on the waveform, continue it while hearing take 0 as it is made,
    play the continued take; extend a take (the history keeps both generations); continue an example prompt;
    the codes link waits under Advanced; a bad file shows its message in the page's words; record from a (fake)
    microphone; a reload keeps the history. Saves the page's screenshot (PIANOGEN_SCREENSHOT=path keeps a copy)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: apt-get install chromium (make test does it as root)")
        pytest.skip("no chromium here: apt-get install chromium")
    from playwright.sync_api import expect, sync_playwright

    from pianogen.generation.generate_options import MAX_NUM, MAX_SECONDS, MAX_SEED

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
            expect(page.locator("#seconds")).to_have_value("0.5", timeout=60_000)  # the recipe's defaults arrived
            # the command line's limits, from its constants, in the page's words (no --flags)
            assert (page.get_attribute("#num", "max"), page.get_attribute("#seconds", "max")) == \
                (str(MAX_NUM), f"{MAX_SECONDS:g}")
            expect(page.locator("#limits")).to_contain_text(f"Seed: any whole number from 0 to {MAX_SEED}")
            assert "--" not in page.inner_text("body")
            icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(async r => "
                                 "[r.status, r.headers.get('content-type'), (await r.text()).slice(0, 4)])")
            assert icon == [200, "image/svg+xml", "<svg"]

            page.set_input_files("#file", str(tmp_path / "notes.txt"))
            page.fill("#seconds", "5000")
            page.click("#generate")
            expect(page.locator("#error")).to_have_text("Continuation length must be > 0 and <= 3600, got 5000.0",
                                                        timeout=60_000)
            page.fill("#seconds", "1")
            page.click("#generate")
            expect(page.locator("#error")).to_contain_text("cannot read audio file notes.txt", timeout=60_000)

            page.set_input_files("#file", str(tmp_path / "mine.wav"))
            wave = page.locator("#wave")
            expect(wave).to_have_attribute("data-duration", "1.5000", timeout=30_000)
            box = wave.bounding_box()
            page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 10, steps=4)
            page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 20, steps=4)
            page.mouse.up()
            start, end = float(page.input_value("#from")), float(page.input_value("#to"))
            assert abs(start - 0.3) < 0.02 and abs(end - 1.2) < 0.02, (start, end)  # 20 % and 80 % of 1.5 s
            assert (float(wave.get_attribute("data-from")), float(wave.get_attribute("data-to"))) == (start, end)
            expect(page.locator("#window")).to_contain_text(f"the model continues from {end:.2f} s")
            page.fill("#num", "2")
            page.click("#generate")
            generations = page.locator(".generation")
            expect(generations).to_have_count(1, timeout=300_000)
            expect(page.locator("#error")).to_be_empty()
            expect(generations.first.locator(".summary")).to_contain_text(f"Prompt: {start:.2f}–{end:.2f} s")
            expect(generations.first.locator(".is")).to_contain_text("The continuation is mono")
            expect(generations.first.locator(".is")).to_contain_text("kHz audio from the codec")
            live = page.locator("#live")  # take 0 played chunk by chunk (Web Audio) before the job was done
            assert int(live.get_attribute("data-chunks")) >= 2 and int(live.get_attribute("data-while-running")) >= 1
            assert abs(float(live.get_attribute("data-seconds")) - 1.0) < 0.01
            first = page.locator("audio.take-audio").first
            page.wait_for_function("a => a.readyState >= 4", arg=first.element_handle(), timeout=60_000)
            assert abs(first.evaluate("a => a.duration") - (end + 1.0)) < 0.01  # the take to the window's end + 1 s
            first.evaluate("a => a.play()")
            page.wait_for_function("a => a.currentTime > 0.2", arg=first.element_handle(), timeout=30_000)
            assert page.locator("img.mel").first.evaluate("i => i.complete && i.naturalWidth > 500")
            codes = generations.first.locator("details.advanced a.codes").first
            expect(codes).to_be_hidden()  # under Advanced, not beside the download
            generations.first.locator("details.advanced summary").first.click()
            expect(codes).to_be_visible()
            assert codes.get_attribute("href").endswith("/codes_0.safetensors")
            assert page.evaluate("u => fetch(u).then(r => r.status)", codes.get_attribute("href")) == 200
            page.locator("details.compare-box").first.evaluate("d => d.open = true")
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)

            page.fill("#seconds", "0.5")
            page.locator("button.extend").nth(1).click()  # extend take 1 by half a second
            expect(generations).to_have_count(2, timeout=300_000)
            assert page.inner_text("#error") == "" and not script_errors, script_errors
            expect(generations.first.locator(".summary")).to_contain_text("Extending take_1.wav")
            expect(generations.first.locator("h3")).to_contain_text("take_1.wav of #1, extended")
            extended = generations.first.locator("audio.take-audio")
            expect(extended).to_have_count(2)
            expect(generations.nth(1).locator("audio.take-audio")).to_have_count(2)  # the first one is still there
            page.wait_for_function("a => a.readyState >= 1", arg=extended.first.element_handle(), timeout=60_000)
            assert abs(extended.first.evaluate("a => a.duration") - (end + 1.5)) < 0.01

            page.locator("button.example").first.click()  # an example prompt shipped with the package
            expect(page.locator("#chosen")).to_contain_text("March in A major")
            expect(wave).to_have_attribute("data-duration", "7.0000", timeout=30_000)
            assert page.input_value("#from") == page.input_value("#to") == ""  # a new take: its end again
            page.fill("#num", "1")
            page.click("#generate")
            expect(generations).to_have_count(3, timeout=300_000)
            expect(generations.first.locator("h3")).to_contain_text("example_1.ogg")
            example = generations.first.locator("audio.take-audio")
            page.wait_for_function("a => a.readyState >= 1", arg=example.element_handle(), timeout=60_000)
            assert abs(example.evaluate("a => a.duration") - 7.5) < 0.01

            page.fill("#seconds", "600")  # a long one, stopped from the page while it samples
            page.click("#generate")
            expect(page.locator("#status")).to_contain_text("Sampling frame", timeout=60_000)
            page.click("#cancel")
            expect(page.locator("#error")).to_have_text("Stopped.", timeout=30_000)
            expect(page.locator("#cancel")).to_be_hidden()

            page.click("#record")
            page.wait_for_timeout(1200)
            page.click("#stop")
            expect(page.locator("#chosen")).to_contain_text("recording-")
            preview = page.locator("#preview")
            page.wait_for_function("a => a.readyState >= 1", arg=preview.element_handle(), timeout=30_000)
            assert preview.evaluate("a => a.duration") > 0.5
            assert not script_errors, script_errors
            page.reload()
            expect(generations).to_have_count(3)  # the history outlives the page
            expect(generations.first.locator("h3")).to_contain_text("example_1.ogg")
        finally:
            browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    if os.environ.get("PIANOGEN_SCREENSHOT"):
        shutil.copyfile(tmp_path / "serve.png", os.environ["PIANOGEN_SCREENSHOT"])
    kept = sorted(trained_run.glob("generated/mine-*/upload_mine.wav"))
    assert kept and kept[-1].read_bytes() == (tmp_path / "mine.wav").read_bytes()  # the upload, kept as given


@pytest.fixture
def studio(trained_run):
    """The server in this process, with a 1 s request timeout so stalled clients are dropped quickly."""
    import threading

    from pianogen.serving.serve import Studio, find_runs
    from pianogen.serving.serve_http import StudioServer

    server = StudioServer(("127.0.0.1", 0), Studio(find_runs(trained_run), device="cpu"), request_timeout=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        for job in list(server.studio.jobs.values()):  # stop whatever still runs: the next test gets the CPU
            server.studio.cancel(job.id)
        server.shutdown()
        server.server_close()


def raw(server, request: bytes, wait: float = 5.0) -> tuple[int, dict]:
    """Send ``request`` as it is over a socket; the status and JSON body of the answer."""
    import socket

    with socket.create_connection(server.server_address, timeout=wait) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def _length(data: bytes) -> int:
    match = re.search(rb"(?i)content-length: (\d+)", data)
    return int(match.group(1)) if match else 0


def _headers(server, extra: str = "", token: bool = True) -> str:
    host = f"127.0.0.1:{server.port}"
    return f"Host: {host}\r\n" + (f"X-Pianogen-Token: {server.token}\r\n" if token else "") + extra


def _upload(query: str, extra: str = "", token: bool = True):
    """A request builder: a 4-byte upload to /api/jobs?query with the page's headers (and ``extra`` ones)."""
    return lambda s: (f"POST /api/jobs?{query} HTTP/1.1\r\n{_headers(s, extra, token)}Content-Length: 4\r\n"
                      f"\r\nRIFF")


# (name, request builder(server), status, message in the JSON error): each answered, nothing queued or written
HOSTILE_REQUESTS = [
    ("seconds over the CLI's cap", _upload("run=run&seconds=86400&num=16"), 400,
     "Continuation length must be > 0 and <= 3600"),
    ("num over the cap", _upload("run=run&num=1000000"), 400, "Takes must be >= 1 and <= 64"),
    ("seed of 10^23", _upload(f"run=run&seed={10**23}"), 400, "Seed must be >= 0"),
    ("a setting of 5000 digits", _upload(f"run=run&seed={'9' * 5000}"), 400, "longer than 100 characters"),
    ("DNS rebinding", lambda s: f"GET /api/runs HTTP/1.1\r\nHost: evil.example:{s.port}\r\n\r\n", 403,
     "is not this server's address"),
    ("another port in Host", lambda s: f"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{s.port + 1}\r\n\r\n", 403,
     "is not this server's address"),
    ("no Host", lambda s: "GET / HTTP/1.1\r\n\r\n", 403, "is not this server's address"),
    ("cross-site POST", _upload("run=run", "Origin: http://evil.example\r\n"), 403,
     "requests from http://evil.example are refused"),
    ("POST without the page's token", _upload("run=run", token=False), 403, "does not carry the page's token"),
    ("POST with a wrong token", _upload("run=run", "X-Pianogen-Token: guess\r\n", token=False), 403,
     "does not carry the page's token"),
    ("cancel without the token", lambda s: f"POST /api/jobs/abc/cancel HTTP/1.1\r\n{_headers(s, token=False)}"
     f"Content-Length: 0\r\n\r\n", 403, "does not carry the page's token"),
    ("Content-Length abc", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}Content-Length: abc\r\n\r\n",
     400, "Content-Length must be one whole number of bytes, got 'abc'"),
    ("Content-Length -1", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}Content-Length: -1\r\n\r\n",
     400, "got '-1'"),
    ("two Content-Lengths", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}Content-Length: 4\r\n"
     f"Content-Length: 5\r\n\r\nRIFF", 400, "one whole number of bytes"),
    ("no Content-Length on an upload", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}\r\n", 411,
     "needs a Content-Length"),
    ("chunked upload", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}Transfer-Encoding: chunked\r\n"
     f"\r\n4\r\nRIFF\r\n0\r\n\r\n", 411, "chunked bodies are not accepted"),
    ("over the upload cap", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}Content-Length: "
     f"{2**40}\r\n\r\n", 413, "at most 512 MiB"),
    ("a short body", lambda s: f"POST /api/jobs?run=run HTTP/1.1\r\n{_headers(s)}Content-Length: 1000\r\n\r\n"
     f"RIFF", 400, "ended after 4 of its 1000 bytes"),
    ("cancel an unknown job", lambda s: f"POST /api/jobs/nope/cancel HTTP/1.1\r\n{_headers(s)}"
     f"Content-Length: 0\r\n\r\n", 404, "no job 'nope'"),
    ("extend an unknown job", lambda s: f"POST /api/jobs?extend=nope/take_0.wav HTTP/1.1\r\n{_headers(s)}"
     f"Content-Length: 0\r\n\r\n", 400, "no finished take 'nope/take_0.wav' to extend"),
    ("extend with a window", lambda s: f"POST /api/jobs?extend=x/take_0.wav&from=1 HTTP/1.1\r\n{_headers(s)}"
     f"Content-Length: 0\r\n\r\n", 400, "no finished take"),
    ("top_k text", _upload("run=run&top_k=many"), 400, "Top-k must be a number, got 'many'"),
    ("temperature inf", _upload("run=run&temperature=inf"), 400, "Temperature must be >= 0 and <= 100"),
    ("Origin null", _upload("run=run", "Origin: null\r\n"), 403, "requests from null are refused"),
    ("https Origin of the same host", lambda s: _upload("run=run", f"Origin: https://127.0.0.1:{s.port}\r\n")(s),
     403, "are refused"),
    ("Host with userinfo", lambda s: f"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{s.port}@evil.example\r\n\r\n",
     403, "is not this server's address"),
    ("POST elsewhere", lambda s: f"POST /api/runs HTTP/1.1\r\n{_headers(s)}Content-Length: 0\r\n\r\n", 404,
     "nothing here"),
]


@pytest.mark.parametrize("build, status, message", [c[1:] for c in HOSTILE_REQUESTS],
                         ids=[c[0] for c in HOSTILE_REQUESTS])
def test_hostile_requests_get_one_clear_answer_and_change_nothing(studio, trained_run, capfd, build, status,
                                                                  message):
    before = sorted(p.name for p in (trained_run / "generated").iterdir()) if (trained_run / "generated").exists() \
        else []
    started = time.monotonic()
    got, answer = raw(studio, build(studio).encode())
    assert (got, message in answer.get("error", "")) == (status, True), answer
    assert time.monotonic() - started < 3  # a short body waits for the 1 s timeout, no longer
    assert studio.studio.jobs == {}
    after = sorted(p.name for p in (trained_run / "generated").iterdir()) if (trained_run / "generated").exists() \
        else []
    assert after == before
    assert "Traceback" not in capfd.readouterr().err


def test_the_page_names_its_host_and_a_loopback_alias_is_fine(studio):
    for host in (f"localhost:{studio.port}", f"127.0.0.1:{studio.port}", f"[::1]:{studio.port}"):
        status, answer = raw(studio, f"GET /api/runs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert status == 200 and answer["limits"]["max_num"] == 64 and answer["limits"]["max_seconds"] == 3600
    same_site = f"Origin: http://localhost:{studio.port}\r\n"
    status, answer = raw(studio, (f"POST /api/jobs?run=run&filename=x.wav HTTP/1.1\r\n{_headers(studio, same_site)}"
                                  f"Content-Length: 4\r\n\r\nRIFF").encode())
    assert status == 400 and "cannot read audio file x.wav" in answer["error"]  # past every guard


def test_a_full_queue_is_refused_and_cancel_drops_or_stops_jobs(studio, trained_run, tmp_path):
    from pianogen.serving.serve import MAX_QUEUED

    stereo_take(tmp_path / "mine.wav")
    body, base = (tmp_path / "mine.wav").read_bytes(), studio.url.rstrip("/")
    query = f"{base}/api/jobs?run=run&filename=mine.wav&seconds=3600&prompt_seconds=0.5"
    status, running = post(query, body)
    assert status == 202, running
    deadline = time.monotonic() + 120
    while studio.studio.jobs[running["id"]].stage != "sample":  # the worker is busy with it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queued = [post(query + f"&seed={i}", body)[1] for i in range(MAX_QUEUED)]
    assert all(job["state"] == "queued" for job in queued), queued
    status, answer = post(query + "&seed=99", body)
    assert status == 503 and f"{MAX_QUEUED} generations are already waiting" in answer["error"]
    folders = {job["id"]: studio.studio.jobs[job["id"]].request.out for job in queued}
    assert all(folder.is_dir() for folder in folders.values())

    status, dropped = post(f"{base}/api/jobs/{queued[0]['id']}/cancel", b"")
    assert status == 200 and dropped["state"] == "cancelled" and not folders[queued[0]["id"]].exists()
    assert post(query + "&seed=100", body)[0] == 202  # its place is free again
    stopped_at = time.monotonic()
    assert post(f"{base}/api/jobs/{running['id']}/cancel", b"")[0] == 200
    while studio.studio.jobs[running["id"]].state == "running":
        assert time.monotonic() - stopped_at < 10
        time.sleep(0.02)
    job = studio.studio.jobs[running["id"]]
    assert job.state == "cancelled" and job.error.startswith("cancelled at sample ")
    assert job.done < job.total  # stopped at a frame, long before the hour it was asked for
    out = job.request.out
    assert sorted(p.name for p in out.iterdir()) == ["upload_mine.wav"]  # nothing half-written beside the upload


def test_fifty_concurrent_uploads_are_all_answered_while_slow_clients_stall(studio, tmp_path):
    """A burst on 127.0.0.1: 50 uploads at once (each read whole, then refused for its window, so no job runs)
    all answered, none reset, while 5 clients hold connections open sending nothing; those are dropped by the
    1 s timeout."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    stereo_take(tmp_path / "mine.wav")
    body = (tmp_path / "mine.wav").read_bytes()
    slow = [socket.create_connection(studio.server_address) for _ in range(5)]
    for sock in slow:
        sock.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0")  # and then nothing
    request = (f"POST /api/jobs?run=run&filename=mine.wav&to=9 HTTP/1.1\r\n{_headers(studio)}"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    started = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: raw(studio, request, wait=10), range(50)))
    elapsed = time.monotonic() - started
    assert [status for status, _ in answers] == [400] * 50
    assert all("not inside the 1.50 s recording" in answer["error"] for _, answer in answers)
    assert elapsed < 8, elapsed
    for sock in slow:  # the server hung up on each of them
        sock.settimeout(5)
        assert sock.recv(100) == b""
        sock.close()
    assert studio.studio.jobs == {}
