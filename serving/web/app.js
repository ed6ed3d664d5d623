// nwp-serve's page: type with suggestions, generate, surprisal, attention. No build step, no library,
// nothing fetched but this server's public REST API (TF Serving's /v1/models/...).
"use strict";

const $ = (id) => document.getElementById(id);
const DEBOUNCE_MS = 120;

const state = {
  model: "",
  version: "",          // "" = latest
  signatures: null,     // names from the metadata, once known
  suggestions: null,    // {text, words, probabilities} on screen
  charLevel: false,
};

// ---------- the REST API ----------

function modelPath() {
  let path = "/v1/models/" + encodeURIComponent(state.model);
  if (state.version) path += "/versions/" + encodeURIComponent(state.version);
  return path;
}

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : {"Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new Error("The server did not answer (" + err.message + ").");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    throw new Error("HTTP " + response.status + " " + response.statusText);
  }
  if (!response.ok || (data && data.error)) {
    throw new Error(data && data.error ? data.error : "HTTP " + response.status);
  }
  return data;
}

function predict(signature, instances) {
  return api("POST", modelPath() + ":predict", {signature_name: signature, instances});
}

// ---------- the server's limits on one request ----------

// Sent by the server in <meta name="nwp-limits">: --max_request_bytes (the body; larger
// gets 413), --max_request_tokens (the server's estimate of a request's work: each prompt
// min(its UTF-8 bytes + 1, prompt_token_cap), plus generate's max_new_tokens; more gets
// 400). A text too long for them is cut to its end, which is what the model reads.
function readLimits() {
  const meta = document.querySelector('meta[name="nwp-limits"]');
  try {
    const limits = JSON.parse(meta ? meta.content : "{}");
    return limits && typeof limits === "object" ? limits : {};
  } catch (err) {
    return {};
  }
}

const LIMITS = readLimits();
const encoder = new TextEncoder();
const utf8Bytes = (s) => encoder.encode(s).length;

// {text, cut, kept, total, why}: the longest end of `text` for which the request body
// body(text) is within --max_request_bytes and the prompt's tokens plus `moreTokens` within
// --max_request_tokens. Not cut when it fits, or when even an empty text would not (a
// parameter is what is too large then: the API's message says which).
function fitText(text, body, moreTokens) {
  const maxBytes = LIMITS.max_request_bytes;
  const maxTokens = LIMITS.max_request_tokens;
  const cap = LIMITS.prompt_token_cap || Infinity;
  const bytesFit = (t) => !(maxBytes > 0) || utf8Bytes(JSON.stringify(body(t))) <= maxBytes;
  const tokensFit = (t) => !(maxTokens > 0) ||
    Math.min(utf8Bytes(t) + 1, cap) + (moreTokens || 0) <= maxTokens;
  const fits = (t) => bytesFit(t) && tokensFit(t);
  if (fits(text) || !fits("")) return {text, cut: false};
  const chars = Array.from(text);  // cut between code points, never inside one
  const tail = (k) => chars.slice(chars.length - k).join("");
  let lo = 0;
  let hi = chars.length;  // tail(lo) fits, tail(hi) does not
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (fits(tail(mid))) lo = mid; else hi = mid;
  }
  const why = bytesFit(tail(hi))  // the limit that one more character would break
    ? "at most " + maxTokens + " tokens of work a request (--max_request_tokens)"
    : "request bodies of at most " + maxBytes + " bytes (--max_request_bytes)";
  return {text: tail(lo), cut: true, kept: lo, total: chars.length, why};
}

function showCut(id, fit) {
  const note = $(id);
  if (!fit.cut) {
    note.hidden = true;
    note.textContent = "";
    delete note.dataset.sent;
    return;
  }
  note.textContent = "The text is too long for this server, which takes " + fit.why +
    ": the page sent only its last " + fit.kept + " of " + fit.total + " characters.";
  note.dataset.sent = fit.text;
  note.hidden = false;
}

// Predict on one text, cut to the server's limits first (the note `noteId` says when):
// `instance(t)` makes the instance from the text. Returns {out, sent}.
async function predictText(signature, text, noteId, instance = (t) => t, moreTokens = 0) {
  const fit = fitText(text, (t) => ({signature_name: signature, instances: [instance(t)]}),
                      moreTokens);
  showCut(noteId, fit);
  const out = await predict(signature, [instance(fit.text)]);
  return {out, sent: fit.text};
}

function showError(where, err) {
  const box = $("error");
  box.textContent = where + ": " + err.message;
  box.dataset.message = err.message;
  box.hidden = false;
}

function clearError() {
  const box = $("error");
  box.hidden = true;
  box.textContent = "";
  delete box.dataset.message;
}

// ---------- model and version picker ----------

function readModels() {
  const meta = document.querySelector('meta[name="nwp-models"]');
  try {
    const names = JSON.parse(meta ? meta.content : "[]");
    return Array.isArray(names) ? names : [];
  } catch (err) {
    return [];
  }
}

async function loadStatus() {
  const select = $("version");
  let status;
  try {
    status = await api("GET", "/v1/models/" + encodeURIComponent(state.model));
  } catch (err) {
    $("model-status").textContent = "";
    showError("Status", err);
    return;
  }
  const versions = status.model_version_status || [];
  const available = versions.filter((v) => v.state === "AVAILABLE").map((v) => v.version);
  const keep = select.value;
  const now = Array.from(select.options).slice(1).map((o) => o.value);
  if (now.join(",") !== available.join(",")) {  // rebuild only when the versions change
    select.replaceChildren(new Option("latest", ""));
    for (const v of available) select.add(new Option(v, v));
    select.value = available.includes(keep) ? keep : "";
  }
  state.version = select.value;
  $("model-status").textContent = versions
    .map((v) => "v" + v.version + " " + v.state +
      (v.status && v.status.error_message ? " (" + v.status.error_message + ")" : ""))
    .join(", ");
}

async function loadMetadata() {
  try {
    const meta = await api("GET", modelPath() + "/metadata");
    const defs = ((meta.metadata || {}).signature_def || {}).signature_def || {};
    state.signatures = Object.keys(defs);
  } catch (err) {
    state.signatures = null;
    showError("Metadata", err);
    showAttentionNote(false, "the model's metadata could not be read (" + err.message + ")");
    return;
  }
  const has = (name) => state.signatures.includes(name);
  $("gen-run").disabled = !has("generate");
  $("score-run").disabled = !has("score");
  showAttentionNote(has("attention"));
}

async function pickModel() {
  state.model = $("model").value;
  $("version").value = "";  // another model: its latest version
  state.version = "";
  await loadStatus();
  await loadMetadata();
  suggestNow();
}

async function pickVersion() {
  state.version = $("version").value;
  await loadMetadata();
  suggestNow();
}

// ---------- type with suggestions ----------

let typeSent = 0;     // sequence number of the last request sent
let typeShown = 0;    // sequence number of the answer on screen
let typeTimer = null;

function scheduleSuggest() {
  clearTimeout(typeTimer);
  typeTimer = setTimeout(suggest, DEBOUNCE_MS);
}

function suggestNow() {
  clearTimeout(typeTimer);
  suggest();
}

async function suggest() {
  if (!state.model) return;
  const text = $("prompt").value;
  const seq = ++typeSent;
  let out;
  try {
    out = (await predictText("serving_default", text, "type-cut")).out;
  } catch (err) {
    if (seq > typeShown) {  // the newest answer is an error: no older words under it
      typeShown = seq;
      state.suggestions = null;
      const list = $("suggestions");
      list.replaceChildren();
      list.dataset.seq = String(seq);
      delete list.dataset.text;
      showError("Suggestions", err);
    }
    return;
  }
  if (seq <= typeShown) return;  // a newer answer is already on screen
  typeShown = seq;
  clearError();
  const row = out.predictions[0];
  renderSuggestions(text, row.words, row.probabilities, seq);
}

function visibleWord(word) {
  if (word === " ") return "\u2423";      // open box
  if (word === "\n") return "\u23ce";     // return symbol
  return word;
}

function renderSuggestions(text, words, probabilities, seq) {
  state.suggestions = {text, words, probabilities};
  state.charLevel = words.some((w) => /\s/.test(w));
  const list = $("suggestions");
  list.replaceChildren();
  words.forEach((word, i) => {
    const p = probabilities[i];
    const button = document.createElement("button");
    button.type = "button";
    button.className = "suggestion";
    button.dataset.word = word;
    button.dataset.probability = String(p);
    button.title = word + ": p = " + p.toFixed(4);
    const key = document.createElement("kbd");
    key.textContent = i < 5 ? String(i + 1) : "";
    const label = document.createElement("span");
    label.className = "word";
    label.textContent = visibleWord(word);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = Math.max(0, Math.min(100, p * 100)).toFixed(1) + "%";
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = (p * 100).toFixed(1) + "%";
    button.append(key, label, bar, pct);
    button.addEventListener("click", () => take(i));
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  });
  list.dataset.seq = String(seq);
  list.dataset.text = text;
  list.hidden = false;
}

function take(i) {
  const s = state.suggestions;
  if (!s || i >= s.words.length) return;
  const prompt = $("prompt");
  let text = prompt.value;
  if (state.charLevel) {
    text += s.words[i];
  } else {
    if (text && !/\s$/.test(text)) text += " ";
    text += s.words[i] + " ";
  }
  prompt.value = text;
  prompt.focus();
  prompt.setSelectionRange(text.length, text.length);
  suggestNow();
}

function onPromptKey(event) {
  const list = $("suggestions");
  const shown = state.suggestions && !list.hidden && state.suggestions.words.length > 0;
  const plain = !event.altKey && !event.ctrlKey && !event.metaKey;
  if (event.key === "Escape" && shown) {
    list.hidden = true;
    event.preventDefault();
  } else if (event.key === "Tab" && plain && !event.shiftKey && shown) {
    event.preventDefault();
    take(0);
  } else if (/^[1-5]$/.test(event.key) && plain && shown) {
    const text = event.target.value;
    if (text === "" || /\s$/.test(text)) {  // between words, as a phone's strip
      event.preventDefault();
      take(Number(event.key) - 1);
    }
  }
}

// ---------- generate ----------

// The numbers go to the API as typed (1.5 as a seed, say); the API's message says what is
// wrong with them.
function number(id) {
  const raw = $(id).value.trim();
  const value = Number(raw);
  if (raw === "" || Number.isNaN(value)) {
    throw new Error($(id).closest("label").firstChild.textContent.trim() + " must be a number.");
  }
  return value;
}

async function generate(event) {
  event.preventDefault();
  const output = $("gen-output");
  let instance;
  try {
    instance = {
      text: $("gen-text").value,
      max_new_tokens: number("gen-length"),
      temperature: number("gen-temperature"),
      top_k: number("gen-top-k"),
      top_p: number("gen-top-p"),
      seed: number("gen-seed"),
    };
  } catch (err) {
    showError("Generate", err);
    return;
  }
  $("gen-run").disabled = true;
  output.setAttribute("aria-busy", "true");
  try {
    const newTokens = Math.max(0, Math.min(LIMITS.prompt_token_cap || 256,
                                           Math.trunc(instance.max_new_tokens) || 0));
    const {out} = await predictText("generate", instance.text, "gen-cut",
                                    (t) => ({...instance, text: t}), newTokens);
    const row = out.predictions[0];
    const given = document.createElement("span");
    given.className = "given";
    given.textContent = instance.text;
    const more = document.createElement("mark");
    more.className = "continuation";
    more.textContent = row.continuation;
    const count = document.createElement("span");
    count.className = "muted count";
    count.textContent = " (" + row.num_tokens + " tokens)";
    output.replaceChildren(given, document.createTextNode(state.charLevel ? "" : " "),
                           more, count);
    output.dataset.continuation = row.continuation;
    output.dataset.numTokens = String(row.num_tokens);
    clearError();
  } catch (err) {
    showError("Generate", err);
  } finally {
    $("gen-run").disabled = !(state.signatures || ["generate"]).includes("generate");
    output.removeAttribute("aria-busy");
  }
}

// ---------- surprisal ----------

// The score signature gives one log-probability per token but not the tokens; split the
// text the way the model's vectoriser may have (white space as PTB; lower-cased with
// punctuation cut out as the default corpus; characters) and keep the split whose count is
// the model's num_tokens: {tokens (null if none fits), total (the text's tokens)}.
function splitLike(text, n) {
  const ws = text.split(/\s+/).filter(Boolean);
  const punct = text.toLowerCase().replace(/([^\p{L}\p{N}\s])/gu, " $1 ")
    .split(/\s+/).filter(Boolean);
  const chars = Array.from(text);
  for (const tokens of [ws, punct, chars]) {
    if (tokens.length === n) return {tokens, total: n};
  }
  for (const tokens of [ws, punct, chars]) {  // read only the last max_prompt_tokens
    if (tokens.length > n && n > 0) {
      return {tokens: tokens.slice(tokens.length - n), total: tokens.length};
    }
  }
  return {tokens: null, total: n};
}

async function score(event) {
  event.preventDefault();
  const text = $("score-text").value;
  const output = $("score-output");
  const summary = $("score-summary");
  $("score-run").disabled = true;
  try {
    const {out, sent} = await predictText("score", text, "score-cut");
    const row = out.predictions[0];
    const n = row.num_tokens;
    const surprisal = row.token_log_probs.slice(0, n).map((lp) => -lp);
    const {tokens, total} = splitLike(sent, n);
    const FULL = 10;  // nats: full colour (the surprisal of a uniform guess over 22,000 words)
    output.replaceChildren();
    surprisal.forEach((s, i) => {
      const span = document.createElement("span");
      span.className = "tok";
      span.tabIndex = 0;
      const word = tokens ? tokens[i] : "#" + (i + 1);
      span.textContent = visibleWord(word);
      span.dataset.surprisal = String(s);
      span.title = word + ": " + s.toFixed(3) + " nats (p = " + Math.exp(-s).toPrecision(3) + ")";
      span.setAttribute("aria-label", span.title);
      const alpha = Math.min(1, s / FULL);
      span.style.backgroundColor = "rgba(204, 51, 17, " + alpha.toFixed(3) + ")";
      if (alpha > 0.55) span.classList.add("dark");
      output.append(span);
      if (!state.charLevel && i < n - 1) output.append(document.createTextNode(" "));
    });
    const mean = n ? surprisal.reduce((a, b) => a + b, 0) / n : 0;
    summary.textContent = "Perplexity " + row.perplexity.toFixed(3) + " over " + n +
      " tokens (mean surprisal " + mean.toFixed(3) + " nats; full colour: " + FULL +
      " nats or more)" + (tokens ? "" : "; the tokens could not be lined up with the text") +
      (total > n ? "; the text has " + total + " tokens; the model scores only its last " + n +
       " (it reads at most max_prompt_tokens)" : "");
    summary.dataset.total = String(total);
    summary.dataset.perplexity = String(row.perplexity);
    clearError();
  } catch (err) {
    showError("Surprisal", err);
  } finally {
    $("score-run").disabled = !(state.signatures || ["score"]).includes("score");
  }
}

// ---------- attention ----------

const ATTENTION_HELP = "Where the model looks when it predicts the next word: the " +
  "attention weights of the prompt's last token over the tokens it reads, one row per " +
  "layer and head (hover or focus a cell for the value).";

// The view needs the model's `attention` signature (nwp-export adds it only for models with
// attention layers); without it the view says so instead of asking.
function showAttentionNote(available, why) {
  const note = $("attention-note");
  $("attention-run").disabled = !available;
  $("attention-output").replaceChildren();
  delete $("attention-output").dataset.text;
  note.dataset.available = String(available);
  note.textContent = available ? ATTENTION_HELP
    : "The attention view is unavailable for this model: " + (why ||
      "its export has no attention signature, because the model has no attention layer " +
      "(nwp-export adds one for models with attention, such as the lstm-attention preset " +
      "and the Transformer).");
}

async function attention(event) {
  event.preventDefault();
  const text = $("attention-text").value;
  const output = $("attention-output");
  $("attention-run").disabled = true;
  try {
    const {out} = await predictText("attention", text, "attention-cut");
    renderAttention(output, text, out.predictions[0]);
    clearError();
  } catch (err) {
    showError("Attention", err);
  } finally {
    $("attention-run").disabled = !(state.signatures || []).includes("attention");
  }
}

// A table: one column per token the model reads, one row per layer and head; each cell
// shaded by its weight relative to the row's largest, the exact value on hover or focus.
function renderAttention(output, text, row) {
  const n = row.num_tokens;
  const tokens = row.tokens.slice(0, n);
  const layers = row.weights;
  const table = document.createElement("table");
  const caption = document.createElement("caption");
  caption.className = "muted";
  caption.textContent = "Attention of \u201c" + visibleWord(tokens[n - 1]) + "\u201d (the " +
    "last token) over " + n + " tokens; shade relative to each row's largest weight.";
  table.append(caption);
  const head = document.createElement("tr");
  const corner = document.createElement("th");
  corner.textContent = "layer / head";
  head.append(corner);
  for (const token of tokens) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = "token";
    th.textContent = visibleWord(token);
    head.append(th);
  }
  const thead = document.createElement("thead");
  thead.append(head);
  const body = document.createElement("tbody");
  layers.forEach((heads, l) => {
    heads.forEach((weights, h) => {
      const tr = document.createElement("tr");
      const label = document.createElement("th");
      label.scope = "row";
      label.textContent = "L" + (l + 1) + " H" + (h + 1);
      tr.append(label);
      const shown = weights.slice(0, n);
      const top = Math.max(...shown) || 1;
      shown.forEach((w, i) => {
        const td = document.createElement("td");
        td.className = "cell";
        td.tabIndex = 0;
        td.dataset.layer = String(l);
        td.dataset.head = String(h);
        td.dataset.weight = String(w);
        td.title = visibleWord(tokens[i]) + ": " + w.toFixed(4) + " (layer " + (l + 1) +
          ", head " + (h + 1) + ")";
        td.setAttribute("aria-label", td.title);
        const alpha = Math.max(0, Math.min(1, w / top));
        td.style.backgroundColor = "rgba(26, 95, 180, " + alpha.toFixed(3) + ")";
        if (alpha > 0.55) td.classList.add("dark");
        td.textContent = w.toFixed(2).replace(/^0/, "");
        tr.append(td);
      });
      body.append(tr);
    });
  });
  table.append(thead, body);
  output.replaceChildren(table);
  output.dataset.text = text;
  output.dataset.numTokens = String(n);
}

// ---------- start ----------

async function start() {
  const models = readModels();
  const select = $("model");
  for (const name of models) select.add(new Option(name, name));
  if (!models.length) {
    showError("Models", new Error("The server listed no models."));
    return;
  }
  const asked = new URLSearchParams(window.location.search).get("model");  // ?model=NAME
  if (asked && models.includes(asked)) select.value = asked;
  select.addEventListener("change", pickModel);
  $("version").addEventListener("change", pickVersion);
  $("picker").addEventListener("submit", (e) => e.preventDefault());
  const prompt = $("prompt");
  prompt.addEventListener("input", () => {
    $("suggestions").hidden = false;
    scheduleSuggest();
  });
  prompt.addEventListener("keydown", onPromptKey);
  $("generate-form").addEventListener("submit", generate);
  $("score-form").addEventListener("submit", score);
  $("score-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) score(e);
  });
  $("attention-form").addEventListener("submit", attention);
  $("attention-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) attention(e);
  });
  await pickModel();
  document.body.dataset.ready = "true";
  setInterval(loadStatus, 15000);  // versions come and go (hot reload)
}

document.addEventListener("DOMContentLoaded", start);
