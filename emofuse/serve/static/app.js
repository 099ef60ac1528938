// The emofuse page: upload or record a clip, add a transcript, show the probabilities.
// Recording captures raw PCM with the Web Audio API and encodes a 16 kHz 16-bit WAV here,
// because the server's decoder (libsndfile) does not read MediaRecorder's webm/opus.
"use strict";

const TARGET_RATE_HZ = 16000;
const $ = (id) => document.getElementById(id);

const state = {
  model: null,        // /health answer: labels, modality, needs_text, asr, limits
  recording: null,    // {blob, seconds} of the last recording
  recorder: null,     // live capture while recording
  source: null,       // "file" | "recording": which clip to send
};

// ---------------------------------------------------------------- model info

async function loadModel() {
  try {
    const response = await fetch("/health");
    if (!response.ok) throw new Error(await errorText(response));
    const model = await response.json();
    state.model = model;
    const parts = [`Model: ${model.modality}`, `labels: ${model.labels.join(", ")}`];
    if (model.asr) parts.push("server transcribes audio without a transcript");
    $("model-info").textContent = parts.join(" · ");
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
  const maxSeconds = state.model ? state.model.max_audio_s : 60;
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

function showChoice() {
  const file = $("audio-file").files[0];
  let text = "";
  if (state.source === "recording" && state.recording) {
    text = `Will send: your recording (${state.recording.seconds.toFixed(1)} s)`;
  } else if (file) {
    text = `Will send: ${file.name} (${(file.size / 1024).toFixed(0)} KB)`;
  }
  $("audio-choice").textContent = text;
}

function currentClip() {
  if (state.source === "recording" && state.recording) {
    return { blob: state.recording.blob, name: "recording.wav" };
  }
  const file = $("audio-file").files[0];
  return file ? { blob: file, name: file.name } : null;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return `${body.detail} (HTTP ${response.status})`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${response.status} ${response.statusText}`;
}

async function submit(event) {
  event.preventDefault();
  hideError();
  if (state.recorder) await stopRecording();
  const clip = currentClip();
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
  $("submit-btn").disabled = true;
  $("busy").hidden = false;
  try {
    const response = await fetch("/predict", { method: "POST", body: form });
    if (!response.ok) {
      showError(await errorText(response));
      return;
    }
    showResult(await response.json());
  } catch (err) {
    showError(`Request failed: ${err.message}`);
  } finally {
    $("submit-btn").disabled = false;
    $("busy").hidden = true;
  }
}

// ---------------------------------------------------------------- result

const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(name, attrs, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function drawChart(svg, probabilities, top) {
  const labels = (state.model && state.model.labels) || Object.keys(probabilities);
  const rowHeight = 30, labelWidth = 130, valueWidth = 60, width = 600;
  const barMax = width - labelWidth - valueWidth;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${labels.length * rowHeight + 6}`);
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

function showResult(result) {
  $("top-label").textContent = result.label;
  $("top-prob").textContent = `${((result.probabilities[result.label] ?? 0) * 100).toFixed(1)}%`;
  const used = $("used-text");
  if (result.text) {
    used.textContent = `Transcript used: “${result.text}”`;
    used.hidden = false;
  } else {
    used.hidden = true;
  }
  drawChart($("chart"), result.probabilities, result.label);
  $("result").hidden = false;
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

$("audio-file").addEventListener("change", () => {
  state.source = $("audio-file").files[0] ? "file" : (state.recording ? "recording" : null);
  hideError();
  showChoice();
});
$("record-btn").addEventListener("click", toggleRecording);
$("predict-form").addEventListener("submit", submit);
loadModel();
