"""``pianogen serve``: a local web page where a pianist uploads or records a take and hears it continued.

The standard library's ThreadingHTTPServer and one static page (``web/index.html``), not Gradio: Gradio
would add FastAPI, uvicorn, pandas and its front-end bundle to every install of a package whose
users install it for the model, and it changes its API often; this page needs four JSON endpoints and
file downloads. One worker thread runs the generations, one at a time, in the order they were asked
for; the page polls a job for its stage, progress and time remaining. Only files a job wrote are served.
A job asked to stream (``stream=1``) runs ``stream_generate``: take 0's continuation is kept chunk by chunk
(``/api/jobs/<id>/chunks/<k>``, small WAVs) and the page plays each one as it arrives (Web Audio).
"""

from __future__ import annotations

import json
import mimetypes
import queue
import re
import secrets
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pianogen.errors import PianogenError
from pianogen.generate import GenerationRequest, check_request, generate, load_generation_run, next_free_dir
from pianogen.takes import prompt_window, read_recording

PAGE = Path(__file__).with_name("web") / "index.html"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # about 45 minutes of 48 kHz 24-bit stereo WAV
FORM = {"seconds": ("seconds", float), "prompt_seconds": ("prompt_seconds", float), "from": ("start", float),
        "to": ("end", float), "temperature": ("temperature", float), "top_k": ("top_k", int),
        "top_p": ("top_p", float), "num": ("num", int), "seed": ("seed", int)}  # form field -> request field
MAX_TAKES = 16  # one batch; more would only make the page wait longer


def find_runs(path: Path) -> dict[str, Path]:
    """RUN_DIR itself, or every run (a folder with recipe.toml and a checkpoint) directly under RUNS_DIR."""
    from pianogen import checkpoint

    candidates = [path] if (path / "recipe.toml").is_file() else sorted(p for p in path.glob("*") if p.is_dir())
    runs = {p.name: p for p in candidates
            if (p / "recipe.toml").is_file() and checkpoint.find(p / "checkpoints", "best") is not None}
    if not runs:
        raise PianogenError(f"{path} holds no trained run (a folder with recipe.toml and checkpoints/best); "
                            f"train one with pianogen train")
    return runs


@dataclass
class Job:
    """One generation asked for by the page, and what the page is told about it."""

    id: str
    run: str
    request: GenerationRequest
    upload: str | None  # the file as uploaded, kept in the job's folder (None: an extension)
    state: str = "queued"  # queued | running | done | error
    stage: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    report: dict[str, Any] | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    sampling_since: float | None = None
    model_reused: bool | None = None  # the run was already loaded by an earlier generation
    stream: bool = False  # take 0's continuation is served chunk by chunk while sampling goes on
    chunks: list[bytes] = field(default_factory=list)  # each a WAV (16-bit PCM) of the next stretch of take 0
    first_audio: float | None = None  # when the first chunk was ready

    def add_chunk(self, audio: Any, sample_rate: int) -> None:
        """stream_generate's chunk float32[num, samples]: take 0's part kept as a small WAV for the page."""
        import io

        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, audio[0], sample_rate, format="WAV", subtype="PCM_16")
        if self.first_audio is None:
            self.first_audio = time.time()
        self.chunks.append(buffer.getvalue())

    def listen(self, stage: str, done: int, total: int) -> None:
        if stage == "sample" and self.sampling_since is None:
            self.sampling_since = time.time()
        self.stage, self.done, self.total = stage, done, total

    def eta_s(self) -> float | None:
        """Seconds of sampling left, from the frames per second so far."""
        if self.stage != "sample" or not self.done or self.sampling_since is None:
            return None
        rate = self.done / max(1e-6, time.time() - self.sampling_since)
        return (self.total - self.done) / rate

    def files(self) -> set[str]:
        """The only names served for this job."""
        return {name for name in (self.upload, *(self.report["files"] if self.report else [])) if name}


class LoadedRuns:
    """Runs kept loaded between the page's generations, so only the first one pays for loading.

    Keyed on everything that changes what is loaded: the run, its checkpoint tag and that checkpoint's
    modification time (a run trained further while serving is loaded again), the precision (int8 and
    the fp32 layout change the model in place) and the device. The ``size`` most recent stay."""

    def __init__(self, size: int = 2) -> None:
        self.size, self.entries, self.last_hit = size, OrderedDict(), False

    def __call__(self, run_dir: Path, request: GenerationRequest, device: Any) -> tuple:
        from pianogen import checkpoint

        found = checkpoint.find(Path(run_dir) / "checkpoints", request.checkpoint)
        stamp = (found / checkpoint.MODEL_FILE).stat().st_mtime_ns if found else None
        key = (str(Path(run_dir).resolve()), request.checkpoint, stamp, request.precision, str(device))
        self.last_hit = key in self.entries
        if not self.last_hit:
            self.entries[key] = load_generation_run(run_dir, request, device)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        return self.entries[key]


class Studio:
    """The runs on offer, the jobs and the worker that runs them one at a time."""

    def __init__(self, runs: dict[str, Path], device: str = "auto"):
        self.runs, self.device = runs, device
        self.jobs: dict[str, Job] = {}
        self.pending: queue.Queue[Job] = queue.Queue()
        self.loaded = LoadedRuns()
        self.lock = threading.Lock()
        threading.Thread(target=self._work, name="pianogen-generate", daemon=True).start()

    def describe_runs(self) -> list[dict[str, Any]]:
        from pianogen import load_recipe

        described = []
        for name, path in self.runs.items():
            g = load_recipe(path / "recipe.toml").generate
            described.append({"name": name, "defaults": {"seconds": g.seconds, "prompt_seconds": g.prompt_seconds,
                                                         "temperature": g.temperature, "top_k": g.top_k,
                                                         "top_p": g.top_p}})
        return described

    def settings(self, run: str, fields: dict[str, str]) -> dict[str, Any]:
        """GenerationRequest fields from the form: the run's recipe defaults, then what the page sent."""
        from pianogen import load_recipe

        if run not in self.runs:
            raise PianogenError(f"unknown run '{run}'; this server offers {', '.join(self.runs)}")
        g = load_recipe(self.runs[run] / "recipe.toml").generate
        settings: dict[str, Any] = {"seconds": g.seconds, "prompt_seconds": g.prompt_seconds,
                                    "temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p}
        for name, (key, kind) in FORM.items():
            text = fields.get(name, "").strip()
            if text:
                try:
                    settings[key] = kind(text)
                except ValueError:
                    raise PianogenError(f"{name.replace('_', ' ')} must be a number, got '{text}'") from None
        if settings.get("num", 1) > MAX_TAKES:
            raise PianogenError(f"at most {MAX_TAKES} takes at a time")
        return settings

    def enqueue(self, run: str, request: GenerationRequest, upload: str | None, stream: bool = False) -> Job:
        job = Job(secrets.token_hex(6), run, request, upload, stream=stream)
        with self.lock:
            self.jobs[job.id] = job
        self.pending.put(job)
        return job

    def submit(self, run: str, filename: str, body: bytes, fields: dict[str, str], stream: bool = False) -> Job:
        """Check everything the page sent, keep the upload, queue the job; PianogenError says what is wrong."""
        settings = self.settings(run, fields)
        if not body:
            raise PianogenError("the upload is empty: choose or record a take first")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name).strip("._") or "take.wav"
        with self.lock:
            out = next_free_dir(self.runs[run] / "generated", Path(safe).stem)
            out.mkdir(parents=True)
        upload = out / f"upload_{safe}"
        upload.write_bytes(body)
        request = GenerationRequest(prompt=str(upload), out=out, **settings)
        try:
            check_request(request)
            recording = read_recording(upload)
            prompt_window(recording.seconds, request.prompt_seconds, request.start, request.end)
        except PianogenError as err:
            upload.unlink()
            out.rmdir()
            raise PianogenError(str(err).replace(str(upload), filename)) from None
        return self.enqueue(run, request, upload.name, stream)

    def extend(self, source: str, fields: dict[str, str], stream: bool = False) -> Job:
        """Continue ``<job id>/take_<i>.wav`` of a finished job, from its saved codes, into a new folder."""
        job_id, _, name = source.partition("/")
        job = self.jobs.get(job_id)
        if job is None or job.state != "done" or not name.startswith("take_") or name not in job.files():
            raise PianogenError(f"no finished take '{source}' to extend")
        take = Path(job.request.out) / name
        if any(key in fields for key in ("from", "to")):
            raise PianogenError("an extension continues the take from its end: leave From and To empty")
        with self.lock:
            out = next_free_dir(take.parent, f"{take.stem}-extended")
            out.mkdir(parents=True)
        request = GenerationRequest(prompt="", extend=str(take), out=out, **self.settings(job.run, fields))
        try:
            check_request(request)
        except PianogenError:
            out.rmdir()
            raise
        return self.enqueue(job.run, request, None, stream)

    def status(self, job: Job) -> dict[str, Any]:
        with self.lock:
            ahead = sum(1 for j in self.jobs.values()
                        if j.state in ("queued", "running") and j.submitted < job.submitted)
        base = f"/files/{job.id}/"
        result = {"id": job.id, "run": job.run, "state": job.state, "stage": job.stage, "done": job.done,
                  "total": job.total, "ahead": ahead if job.state == "queued" else 0, "eta_s": job.eta_s(),
                  "error": job.error, "upload": job.upload and base + job.upload, "submitted": job.submitted,
                  "extends": job.request.extend and Path(job.request.extend).name,
                  "started": job.started, "finished": job.finished, "model_reused": job.model_reused,
                  "stream": {"chunks": len(job.chunks), "first_audio": job.first_audio} if job.stream else None}
        if job.report:
            result.update(notes=job.report["notes"], prompt_window_s=job.report["prompt_window_s"],
                          report=base + "generation.json",
                          takes=[{k: (base + v if isinstance(v, str) else v) for k, v in take.items()}
                                 for take in job.report["takes"]])
        return result

    def _work(self) -> None:
        while True:
            job = self.pending.get()
            job.state, job.stage, job.started = "running", "loading the model", time.time()
            try:
                from pianogen.stream import stream_generate

                run, streaming = (stream_generate, {"on_chunk": job.add_chunk}) if job.stream else (generate, {})
                job.report = run(self.runs[job.run], job.request, device=self.device, progress=False,
                                 listener=job.listen, loader=self.loaded, **streaming)
                job.model_reused = self.loaded.last_hit
                job.state = "done"
            except PianogenError as err:
                job.state, job.error = "error", str(err)
            except Exception as err:  # a bug: the page says so, the terminal gets the traceback
                traceback.print_exc()
                job.state, job.error = "error", f"internal error: {type(err).__name__}: {err}"
            job.finished = time.time()


class Handler(BaseHTTPRequestHandler):
    server: "StudioServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:
        studio = self.server.studio
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts == [""]:
            self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif parts == ["api", "runs"]:
            self._json(200, {"runs": studio.describe_runs()})
        elif len(parts) == 3 and parts[:2] == ["api", "jobs"] and parts[2] in studio.jobs:
            self._json(200, studio.status(studio.jobs[parts[2]]))
        elif len(parts) == 5 and parts[:2] == ["api", "jobs"] and parts[2] in studio.jobs and parts[3] == "chunks" \
                and parts[4].isdigit() and int(parts[4]) < len(studio.jobs[parts[2]].chunks):
            self._send(200, studio.jobs[parts[2]].chunks[int(parts[4])], "audio/wav")
        elif len(parts) == 3 and parts[0] == "files" and parts[1] in studio.jobs and \
                parts[2] in studio.jobs[parts[1]].files():
            self._file(Path(studio.jobs[parts[1]].request.out) / parts[2])
        else:
            self._json(404, {"error": f"nothing here: {self.path}"})

    do_HEAD = do_GET

    def _file(self, path: Path) -> None:
        """A job's file, with single byte ranges so the audio player can seek (reading only that range)."""
        size = path.stat().st_size
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not (match and (match.group(1) or match.group(2))):
            self._send(200, path.read_bytes(), kind, {"Accept-Ranges": "bytes"})
            return
        first = int(match.group(1)) if match.group(1) else max(0, size - int(match.group(2)))
        last = min(int(match.group(2)), size - 1) if match.group(1) and match.group(2) else size - 1
        if first >= size or first > last:
            self._send(416, b"", kind, {"Content-Range": f"bytes */{size}"})
            return
        with open(path, "rb") as f:
            f.seek(first)
            part = f.read(last + 1 - first)
        self._send(206, part, kind, {"Content-Range": f"bytes {first}-{last}/{size}", "Accept-Ranges": "bytes"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/jobs":
            self._json(404, {"error": f"nothing here: {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            self.close_connection = True
            self._json(413, {"error": f"the upload is {length / 2**20:.0f} MiB; at most "
                                      f"{MAX_UPLOAD_BYTES // 2**20} MiB are accepted"})
            return
        body = self.rfile.read(length)
        fields = {key: values[-1] for key, values in parse_qs(url.query).items()}
        stream = fields.pop("stream", "") not in ("", "0")
        studio = self.server.studio
        try:
            if "extend" in fields:
                job = studio.extend(fields.pop("extend"), fields, stream)
            else:
                job = studio.submit(fields.pop("run", ""), fields.pop("filename", "take.wav"), body, fields, stream)
        except PianogenError as err:
            self._json(400, {"error": str(err)})
            return
        self._json(202, self.server.studio.status(job))


class StudioServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], studio: Studio, verbose: bool = False):
        super().__init__(address, Handler)
        self.studio, self.verbose = studio, verbose


def serve(path: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto", verbose: bool = False) -> None:
    """Serve the page until interrupted; prints the address first (port 0 picks a free one)."""
    server = StudioServer((host, port), Studio(find_runs(path), device), verbose)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {len(server.studio.runs)} run(s) on http://{shown}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
