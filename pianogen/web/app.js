"use strict";
// pianogen serve's page: choose a take (upload, record or an example), pick the prompt on its waveform,
// continue it; every generation joins a history that later ones (extensions too) never erase.
const $ = (id) => document.getElementById(id);
const FIELDS = ["from", "to", "prompt_seconds", "seconds", "temperature", "top_k", "top_p", "prompt_prior",
  "quiet_temperature_scale", "ring_out", "num", "seed"];
let chosen = null;  // {blob, name}
let runs = [];
let limits = null;
let current = null;  // the id of the job this page waits for
const numbers = new Map();  // job id -> its number in the history (#1, #2, ...)
// the server's token, written into this page when it was served: every POST carries it (another site cannot read it)
const TOKEN = document.querySelector('meta[name="pianogen-token"]').content;
const post = (url, body) => fetch(url, {method: "POST", body: body || "", headers: {"X-Pianogen-Token": TOKEN}});
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function showError(message) { $("error").textContent = message || ""; }

// ---- the run, its defaults, the command line's limits, the examples ----

function applyDefaults() {
  const run = runs.find((r) => r.name === $("run").value);
  if (!run) return;
  for (const [key, value] of Object.entries(run.defaults)) $(key).value = value;
  drawWave();
}

function showLimits(l) {  // the same limits as the command line (the server checks them again)
  $("num").max = l.max_num;
  for (const key of ["seconds", "prompt_seconds"]) $(key).max = l.max_seconds;
  $("temperature").max = l.max_temperature;
  $("quiet_temperature_scale").max = l.max_temperature;
  $("prompt_prior").max = l.max_prompt_prior;
  $("seed").max = l.max_seed_text;
  const minutes = (bytesPerSecond) => Math.floor(l.max_upload_mib * 2 ** 20 / bytesPerSecond / 60);
  $("limits").textContent = `Takes: 1 to ${l.max_num} at a time. Prompt and continuation: up to ${l.max_seconds} s ` +
    `each. Seed: any whole number from 0 to ${l.max_seed_text}; the same seed and settings give the same takes. ` +
    `Your take: up to ${l.max_upload_mib} MiB (about ${minutes(288000)} minutes of 48 kHz 24-bit stereo WAV, ` +
    `${minutes(176400)} of CD audio). Up to ${l.max_queued} generations wait in line.`;
}

function showExamples(examples) {
  for (const clip of examples.clips) {
    const button = document.createElement("button");
    Object.assign(button, {type: "button", className: "small example", textContent: `${clip.title} · ${clip.seconds} s`});
    button.dataset.file = clip.file;
    button.addEventListener("click", async () => {
      showError("");
      const answer = await fetch(clip.url);
      if (!answer.ok) { showError(`Cannot load the example: HTTP ${answer.status}`); return; }
      choose(await answer.blob(), clip.file, clip.title);
    });
    $("examples").append(button);
  }
  $("examples-row").hidden = !examples.clips.length;
  $("examples-license").textContent = examples.clips.length ? `Examples: ${examples.license}.` : "";
}

async function loadRuns() {
  const answer = await (await fetch("/api/runs")).json();
  runs = answer.runs;
  limits = answer.limits;
  showLimits(limits);
  showExamples(answer.examples);
  for (const run of runs) $("run").add(new Option(run.name, run.name));
  $("run-row").hidden = runs.length < 2;
  applyDefaults();
  $("generate").disabled = false;  // only once the run's defaults are in the form
  const history = await (await fetch("/api/jobs")).json();  // what this server made before the page was (re)loaded
  for (const job of history.jobs) addGeneration(job);
}

// ---- choosing a take, and its waveform with the prompt window ----

let wave = null;  // {samples: Float32Array (mono, WAVE_RATE), duration}
const WAVE_RATE = 8000;  // enough to draw; keeps a long take's decoded copy small
const MAX_DRAWN_BYTES = 300 * 2 ** 20;
let choosing = 0;

async function choose(blob, name, title) {
  chosen = {blob, name};
  $("chosen").textContent = `Chosen: ${title || name} (${(blob.size / 1024).toFixed(0)} KiB)`;
  $("preview").src = URL.createObjectURL(blob);
  $("preview").hidden = false;
  for (const key of ["from", "to"]) $(key).value = "";
  showError("");
  wave = null;
  $("wave").hidden = true;
  $("wave-row").hidden = false;
  const mine = ++choosing;  // a take chosen while this one decodes wins
  if (blob.size > MAX_DRAWN_BYTES) { $("window").textContent = "This take is too long to draw here; type From and To."; return; }
  $("window").textContent = "Reading the take…";
  try {
    const buffer = await new OfflineAudioContext(1, 1, WAVE_RATE).decodeAudioData(await blob.arrayBuffer());
    if (mine !== choosing) return;
    const samples = new Float32Array(buffer.length);
    for (let c = 0; c < buffer.numberOfChannels; c++) {
      const channel = buffer.getChannelData(c);
      for (let i = 0; i < samples.length; i++) samples[i] += channel[i] / buffer.numberOfChannels;
    }
    wave = {samples, duration: buffer.duration};
    $("wave").hidden = false;
    $("wave").dataset.duration = buffer.duration.toFixed(4);
    drawWave();
  } catch (err) {
    if (mine === choosing) $("window").textContent = "This browser cannot draw this file's waveform (the server may still read it); type From and To.";
  }
}

function number(key) { const text = $(key).value.trim(); return text === "" ? null : Number(text); }

// The prompt window as the server will cut it: the same rules as pianogen.takes.prompt_window (the server's answer
// is what counts; the drawing shows it before you ask).
function promptWindow(duration, promptSeconds, start, end) {
  const absolute = (t) => (t < 0 ? duration + t : t);
  let lo, hi;
  if (start == null && end == null) { lo = duration - promptSeconds; hi = duration; }
  else if (start == null) { hi = absolute(end); lo = hi - promptSeconds; }
  else if (end == null) { lo = absolute(start); hi = Math.min(lo + promptSeconds, duration); }
  else { lo = absolute(start); hi = absolute(end); }
  if (!(hi <= duration + 1e-6 && lo < hi && hi > 0)) return null;
  return [Math.max(0, lo), Math.min(hi, duration)];
}

function drawWave() {
  const canvas = $("wave");
  if (!wave) return;
  const width = canvas.width = Math.max(1, Math.round(canvas.clientWidth * devicePixelRatio));
  const height = canvas.height = Math.round(canvas.clientHeight * devicePixelRatio);
  const g = canvas.getContext("2d");
  const x = (t) => (t / wave.duration) * width;
  const window_ = promptWindow(wave.duration, number("prompt_seconds") || 0, number("from"), number("to"));
  g.clearRect(0, 0, width, height);
  if (window_) {
    g.fillStyle = "#dbe6ff";
    g.fillRect(x(window_[0]), 0, x(window_[1]) - x(window_[0]), height);
  }
  g.fillStyle = "#555";
  const perColumn = wave.samples.length / width;
  for (let column = 0; column < width; column++) {
    let low = 0, high = 0;
    for (let i = Math.floor(column * perColumn); i < Math.floor((column + 1) * perColumn); i++) {
      low = Math.min(low, wave.samples[i]); high = Math.max(high, wave.samples[i]);
    }
    g.fillRect(column, (1 - high) * height / 2, 1, Math.max(1, (high - low) * height / 2));
  }
  if (!window_) {
    canvas.dataset.from = canvas.dataset.to = "";
    $("window").textContent = `That prompt is not inside your ${wave.duration.toFixed(2)} s take.`;
    return;
  }
  g.fillStyle = "rgba(255, 255, 255, 0.65)";  // what the continuation replaces
  g.fillRect(x(window_[1]), 0, width - x(window_[1]), height);
  g.fillStyle = "#1d4ed8";
  g.fillRect(x(window_[1]) - devicePixelRatio, 0, 2 * devicePixelRatio, height);
  canvas.dataset.from = window_[0].toFixed(4);
  canvas.dataset.to = window_[1].toFixed(4);
  const replaced = wave.duration - window_[1] > 0.005 ? `; what you played after ${window_[1].toFixed(2)} s is replaced` : "";
  $("window").textContent = `Prompt: ${window_[0].toFixed(2)}–${window_[1].toFixed(2)} s ` +
    `(${(window_[1] - window_[0]).toFixed(2)} s); the model continues from ${window_[1].toFixed(2)} s${replaced}.`;
}

let drag = null;  // {x, t}
const timeAt = (event) => {
  const box = $("wave").getBoundingClientRect();
  return Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) * wave.duration;
};
const seconds = (t) => (Math.floor(t * 100) / 100).toString();  // rounded down: never past the take's end

$("wave").addEventListener("pointerdown", (event) => {
  if (!wave) return;
  $("wave").setPointerCapture(event.pointerId);
  drag = {x: event.clientX, t: timeAt(event)};
});
$("wave").addEventListener("pointermove", (event) => {
  if (!drag || Math.abs(event.clientX - drag.x) < 4) return;
  const [lo, hi] = [drag.t, timeAt(event)].sort((a, b) => a - b);
  $("from").value = seconds(lo);
  $("to").value = seconds(hi);
  $("prompt_seconds").value = seconds(hi - lo);
  drawWave();
});
$("wave").addEventListener("pointerup", (event) => {
  if (drag && Math.abs(event.clientX - drag.x) < 4) {  // a click: continue from here, the prompt length before it
    $("from").value = "";
    $("to").value = seconds(drag.t);
    drawWave();
  }
  drag = null;
});
$("whole").addEventListener("click", () => { $("from").value = ""; $("to").value = ""; drawWave(); });
for (const key of ["from", "to", "prompt_seconds"]) $(key).addEventListener("input", drawWave);
addEventListener("resize", drawWave);

$("run").addEventListener("change", applyDefaults);
$("file").addEventListener("change", () => { const f = $("file").files[0]; if (f) choose(f, f.name); });
$("dice").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 2 ** 31); });

// ---- recording: raw PCM from Web Audio, written as a WAV here, because MediaRecorder's WebM/Opus is not a
// format the server's soundfile reads, and a pianist's take should not pass through a lossy codec ----

let recorder = null;
$("record").addEventListener("click", async () => {
  showError("");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    const context = new AudioContext();
    const input = context.createMediaStreamSource(stream);
    const channels = Math.min(2, input.channelCount || 1);
    const node = context.createScriptProcessor(4096, channels, channels);
    const chunks = [];
    node.onaudioprocess = (e) => {
      const frame = [];
      for (let c = 0; c < channels; c++) frame.push(new Float32Array(e.inputBuffer.getChannelData(c)));
      chunks.push(frame);
    };
    input.connect(node);
    node.connect(context.destination);
    recorder = {stream, context, node, chunks, channels};
    $("record").disabled = true; $("stop").disabled = false;
    $("chosen").textContent = "Recording…";
  } catch (err) {
    showError(`Cannot record: ${err.message}`);
  }
});

$("stop").addEventListener("click", async () => {
  if (!recorder) return;
  const {stream, context, node, chunks, channels} = recorder;
  recorder = null;
  node.disconnect(); stream.getTracks().forEach((t) => t.stop());
  await context.close();
  $("record").disabled = false; $("stop").disabled = true;
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  choose(encodeWav(chunks, channels, context.sampleRate), `recording-${stamp}.wav`);
});

function encodeWav(chunks, channels, rate) {
  const frames = chunks.reduce((n, c) => n + c[0].length, 0);
  const buffer = new ArrayBuffer(44 + frames * channels * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + frames * channels * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, channels, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * channels * 2, true);
  view.setUint16(32, channels * 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, frames * channels * 2, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk[0].length; i++) {
      for (let c = 0; c < channels; c++) {
        const s = Math.max(-1, Math.min(1, chunk[c][i]));
        view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
        offset += 2;
      }
    }
  }
  return new Blob([buffer], {type: "audio/wav"});
}

function describe(job) {
  if (job.state === "queued") return job.ahead ? `Queued: ${job.ahead} generation(s) ahead of yours.` : "Starting…";
  if (job.stage === "sample") {
    const eta = job.eta_s == null ? "" : `, about ${Math.ceil(job.eta_s)} s left`;
    return `Sampling frame ${job.done} of ${job.total}${eta}.`;
  }
  return {"loading the model": "Loading the model…", encode: "Encoding your prompt…",
          decode: "Decoding the continuations…", write: "Splicing and writing the takes…"}[job.stage] || job.stage;
}

// ---- streaming: the server keeps take 0's continuation as small WAV chunks while sampling goes on; each is
// decoded and scheduled right after the one before, so they play as one gapless stretch of audio ----

let live = null;  // {context, next, fetched, seconds, whileRunning}

function startLive() {  // called from the click itself: browsers let a page start audio only on a gesture
  stopLive();
  live = {context: new AudioContext(), next: 0, fetched: 0, seconds: 0, whileRunning: 0};
  Object.assign($("live").dataset, {chunks: 0, seconds: 0, whileRunning: 0});
  $("live").textContent = "";
}

function stopLive() {
  if (live) live.context.close();
  live = null;
}

async function playNewChunks(job) {
  const player = live;  // a new generation or a played take may stop it while a chunk is on its way
  if (!player || !job.stream) return;
  while (player === live && player.fetched < job.stream.chunks) {
    const answer = await fetch(`/api/jobs/${job.id}/chunks/${player.fetched}`);
    if (!answer.ok || player !== live) return;
    const buffer = await player.context.decodeAudioData(await answer.arrayBuffer());
    if (player !== live) return;
    const source = player.context.createBufferSource();
    source.buffer = buffer;
    source.connect(player.context.destination);
    const at = Math.max(player.context.currentTime + 0.05, player.next);
    source.start(at);
    player.next = at + buffer.duration;
    player.seconds += buffer.duration;
    player.fetched++;
    if (job.state === "running") player.whileRunning++;
    Object.assign($("live").dataset, {chunks: player.fetched, seconds: player.seconds.toFixed(4),
                                      whileRunning: player.whileRunning});
    $("live").textContent = `Playing take 0 as it is made: ${player.seconds.toFixed(1)} s so far.`;
  }
}

async function poll(id) {
  for (;;) {
    const job = await (await fetch(`/api/jobs/${id}`)).json();
    $("status").textContent = describe(job);
    $("progress").value = job.stage === "sample" && job.total ? job.done / job.total : 0;
    await playNewChunks(job);
    if (job.state === "done") return job;
    if (job.state === "error") throw new Error(job.error);
    if (job.state === "cancelled") throw new Error("Stopped.");
    await new Promise((r) => setTimeout(r, job.stream ? 100 : 400));
  }
}

// ---- the history: one section per generation, newest first ----

function addGeneration(job) {
  const n = numbers.size + 1;
  numbers.set(job.id, n);
  const section = document.createElement("section");
  section.className = "generation";
  section.dataset.job = job.id;
  const [start, end] = job.prompt_window_s;
  const parent = job.extends && numbers.get(job.source.split("/")[0]);
  const s = job.settings;
  const title = job.extends ? `#${n} · ${job.extends}${parent ? ` of #${parent}` : ""}, extended` : `#${n} · ${job.source}`;
  const what = job.extends ? `Extending ${job.extends}: prompt` : "Prompt:";
  section.innerHTML = `<h3>${esc(title)}</h3>
    <p class="summary">${esc(`${what} ${start.toFixed(2)}–${end.toFixed(2)} s of your take. ` + (job.notes || []).join(" "))}</p>
    <div class="settings">${esc(`Continuation length ${s.seconds} s · prompt length ${s.prompt_seconds} s · ` +
      `${s.num} take${s.num === 1 ? "" : "s"} · seed ${s.seed} · temperature ${s.temperature} · top-k ${s.top_k} · top-p ${s.top_p} · keep to the prompt ${s.prompt_prior} · calm after a held sound ${s.quiet_temperature_scale} · ring out ${s.ring_out ? "yes" : "no"}`)}</div>
    <p class="is">${esc(`The continuation is ${job.continuation_is}.`)}</p>`;
  job.takes.forEach((take, i) => {
    const card = document.createElement("div");
    card.className = "take";
    const gain = take.gain_db == null ? "" : `, continuation ${take.gain_db >= 0 ? "+" : ""}${take.gain_db.toFixed(1)} dB to match your loudness`;
    card.innerHTML = `<h4>Take ${i} <span class="hint">(${take.seconds.toFixed(1)} s${gain})</span></h4>
      <audio class="take-audio" controls preload="auto" src="${esc(take.take)}"></audio>
      <div><a class="download" href="${esc(take.take)}" download="${esc(`${job.name}_take_${i}.wav`)}">Download take ${i}</a> ·
        <button class="extend" type="button" data-take="${esc(`${job.id}/take_${i}.wav`)}">Extend this take</button></div>
      <details class="compare-box"><summary>Compare</summary><div class="compare">
        <div>Continuation alone (codec rate)<audio controls preload="none" src="${esc(take.continuation)}"></audio></div>
        <div>Codec re-synthesis of prompt + continuation<audio controls preload="none" src="${esc(take.resynthesis)}"></audio></div>
      </div></details>
      <img class="mel" alt="Mel spectrogram of take ${i}, the dashed line where your prompt ends" src="${esc(take.mel)}">
      <details class="advanced"><summary>Advanced</summary>
        <a class="codes" href="${esc(take.codes)}" download="${esc(`${job.name}_codes_${i}.safetensors`)}">codes</a>
        <span class="hint">(the take's tokens, for extending it later or elsewhere)</span> ·
        <a class="report" href="${esc(job.report)}" download="${esc(`${job.name}_generation.json`)}">generation.json</a>
        <span class="hint">(every setting and measurement)</span>
      </details>`;
    section.append(card);
  });
  for (const audio of section.querySelectorAll("audio")) audio.addEventListener("play", stopLive);
  for (const button of section.querySelectorAll("button.extend")) {
    button.disabled = current !== null;
    button.addEventListener("click", () => {
      const params = new URLSearchParams({extend: button.dataset.take});
      if ($("stream").checked) { params.set("stream", "1"); startLive(); } else stopLive();
      for (const key of FIELDS) if (!["from", "to"].includes(key) && $(key).value.trim() !== "") params.set(key, $(key).value.trim());
      launch(params, null);
    });
  }
  $("takes").prepend(section);
  $("history-title").hidden = false;
}

async function launch(params, body) {
  showError("");
  current = "";
  for (const button of document.querySelectorAll("#generate, button.extend")) button.disabled = true;
  $("progress").hidden = false;
  $("status").textContent = body ? "Uploading…" : "Starting…";
  try {
    const answer = await post(`/api/jobs?${params}`, body);
    const job = await answer.json();
    if (!answer.ok) throw new Error(job.error);
    current = job.id;
    $("cancel").hidden = false;
    addGeneration(await poll(job.id));
    $("status").textContent = "Done.";
    if (live && live.seconds) $("live").textContent = `Take 0 was streamed as it was made (${live.seconds.toFixed(1)} s).`;
  } catch (err) {
    showError(err.message);
    $("status").textContent = "";
  } finally {
    current = null;
    $("cancel").hidden = true;
    for (const button of document.querySelectorAll("#generate, button.extend")) button.disabled = false;
    $("progress").hidden = true;
  }
}

$("generate").addEventListener("click", () => {
  showError("");
  if (!chosen) { showError("Choose, record or pick an example take first."); return; }
  if (limits && chosen.blob.size > limits.max_upload_mib * 2 ** 20) {  // the server's words for the same refusal
    showError(`the upload is ${(chosen.blob.size / 2 ** 20).toFixed(0)} MiB; at most ${limits.max_upload_mib} MiB are accepted`);
    return;
  }
  const params = new URLSearchParams({run: $("run").value, filename: chosen.name});
  for (const key of FIELDS) if ($(key).value.trim() !== "") params.set(key, $(key).value.trim());
  if ($("stream").checked) { params.set("stream", "1"); startLive(); } else stopLive();
  launch(params, chosen.blob);
});

$("cancel").addEventListener("click", async () => {  // a queued job is dropped, a running one stops at its next frame
  if (!current) return;
  stopLive();
  const answer = await post(`/api/jobs/${current}/cancel`);
  if (!answer.ok) showError((await answer.json()).error);
});

loadRuns().catch((err) => showError(`Cannot reach the server: ${err.message}`));
