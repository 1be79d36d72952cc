"""``pianogen serve``: a local web page where a pianist uploads or records a take and hears it continued.

The standard library's ThreadingHTTPServer and one static page (``web/index.html``), not Gradio: Gradio
would add FastAPI, uvicorn, pandas and its front-end bundle to every install of a package whose
users install it for the model, and it changes its API often; this page needs four JSON endpoints and
file downloads. One worker thread runs the generations, one at a time, in the order they were asked
for; the page polls a job for its stage, progress and time remaining. Only files a job wrote are served.
A job asked to stream (``stream=1``) runs ``stream_generate``: take 0's continuation is kept chunk by chunk
(``/api/jobs/<id>/chunks/<k>``, small WAVs) and the page plays each one as it arrives (Web Audio).

A generation obeys the command line's limits (``generate_options``); at most ``MAX_QUEUED`` wait, one
more is refused (HTTP 503), and ``POST /api/jobs/<id>/cancel`` drops a queued job or stops a running one
at its next frame. The HTTP side (Host/Origin checks, the page's token, timeouts, Content-Length) is
``serve_http.py``.
"""

from __future__ import annotations

import queue
import re
import secrets
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pianogen.errors import PianogenError
from pianogen.generation.continuation import LoadedRuns
from pianogen.generation.generate import GenerationRequest, check_request, generate, next_free_dir
from pianogen.generation.generate_options import RECIPE_DEFAULTED
from pianogen.generation.takes import prompt_window, read_recording
from pianogen.serving.serve_page import LABELS, in_page_words


def on_or_off(text: str) -> bool:
    """A yes/no field of the form: true/false (what the page sends), on/off, 1/0."""
    answer = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}.get(text.lower())
    if answer is None:
        raise ValueError(text)
    return answer


FORM = {"seconds": ("seconds", float), "prompt_seconds": ("prompt_seconds", float), "from": ("start", float),
        "to": ("end", float), "temperature": ("temperature", float), "top_k": ("top_k", int),
        "top_p": ("top_p", float), "prompt_prior": ("prompt_prior", float),
        "quiet_temperature_scale": ("quiet_temperature_scale", float), "ring_out": ("ring_out", on_or_off),
        "num": ("num", int),
        "seed": ("seed", int)}  # form field -> request field
MAX_QUEUED = 8  # jobs waiting behind the running one; a ninth is refused (HTTP 503) instead of waiting hours


class QueueFull(PianogenError):
    """Every place in the queue is taken: the page is told to try again later (HTTP 503)."""


class JobCancelled(Exception):
    """Raised from a job's progress callback once the page asked to stop it: generation ends at that frame."""


def find_runs(path: Path) -> dict[str, Path]:
    """RUN_DIR itself, or every run (a folder with recipe.toml and a checkpoint) directly under RUNS_DIR."""
    from pianogen.training import checkpoint

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
    source: str = ""  # what it continues, for the page's history: the upload's name, or "<job id>/take_<i>.wav"
    state: str = "queued"  # queued | running | done | error | cancelled
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
    cancel_requested: bool = False  # set by the page; the worker's next frame or chunk raises JobCancelled

    def add_chunk(self, audio: Any, sample_rate: int) -> None:
        """stream_generate's chunk float32[num, samples]: take 0's part kept as a small WAV for the page."""
        import io

        import soundfile as sf

        if self.cancel_requested:
            raise JobCancelled(self.id)

        buffer = io.BytesIO()
        sf.write(buffer, audio[0], sample_rate, format="WAV", subtype="PCM_16")
        if self.first_audio is None:
            self.first_audio = time.time()
        self.chunks.append(buffer.getvalue())

    def listen(self, stage: str, done: int, total: int) -> None:
        if self.cancel_requested:
            raise JobCancelled(self.id)
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


class Studio:
    """The runs on offer, the jobs and the worker that runs them one at a time. A run's generations go to
    ``outputs[run]`` (default ``RUN/generated``; a built-in run is read-only and says where instead)."""

    def __init__(self, runs: dict[str, Path], device: str = "auto", outputs: dict[str, Path] | None = None):
        self.runs, self.device = runs, device
        self.outputs = {name: (outputs or {}).get(name, path / "generated") for name, path in runs.items()}
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
            described.append({"name": name, "defaults": {key: getattr(g, key) for key in RECIPE_DEFAULTED}})
        return described

    def settings(self, run: str, fields: dict[str, str]) -> dict[str, Any]:
        """GenerationRequest fields from the form: the run's recipe defaults, then what the page sent."""
        from pianogen import load_recipe

        if run not in self.runs:
            raise PianogenError(f"unknown run '{run}'; this server offers {', '.join(self.runs)}")
        if any(len(value) > 100 for value in fields.values()):
            raise PianogenError("a setting longer than 100 characters is not a number")
        g = load_recipe(self.runs[run] / "recipe.toml").generate
        settings: dict[str, Any] = {key: getattr(g, key) for key in RECIPE_DEFAULTED}
        for name, (key, kind) in FORM.items():
            text = fields.get(name, "").strip()
            if text:
                try:
                    settings[key] = kind(text)
                except ValueError:
                    label = LABELS["--" + name.replace("_", "-")]  # the page's words for the CLI's option
                    wanted = "on or off" if kind is on_or_off else "a number"
                    raise PianogenError(f"{label} must be {wanted}, got '{text}'") from None
        return settings

    def waiting(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state == "queued")

    def check_room(self) -> None:
        """QueueFull when ``MAX_QUEUED`` jobs already wait (checked before an upload is kept, and again when
        the job is queued)."""
        if self.waiting() >= MAX_QUEUED:
            raise QueueFull(f"the server is busy: {MAX_QUEUED} generations are already waiting; try again when "
                            f"one has finished")

    def enqueue(self, run: str, request: GenerationRequest, upload: str | None, stream: bool = False,
                source: str = "") -> Job:
        job = Job(secrets.token_hex(6), run, request, upload, source=source, stream=stream)
        with self.lock:
            self.check_room()
            self.jobs[job.id] = job
        self.pending.put(job)
        return job

    def submit(self, run: str, filename: str, body: bytes, fields: dict[str, str], stream: bool = False) -> Job:
        """Check everything the page sent, keep the upload, queue the job; PianogenError says what is wrong."""
        settings = self.settings(run, fields)
        if not body:
            raise PianogenError("the upload is empty: choose or record a take first")
        self.check_room()
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name).strip("._")[:100] or "take.wav"
        try:  # before anything is written
            check_request(GenerationRequest(prompt=safe, out=Path("unused"), **settings))
        except PianogenError as err:
            raise PianogenError(in_page_words(str(err))) from None
        with self.lock:
            out = next_free_dir(self.outputs[run], Path(safe).stem)
            out.mkdir(parents=True)
        upload = out / f"upload_{safe}"
        request = GenerationRequest(prompt=str(upload), out=out, **settings)
        try:
            upload.write_bytes(body)
            recording = read_recording(upload)
            prompt_window(recording.seconds, request.prompt_seconds, request.start, request.end)
            return self.enqueue(run, request, upload.name, stream, source=filename[:100])
        except (PianogenError, OSError) as err:
            shutil.rmtree(out, ignore_errors=True)
            kind = QueueFull if isinstance(err, QueueFull) else PianogenError
            raise kind(in_page_words(str(err).replace(str(upload), filename))) from None

    def cancel(self, job_id: str) -> Job:
        """Drop a queued job (and its folder), or stop a running one at its next frame or chunk."""
        job = self.jobs.get(job_id)
        if job is None:
            raise PianogenError(f"no job '{job_id}'")
        with self.lock:
            if job.state == "queued":
                job.state, job.error, job.finished = "cancelled", "cancelled before it started", time.time()
                shutil.rmtree(job.request.out, ignore_errors=True)  # the server made it for this job alone
            elif job.state == "running":
                job.cancel_requested = True
        return job

    def extend(self, source: str, fields: dict[str, str], stream: bool = False) -> Job:
        """Continue ``<job id>/take_<i>.wav`` of a finished job, from its saved codes, into a new folder."""
        job_id, _, name = source.partition("/")
        job = self.jobs.get(job_id)
        if job is None or job.state != "done" or not name.startswith("take_") or name not in job.files():
            raise PianogenError(f"no finished take '{source}' to extend")
        take = Path(job.request.out) / name
        if any(key in fields for key in ("from", "to")):
            raise PianogenError("an extension continues the take from its end: leave From and To empty")
        settings = self.settings(job.run, fields)
        try:
            check_request(GenerationRequest(prompt="", extend=str(take), out=Path("unused"), **settings))
        except PianogenError as err:
            raise PianogenError(in_page_words(str(err))) from None
        self.check_room()
        with self.lock:
            out = next_free_dir(take.parent, f"{take.stem}-extended")
            out.mkdir(parents=True)
        try:
            return self.enqueue(job.run, GenerationRequest(prompt="", extend=str(take), out=out, **settings), None,
                                stream, source=source)
        except PianogenError:
            out.rmdir()
            raise

    def status(self, job: Job) -> dict[str, Any]:
        with self.lock:
            ahead = sum(1 for j in self.jobs.values()
                        if j.state in ("queued", "running") and j.submitted < job.submitted)
        base = f"/files/{job.id}/"
        result = {"id": job.id, "name": Path(job.request.out).name, "run": job.run, "state": job.state,
                  "stage": job.stage, "done": job.done,
                  "total": job.total, "ahead": ahead if job.state == "queued" else 0, "eta_s": job.eta_s(),
                  "error": job.error, "upload": job.upload and base + job.upload, "submitted": job.submitted,
                  "extends": job.request.extend and Path(job.request.extend).name, "source": job.source,
                  "settings": {name: getattr(job.request, key) for name, (key, _) in FORM.items()},
                  "started": job.started, "finished": job.finished, "model_reused": job.model_reused,
                  "stream": {"chunks": len(job.chunks), "first_audio": job.first_audio} if job.stream else None}
        if job.report:
            result.update(notes=job.report["notes"], prompt_window_s=job.report["prompt_window_s"],
                          report=base + "generation.json", continuation_is=continuation_is(job),
                          takes=[{k: (base + v if isinstance(v, str) else v) for k, v in take.items()}
                                 for take in job.report["takes"]])
        return result

    def finished(self) -> list[dict[str, Any]]:
        """Every finished job's status, oldest first: the page's history when it is (re)loaded."""
        return [self.status(job) for job in sorted(self.jobs.values(), key=lambda j: j.submitted)
                if job.state == "done"]

    def _work(self) -> None:
        while True:
            job = self.pending.get()
            with self.lock:
                if job.state != "queued":  # cancelled while it waited
                    continue
                job.state, job.stage, job.started = "running", "loading the model", time.time()
            try:
                from pianogen.generation.stream import stream_generate

                run, streaming = (stream_generate, {"on_chunk": job.add_chunk}) if job.stream else (generate, {})
                job.report = run(self.runs[job.run], job.request, device=self.device, progress=False,
                                 listener=job.listen, loader=self.loaded, **streaming)
                job.model_reused = self.loaded.last_hit
                job.state = "done"
            except JobCancelled:
                job.state, job.error = "cancelled", f"cancelled at {job.stage} {job.done}/{job.total}"
                _remove_outputs(Path(job.request.out), keep=job.upload)
            except PianogenError as err:
                job.state, job.error = "error", in_page_words(str(err))
            except Exception as err:  # a bug: the page says so, the terminal gets the traceback
                traceback.print_exc()
                job.state, job.error = "error", f"internal error: {type(err).__name__}: {err}"
            job.finished = time.time()


def continuation_is(job: Job) -> str:
    """generation.json's plain statement of what the continuation is; a report without one (a streamed job's)
    gets it from take 0's rate and channels, as ``generate`` would have said it."""
    from pianogen.generation.generate import continuation_is as say

    if job.report.get("continuation_is"):
        return job.report["continuation_is"]
    import soundfile as sf

    take = sf.info(str(Path(job.request.out) / job.report["takes"][0]["take"]))
    return say(job.report["sample_rate"], take.samplerate, take.channels)


def _remove_outputs(out: Path, keep: str | None) -> None:
    """What a stopped job wrote in the folder the server made for it (a stream's .part files); the upload stays."""
    for path in out.iterdir() if out.is_dir() else []:
        if path.name != keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)

