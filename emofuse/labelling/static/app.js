// The labelling page: play a clip of the pool, read its transcript (and the model's guess),
// answer with a key (1-9 for the first nine labels, a searchable list beyond), skip or undo.
// Every answer is saved by the server at once (answers.csv); the page keeps no state that
// matters: a reload asks GET /label/next and resumes where this annotator left off.
// An API token, if the server wants one, is asked for once (/static/token.js, shared with
// `emofuse serve`'s page: in this page's memory only); the audio is fetched with it and
// played from a blob.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYED_LABELS = 9;

const state = {
  view: null,      // the last GET /label/next answer
  audioUrl: null,  // blob URL of the clip playing (revoked on the next clip)
  busy: false,
};

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return `${body.detail} (HTTP ${response.status})`;
  } catch (err) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// ---------------------------------------------------------------- token

function askForToken(message) {
  $("who").textContent = "This server needs your API token.";
  for (const id of ["clip", "done", "progress", "last"]) $(id).hidden = true;
  showTokenForm();
  if (message) showError(message);
}

async function useToken(event) {
  hideError();
  if (!takeTypedToken(event)) return;
  const ok = await loadNext();
  if (ok) $("token-form").hidden = true;
}

// ---------------------------------------------------------------- the next clip

async function loadNext() {
  let response;
  try {
    response = await api("/label/next");
  } catch (err) {
    showError(`Could not reach the server: ${err.message}`);
    return false;
  }
  if (response.status === 401) {
    askForToken(apiToken.value ? "That token was not accepted: check it and try again." : null);
    return false;
  }
  if (!response.ok) {
    showError(`GET /label/next: ${await errorText(response)}`);
    return false;
  }
  render(await response.json());
  return true;
}

function render(view) {
  const previous = state.view && state.view.clip ? state.view.clip.id : null;
  state.view = view;
  $("who").textContent = `Labelling as ${view.annotator}`;
  renderLabels(view.labels);
  renderProgress(view);
  renderLast(view.last);
  const clip = view.clip;
  $("clip").hidden = clip === null;
  $("done").hidden = clip !== null;
  if (clip === null) {
    setAudio(null);
    return;
  }
  $("clip-position").textContent = String(clip.position);
  $("pool-size").textContent = String(view.progress.pool_size);
  $("clip-id").textContent = clip.id;
  $("transcript").textContent = clip.text || "(no transcript)";
  $("transcript").classList.toggle("empty", !clip.text);
  renderGuess(clip.guess);
  $("no-audio").hidden = clip.has_audio;
  $("replay-btn").hidden = !clip.has_audio;
  if (clip.id !== previous) loadAudio(clip);
}

function renderGuess(guess) {
  $("guess").hidden = !guess;
  if (!guess) return;
  $("guess-label").textContent = guess.label;
  let detail = `(${guess.probability.toFixed(2)}`;
  if (guess.second) detail += `; then ${guess.second} ${guess.second_probability.toFixed(2)}`;
  $("guess-detail").textContent = `${detail})`;
}

async function loadAudio(clip) {
  setAudio(null);
  if (!clip.has_audio) return;
  let response;
  try {
    response = await api(`/label/audio/${encodeURIComponent(clip.id)}`);
  } catch (err) {
    showError(`Could not fetch the audio: ${err.message}`);
    return;
  }
  if (!response.ok) {
    showError(`The audio of this clip: ${await errorText(response)}`);
    return;
  }
  const blob = await response.blob();
  if (!state.view || !state.view.clip || state.view.clip.id !== clip.id) return;  // moved on
  setAudio(URL.createObjectURL(blob));
  play();
}

function setAudio(url) {
  const player = $("player");
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = url;
  if (url) {
    player.src = url;
    player.dataset.clip = state.view.clip.id;
  } else {
    player.pause();
    player.removeAttribute("src");
    delete player.dataset.clip;
    player.load();
  }
  player.hidden = !url;
}

function play() {
  const player = $("player");
  if (!state.audioUrl) return;
  player.currentTime = 0;
  player.play().catch(() => { /* autoplay refused: the controls and Space still play */ });
}

// ---------------------------------------------------------------- labels

function labelButton(label, index) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "label-btn";
  button.dataset.label = label;
  const colour = state.view.colours[label];
  if (colour) button.style.borderLeftColor = colour;
  if (index < KEYED_LABELS) {
    const key = document.createElement("kbd");
    key.textContent = String(index + 1);
    button.append(key, " ");
  }
  button.append(label);
  button.addEventListener("click", () => answer(label));
  return button;
}

function renderLabels(labels) {
  const box = $("label-buttons");
  if (box.dataset.labels === labels.join("\n")) return;
  box.dataset.labels = labels.join("\n");
  box.replaceChildren(...labels.slice(0, KEYED_LABELS).map(labelButton));
  const more = labels.length > KEYED_LABELS;
  $("label-search-box").hidden = !more;
  if (more) filterLabels();
}

function filterLabels() {
  const labels = state.view ? state.view.labels : [];
  const query = $("label-search").value.trim().toLowerCase();
  const matches = labels
    .map((label, index) => [label, index])
    .filter(([label]) => !query || label.toLowerCase().includes(query));
  $("label-list").replaceChildren(...matches.map(([label, index]) => labelButton(label, index)));
}

async function answer(label) {
  const clip = state.view && state.view.clip;
  if (!clip || state.busy) return;
  await step(
    "/label",
    new URLSearchParams({ id: clip.id, label }),
  );
  $("label-search").value = "";
  filterLabels();
}

async function skip() {
  const clip = state.view && state.view.clip;
  if (!clip || state.busy) return;
  await step("/label/skip", new URLSearchParams({ id: clip.id }));
}

async function undo() {
  if (state.busy) return;
  await step("/label/undo", new URLSearchParams());
}

// POST, then show what comes next. One step at a time: keys pressed meanwhile are dropped.
async function step(path, body) {
  if (document.activeElement instanceof HTMLButtonElement) document.activeElement.blur();
  state.busy = true;
  $("busy").hidden = false;
  hideError();
  try {
    const response = await api(path, { method: "POST", body });
    if (response.status === 401) {
      askForToken("The server no longer accepts this token.");
      return;
    }
    if (!response.ok) {
      showError(`POST ${path}: ${await errorText(response)}`);
      return;
    }
    await loadNext();
  } catch (err) {
    showError(`Could not reach the server: ${err.message}`);
  } finally {
    state.busy = false;
    $("busy").hidden = true;
  }
}

// ---------------------------------------------------------------- progress

function renderProgress(view) {
  const p = view.progress;
  $("progress").hidden = false;
  $("progress-total").textContent =
    `(you: ${p.answered_by_me} of ${p.pool_size}; anyone: ${p.answered_by_anyone})`;
  const most = Math.max(1, ...view.labels.map((l) => p.everyone[l] || 0), ...view.labels.map((l) => p.mine[l] || 0));
  const rows = view.labels.map((label) => {
    const row = document.createElement("tr");
    row.dataset.label = label;
    const name = document.createElement("th");
    name.textContent = label;
    const mine = document.createElement("td");
    mine.className = "mine";
    mine.textContent = String(p.mine[label] || 0);
    const everyone = document.createElement("td");
    everyone.className = "everyone";
    everyone.textContent = String(p.everyone[label] || 0);
    const barCell = document.createElement("td");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * (p.everyone[label] || 0)) / most}%`;
    bar.style.backgroundColor = view.colours[label] || "#9db4d8";
    barCell.append(bar);
    row.append(name, mine, everyone, barCell);
    return row;
  });
  $("progress-table").tBodies[0].replaceChildren(...rows);
  let agreement = `Clips with two or more annotators: ${p.shared}`;
  if (p.shared) {
    agreement += `; all agree on ${p.agreeing} (${Math.round((100 * p.agreeing) / p.shared)} %)`;
  }
  if (p.ties) agreement += `; ${p.ties} split evenly`;
  $("agreement").textContent = agreement + ".";
}

function renderLast(last) {
  const box = $("last");
  box.hidden = !last;
  box.classList.remove("agree", "disagree");
  if (!last) return;
  const others = Object.entries(last.others);
  let text = `Your last answer: ${last.label} (clip ${last.id}).`;
  if (others.length) {
    const agree = others.every(([, label]) => label === last.label);
    box.classList.add(agree ? "agree" : "disagree");
    const said = others.map(([name, label]) => `${name}: ${label}`).join(", ");
    text += agree ? ` Others agree (${said}).` : ` Others said ${said}.`;
  }
  box.textContent = text;
}

// ---------------------------------------------------------------- keys

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target instanceof HTMLInputElement;
  if (typing) {
    if (event.target.id === "label-search") {
      if (event.key === "Enter") {
        event.preventDefault();
        const first = $("label-list").querySelector("button");
        if (first) answer(first.dataset.label);
      } else if (event.key === "Escape") {
        event.target.blur();
      }
    }
    return;
  }
  if (!state.view) return;
  const labels = state.view.labels;
  if (/^[1-9]$/.test(event.key)) {
    const index = Number(event.key) - 1;
    if (index < Math.min(labels.length, KEYED_LABELS)) {
      event.preventDefault();
      answer(labels[index]);
    }
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    skip();
  } else if (event.key === "u" || event.key === "U" || event.key === "Backspace") {
    event.preventDefault();
    undo();
  } else if (event.key === " ") {
    event.preventDefault();
    const player = $("player");
    if (player.paused) play(); else player.pause();
  } else if (event.key === "/" && !$("label-search-box").hidden) {
    event.preventDefault();
    $("label-search").focus();
  }
}

// ---------------------------------------------------------------- start

$("token-form").addEventListener("submit", useToken);
$("replay-btn").addEventListener("click", play);
$("skip-btn").addEventListener("click", skip);
$("undo-btn").addEventListener("click", undo);
$("done-undo-btn").addEventListener("click", undo);
$("label-search").addEventListener("input", filterLabels);
document.addEventListener("keydown", onKey);
loadNext();
