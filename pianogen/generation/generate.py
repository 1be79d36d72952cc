"""Continue a pianist's take: the one generation pipeline, whatever receives the audio.

load the run -> open the prompt (a recording's window, a take's saved codes, or audio in memory) -> sample
codes (KV-cached; streamed chunk by chunk when the sink wants chunks) -> decode -> post-filter -> hand the
audio to a sink (``pianogen.generation.sinks``: whole files, chunks as they come, or tensors in memory). Every
generation reports in one shape (``generation_report``; generation.json for the sinks that write files).

The prompt is, by default, the last ``prompt_seconds`` of the recording, so the continuation starts
where the pianist stopped. The file sinks write each continuation three ways: ``take_<i>.wav`` (the original
up to the prompt's end, then the continuation, at the original's rate and channels), ``continuation_<i>.wav``
(codec rate) and ``full_<i>.wav`` (the codec's re-synthesis of prompt + continuation). Its codes are
saved as ``codes_<i>.safetensors`` so ``extend`` can continue the take without re-encoding it.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import pianogen
from pianogen import pipeline
from pianogen.device import pick_device
from pianogen.errors import PianogenError
from pianogen.generation.generate_options import MAX_NUM, MAX_PROMPT_PRIOR, MAX_SECONDS, MAX_SEED, MAX_TEMPERATURE
from pianogen.generation.generate_output import postfilters_for, staged, writing
from pianogen.generation.precision import PRECISIONS, in_precision  # noqa: F401 (re-exported: the API's old home)
from pianogen.generation.prompt_end import quietness, recent_onset_rate, scaled_temperature
from pianogen.generation.ring_out import RingOut, band_decay_rates
from pianogen.generation.sampling import make_sampler
from pianogen.generation.take_codes import codes_path_for, load_take_codes
from pianogen.generation.takes import Recording, prompt_window, read_recording
from pianogen.paths import atomic_write_bytes
from pianogen.progress import progress_bar

if TYPE_CHECKING:
    from pianogen.generation.sinks import Sink
    from pianogen.runs import RunRef

# listener(stage, done, total): stages "encode", "sample" (done = frames), "decode", "write" (done = takes)
Listener = Callable[[str, int, int], None]


@dataclass
class GenerationRequest:
    prompt: str  # a WAV/FLAC/... path, or "<split>:<n>" for piece n of the run's corpus split ("" with extend)
    seconds: float  # continuation length
    out: Path  # output directory
    prompt_seconds: float = 5.0  # prompt length, ending where the window ends (all of the file when shorter)
    temperature: float = 1.0  # 0 = argmax
    top_k: int = 250  # 0 = off
    top_p: float = 0.0  # 0 = off; wins over top_k
    prompt_prior: float = 0.0  # weight of the prompt's own code frequencies (sampling.py); 0 = off
    # the temperature's factor after a prompt whose last 3 s strike nothing, rising to 1 at one onset a second
    # (prompt_end.py); 1 = the temperature whatever the prompt
    quiet_temperature_scale: float = 1.0
    ring_out: bool = False  # after a quiet prompt, fade the continuation as the prompt's sound was dying
    seed: int = 0  # makes the continuation reproducible
    num: int = 1  # continuations of the same prompt, sampled as one batch
    checkpoint: str = "best"  # best | last
    postfilters: list[dict[str, Any]] | None = None  # [{"name": ..., **options}]; None = the recipe's
    use_cache: bool = True  # False recomputes the whole context every step (for benchmarks)
    precision: str = "fp32"  # fp32 | bf16 | int8 (CPU): fewer bytes read per frame, see pianogen.generation.precision
    compile: bool = False  # torch.compile the one-frame decode (CUDA graphs on CUDA); slower on CPU
    start: float | None = None  # --from: prompt window start in seconds (negative = from the end)
    end: float | None = None  # --to: prompt window end in seconds (negative = from the end); None = the end
    extend: str | None = None  # a take_<i>.wav this module wrote: continue it from its saved codes
    crossfade: float = 0.05  # seconds of equal-power crossfade ending where the prompt ends
    # measured, not asked (generate sets them from the prompt's audio): onsets/s in its last 3 s, and its decay
    prompt_onset_rate: float | None = None
    prompt_decay_db_per_s: list[float] | None = None  # by band (ring_out.py)


def check_request(request: GenerationRequest) -> None:
    """Every number finite and in range, and one thing to continue: the CLI and the web page share these."""
    def finite(flag: str, value: float, low: float, high: float, low_open: bool = False) -> None:
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise PianogenError(f"{flag} must be {bound} and <= {high:g}, got {value}")

    finite("--seconds", request.seconds, 0, MAX_SECONDS, low_open=True)
    finite("--prompt-seconds", request.prompt_seconds, 0, MAX_SECONDS, low_open=True)
    finite("--crossfade", request.crossfade, 0, 1)
    finite("--temperature", request.temperature, 0, MAX_TEMPERATURE)
    finite("--top-p", request.top_p, 0, 1)
    finite("--prompt-prior", request.prompt_prior, 0, MAX_PROMPT_PRIOR)
    finite("--quiet-temperature-scale", request.quiet_temperature_scale, 0, MAX_TEMPERATURE)
    if not 1 <= request.num <= MAX_NUM:
        raise PianogenError(f"--num must be >= 1 and <= {MAX_NUM}, got {request.num}")
    if not 0 <= request.seed <= MAX_SEED:
        raise PianogenError(f"--seed must be >= 0 and <= {MAX_SEED}, got {request.seed}")
    if request.top_k < 0:
        raise PianogenError(f"--top-k must be >= 0 (0 = off), got {request.top_k}")
    if bool(request.extend) == bool(request.prompt):
        raise PianogenError("give either --prompt (a recording to continue) or --extend (a take to continue)")
    if request.extend and (request.start is not None or request.end is not None):
        raise PianogenError("--from/--to choose a window of a recording; --extend continues a take from its end")


def resolve_prompt(recipe: "pianogen.recipe.Recipe", prompt: str) -> Path:
    """A file path, or ``split:n`` naming a piece of the run's corpus (e.g. ``test:0``)."""
    path = Path(prompt)
    if path.exists():
        return path
    split, sep, index = prompt.partition(":")
    if sep and index.isdigit() and split in ("train", "validation", "test"):
        pieces = [p for p in pipeline.build_source(recipe).pieces() if p.split == split]
        if int(index) >= len(pieces):
            raise PianogenError(f"prompt {prompt}: the {split} split has {len(pieces)} pieces")
        return pieces[int(index)].path
    raise PianogenError(f"prompt not found: {prompt} (a path to an audio file, or e.g. test:0)")


def next_free_dir(parent: Path, stem: str) -> Path:
    """``parent/<stem>-001``, ``-002``, ...: the first that does not exist, so no earlier take is overwritten."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", stem).strip("._") or "take"
    n = 1
    while (parent / f"{safe}-{n:03d}").exists():
        n += 1
    return parent / f"{safe}-{n:03d}"


def sampling_temperature(request: GenerationRequest, onset_rates: list[float | None] | None = None
                         ) -> float | torch.Tensor:
    """The temperature ``request`` samples at after its prompt (``request.prompt_onset_rate``), or one per row
    (FloatTensor[B]) after each of several prompts' ``onset_rates`` (evaluation's batch of prompts)."""
    def after(rate: float | None) -> float:
        return scaled_temperature(request.temperature, request.quiet_temperature_scale, rate)

    if onset_rates is None:
        return after(request.prompt_onset_rate)
    return torch.tensor([after(rate) for rate in onset_rates])


def measure_prompt_end(request: GenerationRequest, source: Source, sample_rate: int) -> GenerationRequest:
    """``request`` with the prompt's onset rate and, for ``ring_out``, its bands' decay measured on its audio (at
    the codec's ``sample_rate``, where the continuation is faded), and a note saying what they changed."""
    import torchaudio

    audio = source.recording.samples[:, source.prompt_start:source.cut].float().mean(dim=0)
    audio = torchaudio.functional.resample(audio, source.recording.sample_rate, sample_rate)
    request = replace(request, prompt_onset_rate=recent_onset_rate(audio, sample_rate),
                      prompt_decay_db_per_s=band_decay_rates(audio, sample_rate) if request.ring_out else None)
    if request.prompt_onset_rate is not None:
        said = (f"the prompt's last seconds strike {request.prompt_onset_rate:.2f} notes a second: sampled at "
                f"temperature {sampling_temperature(request):.2f}")
        slopes = [quietness(request.prompt_onset_rate) * rate for rate in request.prompt_decay_db_per_s or []]
        if any(slopes):
            said += (f"; let ring out as the prompt's sound was dying ({abs(max(slopes)):.1f} to "
                     f"{abs(min(slopes)):.1f} dB a second by band)")
        source.notes.append(said)
    return request


def fader_for(request: GenerationRequest, sample_rate: int, rows: int) -> RingOut | None:
    """The ring-out fade of ``request``'s continuations, or None where it leaves them as they are."""
    if not request.ring_out:
        return None
    fader = RingOut(sample_rate, [request.prompt_decay_db_per_s] * rows, [request.prompt_onset_rate] * rows)
    return None if fader.idle else fader


def ring_out(audio: torch.Tensor, prompt_samples: int, sample_rate: int, request: GenerationRequest) -> torch.Tensor:
    """``audio`` FloatTensor[B, 1, S] (prompt + continuation, the continuation from ``prompt_samples`` on) with its
    continuation faded as ``request.ring_out`` asks (ring_out.py)."""
    fader = fader_for(request, sample_rate, audio.shape[0])
    if fader is None:
        return audio
    faded = fader.whole(audio[:, 0, prompt_samples:].cpu())
    return torch.cat([audio[..., :prompt_samples], faded[:, None].to(audio.device, audio.dtype)], dim=-1)


def continue_codes(model: torch.nn.Module, prompt_codes: torch.Tensor, n_frames: int, request: GenerationRequest,
                   progress: bool = True, on_frame: Callable[[int], None] | None = None,
                   onset_rates: list[float | None] | None = None) -> torch.Tensor:
    """prompt_codes LongTensor[B, K, T0] -> LongTensor[B, K, n_frames], with a rich progress bar;
    ``on_frame(frames_done)`` is told too (the web page's progress). ``onset_rates``: each row's prompt's
    (``sampling_temperature``); default the request's one prompt."""
    sample = make_sampler(sampling_temperature(request, onset_rates), request.top_k, request.top_p, request.seed,
                          prompt=prompt_codes, prompt_prior=request.prompt_prior)

    with progress_bar(progress) as bar:
        task = bar.add_task("sampling", total=n_frames)

        def frame_done(i: int) -> None:
            bar.update(task, completed=i + 1)
            if on_frame is not None:
                on_frame(i + 1)

        with torch.inference_mode():
            return model.generate(prompt_codes, n_frames, sample, use_cache=request.use_cache,
                                  on_frame=frame_done, compile=request.compile)


def _clock(device: torch.device) -> float:
    """perf_counter once the device's queued work is done: CUDA kernels run asynchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class Source:
    """What is continued: the recording the takes start with and the prompt codes taken from it."""

    recording: Recording  # the pianist's file (or the take being extended), as it is on disk
    cut: int  # samples of it kept before the continuation (the prompt's end)
    prompt_start: int  # where the prompt begins in it: the loudness reference is [prompt_start, cut)
    prompt_codes: torch.Tensor  # LongTensor[1, K, T0]
    history: torch.Tensor  # LongTensor[K, H]: codes saved before the continuation's (ends with the prompt's)
    window_s: tuple[float, float]  # the prompt window in seconds of the recording
    notes: list[str]


def source_from_recording(original: Recording, request: GenerationRequest, codec: Any, levels: int,
                          device: torch.device) -> Source:
    """The prompt window of a recording (read from a file, or given in memory), trimmed at its start to whole
    codec frames, encoded."""
    import torchaudio

    start_s, end_s, notes = prompt_window(original.seconds, request.prompt_seconds, request.start, request.end)
    rate = original.sample_rate
    cut, first = round(end_s * rate), math.floor(start_s * rate)
    mono = original.samples[:, first:cut].mean(dim=0).float()
    wav = torchaudio.functional.resample(mono, rate, codec.sample_rate) if rate != codec.sample_rate else mono
    frames = wav.shape[-1] // codec.hop_length
    if frames < 1:
        raise PianogenError(f"the prompt window [{start_s:.3f}, {end_s:.3f}] s is shorter than one codec frame "
                            f"({1 / codec.frame_rate * 1000:.1f} ms)")
    wav = wav[wav.shape[-1] - frames * codec.hop_length:]  # whole frames, ending exactly at the window's end
    with torch.inference_mode():
        codes = codec.encode(wav[None, None].to(device))[:, :levels]
    prompt_start = cut - round(frames * codec.hop_length * rate / codec.sample_rate)
    return Source(original, cut, max(0, prompt_start), codes, codes[0].cpu(),
                  (max(0, prompt_start) / rate, cut / rate), notes)


def source_from_take(take: Path, request: GenerationRequest, codec: Any, levels: int,
                     device: torch.device) -> Source:
    """A take this module wrote, continued from its end with its saved codes (no re-encoding)."""
    history = load_take_codes(codes_path_for(take), codec, levels)
    recording = read_recording(take)
    frames = min(history.shape[-1], max(1, round(request.prompt_seconds * codec.frame_rate)))
    notes = []
    if frames < round(request.prompt_seconds * codec.frame_rate):
        notes.append(f"the take's codes hold {frames / codec.frame_rate:.2f} s, shorter than the "
                     f"{request.prompt_seconds} s prompt asked: using all of them")
    cut = recording.samples.shape[-1]
    prompt_start = max(0, cut - round(frames * codec.hop_length * recording.sample_rate / codec.sample_rate))
    prompt_codes = history[:, -frames:][None].to(device)
    rate = recording.sample_rate
    return Source(recording, cut, prompt_start, prompt_codes, history, (prompt_start / rate, cut / rate), notes)


def open_source(recipe: Any, request: GenerationRequest, codec: Any, device: torch.device,
                recording: Recording | None = None) -> tuple[Path | None, Source]:
    """What ``request`` continues: ``recording`` (audio given in memory: no path), a take from its saved codes
    (--extend) or a recording's prompt window; refused first when an output in ``request.out`` would
    overwrite it."""
    out, levels = Path(request.out), recipe.codec.levels
    if recording is not None:
        return None, source_from_recording(recording, request, codec, levels, device)
    if request.extend:
        take = Path(request.extend)
        refuse_overwriting_inputs(out, request.num, [take, codes_path_for(take)])
        return take, source_from_take(take, request, codec, levels, device)
    recording = resolve_prompt(recipe, request.prompt)
    refuse_overwriting_inputs(out, request.num, [recording])
    return recording, source_from_recording(read_recording(recording), request, codec, levels, device)


def decode_codes(codec: Any, codes: torch.Tensor, filters: list[Any]) -> torch.Tensor:
    """codes LongTensor[B, K, T] -> post-filtered audio FloatTensor[B, 1, T * hop] at the codec's rate."""
    with torch.inference_mode():
        audio = codec.decode(codes).float()
        for post in filters:
            audio = post(audio, codec.sample_rate)
    return audio


def refuse_overwriting_inputs(out: Path, num: int, inputs: list[Path]) -> None:
    """Nothing the user gave is lost: no output file may be one of the inputs."""
    names = [f"{kind}_{i}.{ext}" for i in range(num) for kind, ext in
             (("take", "wav"), ("full", "wav"), ("continuation", "wav"), ("mel", "png"), ("codes", "safetensors"))]
    taken = {p.resolve() for p in inputs}
    for name in [*names, "generation.json"]:
        if (out / name).resolve() in taken:
            raise PianogenError(f"--out {out} would overwrite {out / name}, which is being continued; "
                                f"choose another --out")


def load_generation_run(run_dir: str | Path, request: GenerationRequest, device: torch.device
                        ) -> tuple[Any, Any, torch.nn.Module, dict[str, Any]]:
    """(recipe, codec, token model in the request's precision, checkpoint meta) of a trained run."""
    recipe, codec, model, meta = pipeline.load_run(run_dir, request.checkpoint, device)
    return recipe, codec, in_precision(model, request.precision), meta


def generate(run_dir: str | Path, request: GenerationRequest, device: str = "auto", progress: bool = True,
             listener: Listener | None = None, loader: Callable[..., tuple] = load_generation_run,
             sink: "Sink | None" = None, recording: Recording | None = None) -> dict[str, Any]:
    """The one pipeline: load the run, open the prompt, sample, decode, post-filter, hand the audio to ``sink``
    (default ``FileSink``: the takes, continuations, re-syntheses, codes, Mel PNGs and generation.json in
    ``request.out``, staged and moved in whole); return the report.

    ``run_dir``: a run folder or a built-in run's name (``pianogen.runs``; a built-in run is never written
    into). ``recording``: audio given in memory, continued instead of ``request.prompt``. ``loader`` (default
    ``load_generation_run``) loads the run: ``pianogen serve`` and ``continue_audio`` pass one that keeps
    loaded runs. ``listener(stage, done, total)`` hears the stages."""
    from pianogen.generation.sinks import FileSink, Generated
    from pianogen.runs import refuse_writing_into, resolve_run

    sink = sink or FileSink()
    check_request(request)
    run = resolve_run(run_dir)
    if sink.writes_files:
        refuse_writing_into(run, Path(request.out))
    tell = listener or (lambda stage, done, total: None)
    torch_device = pick_device(device)
    recipe, codec, model, meta = loader(run.path, request, torch_device)
    levels = recipe.codec.levels
    filter_specs, filters = postfilters_for(recipe, request)

    start = _clock(torch_device)
    tell("encode", 0, 1)
    prompt_path, source = open_source(recipe, request, codec, torch_device, recording)
    if request.quiet_temperature_scale != 1.0 or request.ring_out:  # what the prompt's end says (prompt_end.py)
        request = measure_prompt_end(request, source, codec.sample_rate)
    prompt_codes = source.prompt_codes.expand(request.num, -1, -1).contiguous()
    n_frames = max(1, round(request.seconds * codec.frame_rate))
    encoded = _clock(torch_device)

    def produce(folder: Path | None) -> dict[str, Any]:
        sink.begin(folder, request.num, codec.sample_rate)
        notes, streamed = list(source.notes), None
        try:
            if sink.streams:  # the sink draws the codes itself, handing out their audio as it comes
                new_codes, streamed, said = sink.sample(model, codec, prompt_codes, n_frames, request, filters,
                                                        filter_specs, progress, tell, start)
                notes += said
            else:
                new_codes = continue_codes(model, prompt_codes, n_frames, request, progress,
                                           on_frame=lambda done: tell("sample", done, n_frames))
        finally:
            sink.close()
        sampled = _clock(torch_device)
        tell("decode", 0, 1)
        audio = decode_codes(codec, torch.cat([prompt_codes, new_codes], dim=-1), filters)
        audio = ring_out(audio, prompt_codes.shape[-1] * codec.hop_length, codec.sample_rate, request)
        decoded = _clock(torch_device)
        heard = hear_notes(audio, prompt_codes.shape[-1] * codec.hop_length, codec.sample_rate) \
            if sink.hears_notes else None
        files, takes = sink.finish(folder, Generated(request, source, prompt_path, codec, levels,
                                                     prompt_codes.shape[-1], new_codes, audio), tell)
        report = generation_report(run, request, source, prompt_path, codec, meta, filter_specs, files, takes,
                                   frames=n_frames, prompt_frames=prompt_codes.shape[-1], device=torch_device,
                                   timings={"encode": encoded - start, "sample": sampled - encoded,
                                            "decode": decoded - sampled, "write": _clock(torch_device) - decoded},
                                   notes=notes, stream=streamed, note_metrics=heard)
        if folder is not None:
            files.append("generation.json")
            with writing(folder / "generation.json") as path:
                atomic_write_bytes(path, json.dumps(report, indent=2).encode())
        return report

    report = staged(Path(request.out), produce) if sink.writes_files else produce(None)
    tell("write", request.num, request.num)
    return report


def hear_notes(audio: torch.Tensor, prompt_samples: int, sample_rate: int,
               transcriber: str = "basic_pitch") -> dict[str, Any]:
    """generation.json's ``note_metrics``: each take (audio FloatTensor[N, 1, S], the codec's rendering of prompt
    + continuation) as the transcriber hears it — notes/s, distinct pitches, pitch-class correlation and key
    agreement with the prompt — beside the `drone` floor on the same prompt; {"unavailable": why} when the
    transcriber cannot load (the generation itself stands)."""
    from pianogen.evaluation.notes import load_transcriber, notes_summary

    hearing, unavailable = load_transcriber(transcriber)
    if hearing is None:
        return {"unavailable": unavailable}
    try:
        return {"takes": [notes_summary(take[0, :prompt_samples], take[0, prompt_samples:], sample_rate, hearing)
                          for take in audio.float().cpu()]}
    except PianogenError as err:  # a transcriber that cannot hear this audio: the generation itself stands
        return {"unavailable": str(err)}


def continuation_is(codec_rate: int, take_rate: int, take_channels: int) -> str:
    """What the continuation in a take is, said plainly (the codec is mono and band-limited; the take is not)."""
    spread = "the same in every channel" if take_channels > 1 else "mono"
    return (f"mono {codec_rate / 1000:g} kHz audio from the codec (nothing above {codec_rate / 2000:g} kHz), "
            f"resampled to the take's {take_rate / 1000:g} kHz, {spread}")


def generation_report(run: "RunRef", request: GenerationRequest, source: Source, prompt_path: Path | None,
                      codec: Any, meta: dict[str, Any], filter_specs: list[dict[str, Any]], files: list[str],
                      takes: list[dict[str, Any]], frames: int, prompt_frames: int, device: torch.device,
                      timings: dict[str, float], notes: list[str], stream: dict[str, Any] | None,
                      note_metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The report of every generation, whatever its sink (generation.json): what was continued, how, what was
    written and how fast. ``stream`` is None unless the audio was streamed; ``note_metrics`` None when the sink
    hears no notes; ``files`` and ``takes`` are empty for audio kept in memory."""
    seconds_out = frames / codec.frame_rate
    return {
        "run_dir": str(run.path), "builtin_run": run.name if run.builtin else None,
        "prompt_file": str(prompt_path) if prompt_path else None, "prompt_frames": prompt_frames,
        "prompt_window_s": list(source.window_s), "extends": str(prompt_path) if request.extend else None,
        "frames": frames, "sample_rate": codec.sample_rate, "checkpoint_step": meta["step"],
        "take_sample_rate": source.recording.sample_rate, "take_channels": source.recording.channels,
        "continuation_is": continuation_is(codec.sample_rate, source.recording.sample_rate,
                                           source.recording.channels),
        "take_subtype": source.recording.subtype,
        "settings": {k: v for k, v in asdict(request).items() if k != "out"},
        "postfilters": filter_specs, "notes": notes, "files": files, "takes": takes,
        "device": str(device), "timings_s": timings,
        "frames_per_s": frames * request.num / max(timings["sample"], 1e-9),
        "realtime_factor": seconds_out * request.num / max(timings["sample"] + timings["decode"], 1e-9),
        "stream": stream, "note_metrics": note_metrics,
    }
