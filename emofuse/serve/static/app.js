// The emofuse page: upload or record a clip, add a transcript, show the probabilities
// (for a speech + text model also what the voice alone and the words alone say); a
// recording longer than one clip goes to POST /timeline and is shown as an emotion
// timeline (bands over time, height = confidence) with its summary.
// Recording captures raw PCM with the Web Audio API and encodes a 16 kHz 16-bit WAV here,
// because the server's decoder (libsndfile) does not read MediaRecorder's webm/opus.
// An API token, if the server wants one, is asked for once (static/token.js: kept in this
// page's memory only, sent as "Authorization: Bearer" by api()).
"use strict";

const TARGET_RATE_HZ = 16000;
//: In "automatic" mode, audio longer than this (or than the server's clip limit, if that is
//: shorter) is sent to /timeline instead of /predict.
const AUTO_TIMELINE_S = 30;
//: Longest microphone recording when a timeline may be made of it (memory stays < ~120 MB).
const MAX_TIMELINE_RECORD_S = 600;
const $ = (id) => document.getElementById(id);

const state = {
  model: null,        // /health answer: labels, modality, needs_text, asr, limits
  colours: null,      // {label: "#rrggbb"} from GET /labels (the server's palette)
  recording: null,    // {blob, seconds} of the last recording
  recorder: null,     // live capture while recording
  source: null,       // "file" | "recording": which clip to send
  durations: new WeakMap(),  // File -> seconds (NaN when the browser cannot tell)
};

// ---------------------------------------------------------------- token

function askForToken(message) {
  state.model = null;
  $("model-info").textContent = "This server needs an API token.";
  showTokenForm();
  if (message) showError(message);
}

async function useToken(event) {
  hideError();
  if (!takeTypedToken(event)) return;
  try {
    const check = await api("/labels");
    if (check.status === 401) {
      askForToken("That token was not accepted: check it and try again.");
      return;
    }
  } catch (err) {
    showError(`Could not reach the server: ${err.message}`);
    return;
  }
  $("token-form").hidden = true;
  await loadModel();
}

// ---------------------------------------------------------------- model info

async function loadModel() {
  try {
    const response = await api("/health");
    if (!response.ok) throw new Error(await errorText(response));
    const model = await response.json();
    if (!model.labels) {  // the minimal answer: the server wants a token first
      askForToken();
      return;
    }
    state.model = model;
    const labels = await api("/labels");
    if (labels.ok) state.colours = (await labels.json()).colours || null;
    const parts = [`Model: ${model.modality}`, `labels: ${model.labels.join(", ")}`];
    if (model.asr) parts.push("server transcribes audio without a transcript");
    $("model-info").textContent = parts.join(" · ");
    $("mode-auto-hint").textContent = `(a timeline for audio over ${timelineThresholdS()} s)`;
    $("asr-row").hidden = !model.asr;
    $("speaker-box").hidden = !model.adapts_to_speakers;
    $("timeline-asr").checked = Boolean(model.asr && model.needs_text);
    if (!model.asr) {
      $("transcript").placeholder = model.modality === "speech"
        ? "What is said in the clip (this model does not use it)"
        : "What is said in the clip";
    }
    if (model.needs_text && !model.asr) {
      $("text-hint").textContent = "(required by this model)";
    } else if (model.modality === "speech") {
      $("text-hint").textContent = "(not used by this speech-only model)";
    }
  } catch (err) {
    showError(`Could not reach the server: ${err.message}`);
  }
}

// ---------------------------------------------------------------- recording

function encodeWav(samples, rateHz) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const writeString = (offset, text) => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  writeString(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  writeString(8, "WAVE");
  writeString(12, "fmt ");
  view.setUint32(16, 16, true);       // fmt chunk size
  view.setUint16(20, 1, true);        // PCM
  view.setUint16(22, 1, true);        // mono
  view.setUint32(24, rateHz, true);
  view.setUint32(28, rateHz * 2, true);
  view.setUint16(32, 2, true);        // block align
  view.setUint16(34, 16, true);       // bits per sample
  writeString(36, "data");
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view], { type: "audio/wav" });
}

// Average each output sample's window of input samples (a crude low-pass, enough for speech).
function downsample(samples, fromHz, toHz) {
  if (fromHz === toHz) return samples;
  const ratio = fromHz / toHz;
  const out = new Float32Array(Math.floor(samples.length / ratio));
  for (let i = 0; i < out.length; i++) {
    const start = Math.floor(i * ratio);
    const end = Math.min(samples.length, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = start; j < end; j++) sum += samples[j];
    out[i] = end > start ? sum / (end - start) : 0;
  }
  return out;
}

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser cannot record here (a microphone needs https or localhost)");
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const context = new (window.AudioContext || window.webkitAudioContext)();
  const input = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  processor.onaudioprocess = (event) => {
    chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
  };
  input.connect(processor);
  processor.connect(context.destination);
  const clipMax = state.model ? state.model.max_audio_s : 60;
  const maxSeconds = currentMode() === "clip" ? clipMax : Math.max(clipMax, MAX_TIMELINE_RECORD_S);
  const started = performance.now();
  const timer = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    $("record-status").textContent = `recording… ${seconds.toFixed(1)} s`;
    if (seconds >= maxSeconds - 0.5) stopRecording();
  }, 200);
  state.recorder = { stream, context, input, processor, chunks, timer };
}

async function stopRecording() {
  const rec = state.recorder;
  if (!rec) return;
  state.recorder = null;
  clearInterval(rec.timer);
  rec.processor.disconnect();
  rec.input.disconnect();
  rec.stream.getTracks().forEach((track) => track.stop());
  const rateHz = rec.context.sampleRate;
  await rec.context.close();
  const length = rec.chunks.reduce((n, c) => n + c.length, 0);
  const samples = new Float32Array(length);
  let offset = 0;
  for (const chunk of rec.chunks) {
    samples.set(chunk, offset);
    offset += chunk.length;
  }
  const pcm = downsample(samples, rateHz, TARGET_RATE_HZ);
  const seconds = pcm.length / TARGET_RATE_HZ;
  state.recording = { blob: encodeWav(pcm, TARGET_RATE_HZ), seconds };
  state.source = "recording";
  const preview = $("preview");
  preview.src = URL.createObjectURL(state.recording.blob);
  preview.hidden = false;
  $("record-btn").textContent = "● Record";
  $("record-btn").classList.remove("recording");
  $("record-status").textContent = `recorded ${seconds.toFixed(1)} s`;
  showChoice();
}

async function toggleRecording() {
  hideError();
  try {
    if (state.recorder) {
      await stopRecording();
    } else {
      await startRecording();
      $("record-btn").textContent = "■ Stop";
      $("record-btn").classList.add("recording");
    }
  } catch (err) {
    showError(`Recording failed: ${err.message}`);
  }
}

// ---------------------------------------------------------------- submit

function currentMode() {
  const checked = document.querySelector('input[name="mode"]:checked');
  return checked ? checked.value : "auto";
}

// Audio longer than this goes to /timeline in automatic mode.
function timelineThresholdS() {
  const clipMax = state.model ? state.model.max_audio_s : AUTO_TIMELINE_S;
  return Math.min(AUTO_TIMELINE_S, clipMax);
}

function showChoice() {
  const file = $("audio-file").files[0];
  let text = "";
  if (state.source === "recording" && state.recording) {
    text = `Will send: your recording (${state.recording.seconds.toFixed(1)} s)`;
  } else if (file) {
    text = `Will send: ${file.name} (${(file.size / 1024).toFixed(0)} KB)`;
    const seconds = state.durations.get(file);
    if (Number.isFinite(seconds)) text = text.replace(/\)$/, `, ${formatTime(seconds)})`);
  }
  $("audio-choice").textContent = text;
}

function currentClip() {
  if (state.source === "recording" && state.recording) {
    return { blob: state.recording.blob, name: "recording.wav", seconds: state.recording.seconds };
  }
  const file = $("audio-file").files[0];
  return file ? { blob: file, name: file.name, seconds: state.durations.get(file) } : null;
}

// The length of an audio file as the browser reads it (NaN if it cannot, e.g. a format it
// does not play): from the file's metadata only, the audio is not decoded.
function audioSeconds(blob) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(blob);
    const probe = new Audio();
    const done = (seconds) => {
      clearTimeout(timer);
      probe.removeAttribute("src");
      URL.revokeObjectURL(url);
      resolve(seconds);
    };
    const timer = setTimeout(() => done(NaN), 5000);
    probe.preload = "metadata";
    probe.addEventListener("loadedmetadata", () => done(probe.duration), { once: true });
    probe.addEventListener("error", () => done(NaN), { once: true });
    probe.src = url;
  });
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return `${body.detail} (HTTP ${response.status})`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${response.status} ${response.statusText}`;
}

// Which route the audio goes to: "predict" or "timeline".
async function chooseRoute(clip) {
  const mode = currentMode();
  if (!clip || mode === "clip") return "predict";
  if (mode === "timeline") return "timeline";
  let seconds = clip.seconds;
  if (seconds === undefined) seconds = await audioSeconds(clip.blob);
  return Number.isFinite(seconds) && seconds > timelineThresholdS() ? "timeline" : "predict";
}

function setBusy(busy, message) {
  $("submit-btn").disabled = busy;
  $("busy").textContent = message || "";
  $("busy").hidden = !busy;
}

async function submit(event) {
  event.preventDefault();
  hideError();
  if (state.recorder) await stopRecording();
  const clip = currentClip();
  const route = await chooseRoute(clip);
  if (route === "timeline") {
    await submitTimeline(clip);
    return;
  }
  const text = $("transcript").value.trim();
  const model = state.model;
  if (!clip && (!model || model.needs_audio)) {
    showError("Choose an audio file or record a clip first.");
    return;
  }
  if (!clip && !text) {
    showError("Type a transcript (this model reads text) or give a clip.");
    return;
  }
  if (model && model.needs_text && !text && !model.asr) {
    showError("This model needs a transcript: type what is said (the server has no speech recogniser).");
    return;
  }
  const form = new FormData();
  if (clip) form.append("audio", clip.blob, clip.name);
  if (text) form.append("text", text);
  const speaker = $("speaker-session").value.trim();
  if (speaker && model && model.adapts_to_speakers) form.append("speaker", speaker);
  await postForm("/predict", form, {
    busy: "Predicting…",
    retry: "predict again",
    show: showResult,
    takeOver: async (response) => {
      // The browser could not tell the length and the clip is too long for /predict.
      const tooLong =
        response.status === 413 && currentMode() === "auto" && clip && !Number.isFinite(clip.seconds);
      if (!tooLong) return false;
      setBusy(false);
      await submitTimeline(clip);
      return true;
    },
  });
}

async function submitTimeline(clip) {
  const model = state.model;
  if (!clip) {
    showError("Choose a recording (an audio file or the microphone) for the timeline.");
    return;
  }
  const words = $("timed-transcript").files[0];
  const asr = !words && $("timeline-asr").checked && Boolean(model && model.asr);
  if (model && model.needs_text && !words && !asr) {
    showError(
      "This model reads words: attach a timed transcript (.srt, .vtt or .csv) for the timeline" +
      (model.asr ? " or let the server transcribe the recording." : "."));
    return;
  }
  const form = new FormData();
  form.append("audio", clip.blob, clip.name);
  if (words) form.append("transcript", words, words.name);
  if (asr) form.append("asr", "true");
  await postForm("/timeline", form, {
    busy: "Building the timeline… (a long recording takes a while)",
    retry: "try again",
    show: showTimeline,
    failed: () => {
      $("timeline").hidden = true;
    },
  });
}

// POST a form while the page shows `busy`, and hand a successful answer's JSON to `show`.
// A missing or wrong token asks for one (then `retry`); `takeOver(response)` may handle
// an answer first (it returns true when it did); any other failure runs `failed` and
// shows the server's error.
async function postForm(path, form, { busy, retry, show, takeOver, failed }) {
  setBusy(true, busy);
  try {
    const response = await api(path, { method: "POST", body: form });
    if (response.status === 401) {
      askForToken(`${await errorText(response)}: enter the API token, then ${retry}.`);
      return;
    }
    if (takeOver && (await takeOver(response))) return;
    if (!response.ok) {
      if (failed) failed();
      showError(await errorText(response));
      return;
    }
    show(await response.json());
  } catch (err) {
    showError(`Request failed: ${err.message}`);
  } finally {
    setBusy(false);
  }
}

// ---------------------------------------------------------------- drawing helpers

const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(name, attrs, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function htmlElement(name, attrs = {}, text) {
  const element = document.createElement(name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

const percent = (p) => `${(p * 100).toFixed(1)}%`;

function topLabel(probabilities) {
  let best = null;
  for (const [label, p] of Object.entries(probabilities || {})) {
    if (best === null || p > probabilities[best]) best = label;
  }
  return best;
}

// Colours come from the server (GET /labels: emofuse.palette, the same as in its PNGs);
// a label it did not colour is grey.
const UNKNOWN_COLOUR = "#888888";

function labelColours(labels) {
  const served = state.colours || {};
  const colours = {};
  for (const label of labels) colours[label] = served[label] || UNKNOWN_COLOUR;
  return colours;
}

function formatTime(seconds) {
  if (!Number.isFinite(seconds)) return "?";
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  const frac = seconds < 60 ? `.${Math.floor((seconds - whole) * 10)}` : "";
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}${frac}`;
}

// ---------------------------------------------------------------- result (one clip)

const CHART_LAYOUTS = {
  wide: { rowHeight: 30, labelWidth: 130, valueWidth: 60, width: 600, font: 13 },
  compact: { rowHeight: 28, labelWidth: 74, valueWidth: 60, width: 260, font: 13 },
};

function drawChart(svg, probabilities, top, layout = CHART_LAYOUTS.wide) {
  const labels = (state.model && state.model.labels) || Object.keys(probabilities);
  const { rowHeight, labelWidth, valueWidth, width } = layout;
  const barMax = width - labelWidth - valueWidth;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${labels.length * rowHeight + 6}`);
  svg.setAttribute("data-top", top || "");
  labels.forEach((label, i) => {
    const p = probabilities[label] ?? 0;
    const y = i * rowHeight + 4;
    const isTop = label === top;
    const cls = isTop ? "top" : "";
    const group = svgElement("g", { "data-label": label, "data-probability": String(p) });
    group.appendChild(svgElement("text", { x: labelWidth - 8, y: y + 17, "text-anchor": "end", class: cls }, label));
    group.appendChild(svgElement("rect", {
      x: labelWidth, y, width: Math.max(1, p * barMax), height: rowHeight - 8, rx: 3,
      class: `bar ${cls}`.trim(),
    }));
    group.appendChild(svgElement("text", { x: labelWidth + p * barMax + 6, y: y + 17, class: cls },
      `${(p * 100).toFixed(1)}%`));
    svg.appendChild(group);
  });
}

// For a speech + text model: the fused distribution and the speech-only and text-only
// ones side by side, and whether the voice and the words name the same emotion.
function showModalities(result) {
  const byModality = result.by_modality || {};
  const both = Boolean(byModality.speech && byModality.text);
  $("modality-charts").classList.toggle("three", both);
  $("caption-fused").hidden = !both;
  $("dist-speech").hidden = !both;
  $("dist-text").hidden = !both;
  const flag = $("agreement");
  if (!both) {
    drawChart($("chart"), result.probabilities, result.label);
    flag.hidden = true;
    return;
  }
  const layout = CHART_LAYOUTS.compact;
  const voice = topLabel(byModality.speech), words = topLabel(byModality.text);
  drawChart($("chart"), result.probabilities, result.label, layout);
  drawChart($("chart-speech"), byModality.speech, voice, layout);
  drawChart($("chart-text"), byModality.text, words, layout);
  $("top-speech").textContent = `· ${voice} ${percent(byModality.speech[voice])}`;
  $("top-text").textContent = `· ${words} ${percent(byModality.text[words])}`;
  const agree = typeof result.agree === "boolean" ? result.agree : voice === words;
  flag.dataset.agree = String(agree);
  flag.classList.toggle("disagree", !agree);
  flag.classList.toggle("agree", agree);
  flag.textContent = agree
    ? `✓ The voice and the words agree: ${voice}.`
    : `⚠ They disagree: the voice says ${voice}, the words say ${words} ` +
      `(fused: ${result.label}).`;
  flag.hidden = false;
}

function showResult(result) {
  $("timeline").hidden = true;
  $("top-label").textContent = result.label;
  $("top-prob").textContent = `${((result.probabilities[result.label] ?? 0) * 100).toFixed(1)}%`;
  // The server marks a top probability below its min_confidence; the label is still shown.
  const mark = $("uncertain-mark");
  mark.hidden = result.uncertain !== true;
  mark.title = mark.hidden ? "" : `top probability below the threshold ${result.min_confidence}`;
  const used = $("used-text");
  if (result.text) {
    used.textContent = `Transcript used: “${result.text}”`;
    used.hidden = false;
  } else {
    used.hidden = true;
  }
  const note = $("speaker-note");
  note.hidden = !(result.speaker_clips > 0);
  if (!note.hidden) {
    const clips = result.speaker_clips;
    note.textContent = `Adapted to this speaker from ${clips} clip${clips === 1 ? "" : "s"}` +
      (clips < 5 ? " (few: the adaptation is still weak)." : ".");
  }
  showModalities(result);
  $("result").hidden = false;
}

// ---------------------------------------------------------------- result (timeline)

const TIMELINE = { width: 900, left: 8, right: 12, laneHeight: 80, laneGap: 10, axis: 26, laneTitle: 16 };

// A tick step that gives at most ~10 ticks.
function tickStep(duration) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  return steps.find((s) => duration / s <= 10) || 14400;
}

function segmentTitle(segment, labels) {
  const scores = labels
    .filter((label) => typeof segment[`p_${label}`] === "number")
    .map((label) => [label, segment[`p_${label}`]])
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([label, p]) => `${label} ${percent(p)}`)
    .join(", ");
  const lines = [
    `${formatTime(segment.start_s)} – ${formatTime(segment.end_s)}: ${segment.label} ` +
    `(confidence ${percent(segment.confidence)})`,
  ];
  if (scores) lines.push(scores);
  if (segment.text) {
    const text = segment.text.length > 160 ? `${segment.text.slice(0, 157)}…` : segment.text;
    lines.push(`“${text}”`);
  }
  if (segment.warnings) lines.push(`note: ${segment.warnings}`);
  return lines.join("\n");
}

function drawTimeline(svg, segments, labels, duration, colours) {
  const { width, left, right, laneHeight, laneGap, axis, laneTitle } = TIMELINE;
  const lanes = [...new Set(segments.map((s) => s.channel ?? null))];
  if (!lanes.length) lanes.push(null);
  const titled = lanes.length > 1 || lanes[0] !== null;
  const laneTop = (i) => i * (laneHeight + laneGap + (titled ? laneTitle : 0)) + (titled ? laneTitle : 0);
  const plotBottom = laneTop(lanes.length - 1) + laneHeight;
  const plotWidth = width - left - right;
  const x = (t) => left + (Math.min(Math.max(t, 0), duration) / duration) * plotWidth;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${plotBottom + axis}`);
  svg.setAttribute("data-duration", String(duration));

  const step = tickStep(duration);
  const grid = svgElement("g", { class: "axis" });
  for (let t = 0; t <= duration + 1e-9; t += step) {
    grid.appendChild(svgElement("line", { x1: x(t), x2: x(t), y1: 0, y2: plotBottom + 4, class: "tick" }));
    const anchor = t === 0 ? "start" : (x(t) > width - 30 ? "end" : "middle");
    grid.appendChild(svgElement("text", { x: x(t), y: plotBottom + 18, "text-anchor": anchor },
      formatTime(t).replace(/\.0$/, "")));
  }
  svg.appendChild(grid);

  lanes.forEach((lane, i) => {
    const top = laneTop(i);
    svg.appendChild(svgElement("rect", { x: left, y: top, width: plotWidth, height: laneHeight, class: "lane" }));
    if (titled) {
      svg.appendChild(svgElement("text", { x: left, y: top - 4, class: "lane-title" },
        lane === null ? "mix" : `channel ${lane}`));
    }
    for (const segment of segments.filter((s) => (s.channel ?? null) === lane)) {
      const confidence = Math.max(0, Math.min(1, Number(segment.confidence) || 0));
      const x0 = x(segment.start_s), x1 = x(segment.end_s);
      const w = Math.max(1.5, x1 - x0);
      const colour = colours[segment.label] || "#888";
      const band = svgElement("g", {
        class: "band", "data-label": segment.label, "data-start": String(segment.start_s),
        "data-end": String(segment.end_s), "data-confidence": String(confidence),
        tabindex: "0",
      });
      band.appendChild(svgElement("title", {}, segmentTitle(segment, labels)));
      band.appendChild(svgElement("rect", { x: x0, y: top, width: w, height: laneHeight, fill: colour, class: "band-extent" }));
      band.appendChild(svgElement("rect", {
        x: x0, y: top + (1 - confidence) * laneHeight, width: w,
        height: Math.max(1, confidence * laneHeight), fill: colour, class: "band-confidence",
      }));
      svg.appendChild(band);
    }
  });
}

function drawLegend(box, labels, colours, shares) {
  box.replaceChildren();
  for (const label of labels) {
    const item = htmlElement("span", { class: "legend-item", "data-label": label });
    const swatch = svgElement("svg", { viewBox: "0 0 12 12", width: "12", height: "12", class: "swatch", "aria-hidden": "true" });
    swatch.appendChild(svgElement("rect", { width: 12, height: 12, rx: 2, fill: colours[label] }));
    item.appendChild(swatch);
    const share = shares && shares[label] ? ` ${percent(shares[label].share)}` : "";
    item.appendChild(document.createTextNode(` ${label}${share}`));
    box.appendChild(item);
  }
}

function summaryTable(caption, headers, rows) {
  const table = htmlElement("table", { class: "summary-table" });
  table.appendChild(htmlElement("caption", {}, caption));
  const head = htmlElement("tr");
  headers.forEach((h) => head.appendChild(htmlElement("th", { scope: "col" }, h)));
  table.appendChild(head);
  for (const row of rows) {
    const tr = htmlElement("tr");
    row.forEach((cell) => {
      const td = htmlElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }
  return table;
}

function drawSummary(box, summary, labels, colours) {
  box.replaceChildren();
  const shares = summary.time_share || {};
  const facts = [
    `${summary.segments ?? 0} segments`,
    `${formatTime(summary.speech_s ?? 0)} of speech in ${formatTime(summary.recording?.duration_s ?? 0)}`,
  ];
  if (summary.dominant) facts.unshift(`Mostly ${summary.dominant}`);
  const transitions = summary.transitions || { count: 0, pairs: [] };
  facts.push(`${transitions.count} change${transitions.count === 1 ? "" : "s"} of emotion`);
  if (summary.text_from) facts.push(`words from ${summary.text_from}`);
  box.appendChild(htmlElement("p", { id: "timeline-facts" }, `${facts.join(" · ")}.`));

  const shareRows = labels
    .filter((label) => shares[label])
    .sort((a, b) => shares[b].seconds - shares[a].seconds)
    .map((label) => {
      const bar = svgElement("svg", { viewBox: "0 0 100 10", class: "share-bar", "aria-hidden": "true", preserveAspectRatio: "none" });
      bar.appendChild(svgElement("rect", { width: Math.max(0.5, shares[label].share * 100), height: 10, fill: colours[label] }));
      return [label, `${shares[label].seconds.toFixed(1)} s`, bar, percent(shares[label].share)];
    });
  const grid = htmlElement("div", { class: "summary-grid" });
  if (shareRows.length) {
    const table = summaryTable("Time per emotion", ["emotion", "time", "", "share"], shareRows);
    table.id = "timeline-shares";
    grid.appendChild(table);
  }
  const runs = summary.longest_runs || {};
  const runRows = labels.filter((label) => runs[label]).map((label) => [
    label, `${formatTime(runs[label].start_s)} – ${formatTime(runs[label].end_s)}`,
    `${runs[label].duration_s.toFixed(1)} s`, String(runs[label].segments),
  ]);
  if (runRows.length) {
    grid.appendChild(summaryTable("Longest run of each emotion", ["emotion", "from – to", "length", "segments"], runRows));
  }
  const pairs = (transitions.pairs || []).slice(0, 8);
  if (pairs.length) {
    const table = summaryTable("Most frequent changes", ["from → to", "times"],
      pairs.map((pair) => [`${pair.from} → ${pair.to}`, String(pair.count)]));
    table.id = "timeline-transitions";
    grid.appendChild(table);
  }
  box.appendChild(grid);
}

function showTimeline(data) {
  $("result").hidden = true;
  const summary = data.summary || {};
  const segments = data.segments || [];
  const labels = summary.labels || (state.model && state.model.labels) || [...new Set(segments.map((s) => s.label))];
  const colours = labelColours(labels);
  const recording = summary.recording || {};
  const duration = Math.max(recording.duration_s || 0, ...segments.map((s) => s.end_s), 0.001);
  $("timeline-title").textContent = `· ${recording.path || "recording"} (${formatTime(duration)})`;
  const message = $("timeline-message");
  if (!segments.length) {
    message.textContent = summary.message || "No speech found in this recording.";
    message.hidden = false;
  } else {
    message.hidden = !summary.message;
    message.textContent = summary.message || "";
  }
  drawLegend($("timeline-legend"), labels, colours, summary.time_share);
  drawTimeline($("timeline-chart"), segments, labels, duration, colours);
  drawSummary($("timeline-summary"), summary, labels, colours);
  $("timeline").hidden = false;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

// ---------------------------------------------------------------- wiring

$("audio-file").addEventListener("change", async () => {
  const file = $("audio-file").files[0];
  state.source = file ? "file" : (state.recording ? "recording" : null);
  hideError();
  showChoice();
  if (file && !state.durations.has(file)) {
    state.durations.set(file, await audioSeconds(file));
    showChoice();
  }
});
$("record-btn").addEventListener("click", toggleRecording);
$("predict-form").addEventListener("submit", submit);
$("token-form").addEventListener("submit", useToken);
loadModel();
