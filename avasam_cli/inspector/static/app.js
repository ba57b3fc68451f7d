"use strict";
// Everything shown came from requests anyone could send: it is set with textContent only.
const rows = document.querySelector("#list tbody");
const detail = document.getElementById("detail");
const form = document.getElementById("filters");
const counts = { received: 0, verified: 0, duplicate: 0, rejected: 0 };
let paused = false, waiting = [], selected = null, oldest = null, stream = null, session = null, shown = null;
let newest = 0, dropped = false, retry = null; // where a reconnection resumes, and its state

function cell(text, cls) { const td = document.createElement("td"); td.textContent = text ?? ""; if (cls) td.className = cls; return td; }
function filterParams() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.set(name, name === "since" || name === "until" ? new Date(value + "Z").toISOString() : value);
  return params;
}
function verdict(e) { return e.status === "rejected" ? `rejected ${e.reason || ""}`.trim() : e.status; }
function row(e) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  tr.append(cell((e.received_at || "").slice(0, 19).replace("T", " ")), cell(e.kind), cell(verdict(e), e.status),
    cell(e.http_status), cell(e.requestId || "-"), cell(e.items ?? ""), cell(e.test ? "never (test)" : e.acknowledgement?.status || ""), cell(e.forward?.status || ""));
  tr.addEventListener("click", () => open(tr));
  return tr;
}
function count(e) { counts.received++; if (e.status in counts) counts[e.status]++; showCounts(); }
function showCounts() {
  document.getElementById("counters").textContent =
    `${counts.received} stored · ${counts.verified} verified · ${counts.duplicate} duplicate · ${counts.rejected} rejected` + (paused ? ` · paused (${waiting.length} waiting)` : "");
}
function prepend(e) { rows.prepend(row(e)); count(e); document.getElementById("empty").hidden = true; }
async function totals() {
  // The counters start from the store's totals, then count live arrivals.
  const answer = await fetch("/api/counts");
  const { events } = await answer.json();
  counts.received = Object.values(events).reduce((a, b) => a + b, 0);
  for (const name of ["verified", "duplicate", "rejected"]) counts[name] = events[name] || 0;
  showCounts();
}

async function load(before) {
  const params = filterParams();
  if (before) params.set("before", before);
  const answer = await fetch(`/api/events?${params}`);
  const { events } = await answer.json();
  for (const e of events) { rows.append(row(e)); oldest = e.id; }
  document.getElementById("more").hidden = events.length < 100;
  document.getElementById("empty").hidden = rows.children.length > 0;
  return events;
}
function streamState(text) {
  const notice = document.getElementById("stream-state");
  notice.textContent = text; notice.hidden = !text;
}
function listen(after) {
  if (stream) stream.close();
  clearTimeout(retry);
  const params = filterParams();
  newest = after || 0;
  params.set("after", newest);
  stream = new EventSource(`/api/stream?${params}`);
  stream.addEventListener("row", (message) => {
    const e = JSON.parse(message.data);
    newest = Math.max(newest, e.id);
    if (paused) { waiting.push(e); showCounts(); } else prepend(e);
  });
  stream.addEventListener("open", () => { if (dropped) reconnected(); });
  stream.addEventListener("error", () => {
    dropped = true;
    streamState("The live stream dropped: the listener (or this inspector) stopped, or the connection broke. Reconnecting by itself…");
    // The browser retries a broken connection itself; an answer that is not a stream
    // (the inspector restarted with another token, say) ends its retries, so we go on.
    if (stream.readyState === EventSource.CLOSED) retry = setTimeout(probe, 2000);
  });
}
async function probe() {
  try {
    const answer = await fetch("/api/session");
    if (answer.ok) { listen(newest); return; }
    if (answer.status === 401) streamState("The inspector is back, but no longer takes this page's token: open the URL it printed.");
  } catch (error) { /* nothing answers yet */ }
  retry = setTimeout(probe, 2000);
}
async function reconnected() {
  dropped = false;
  // A restarted inspector has a new CSRF token: without it the actions would be refused.
  session = await (await fetch("/api/session")).json();
  streamState("Reconnected: the list is live again.");
  setTimeout(() => { if (!dropped) streamState(""); }, 4000);
}
async function start() {
  rows.replaceChildren(); oldest = null;
  await totals();
  const events = await load();
  listen(events.length ? events[0].id : 0);
  showCounts();
}

function section(title, text) {
  const h = document.createElement("h3"); h.textContent = title;
  const pre = document.createElement("pre"); pre.textContent = text;
  return [h, pre];
}
async function open(tr) {
  if (selected) selected.classList.remove("selected");
  selected = tr; tr.classList.add("selected"); tr.scrollIntoView({ block: "nearest" });
  const answer = await fetch(`/api/events/${tr.dataset.id}`);
  const e = await answer.json();
  const title = document.createElement("h2");
  title.textContent = `Event ${e.id}: ${e.kind} ${verdict(e)} (HTTP ${e.http_status})`;
  const parts = [title, actions(e)]; // at the top, with their results beside them
  const facts = [`received ${e.received_at} from ${e.client || "?"}`, `request id ${e.requestId || "-"}${e.status === "rejected" && e.requestId ? " (claimed, not verified)" : ""}`];
  if (e.reason) facts.push(`refused: ${e.reason}: ${e.detail || ""}`);
  if (e.test) facts.push("test event: sent by `avasam send-test` (or made by `reconcile --fix`), so never acknowledged to Avasam");
  if (e.token) facts.push(`verification token: ${e.token}${e.token === "previous" ? " (a rotation's grace: paste the new one into Avasam)" : ""}`);
  if (e.skew_seconds !== null && e.skew_seconds !== undefined) facts.push(`iat - on: ${e.skew_seconds} s`);
  const ack = e.acknowledgement || {}, fwd = e.forward || {};
  if (ack.status) facts.push(`acknowledgement: ${ack.status}${ack.at ? ` at ${ack.at}` : ""}${ack.detail ? ` (${ack.detail})` : ""}`);
  if (fwd.status) facts.push(`forward: ${fwd.status}${fwd.detail ? ` (${fwd.detail})` : ""}`);
  parts.push(...section("Verdict", facts.join("\n")));
  if (e.jwt) parts.push(...section("JWT (decoded, not verified)", JSON.stringify(e.jwt, null, 2)));
  if (e.items) {
    const table = document.createElement("table");
    const keys = [...new Set(e.items.slice(0, 200).flatMap((item) => (item && typeof item === "object" ? Object.keys(item) : [])))];
    const head = document.createElement("tr"); keys.forEach((k) => head.append(cell(k))); table.append(head);
    for (const item of e.items.slice(0, 200)) { const tr2 = document.createElement("tr"); keys.forEach((k) => tr2.append(cell(item && typeof item === "object" ? String(item[k] ?? "") : ""))); table.append(tr2); }
    const h = document.createElement("h3"); h.textContent = `Items (${e.items.length})`; parts.push(h, table);
  }
  parts.push(...section("Headers", e.headers.map(([n, v]) => `${n}: ${v}`).join("\n")));
  parts.push(...section("Body (raw)", e.body_text));
  if (e.body_pretty) parts.push(...section("Body (pretty)", e.body_pretty));
  for (const job of e.deliveries) {
    const log = job.log.map(([at, status, ms, excerpt]) => `${at}  ${status}${ms === null ? "" : ` ${Math.round(ms)} ms`}  ${excerpt}`);
    parts.push(...section(`Delivery ${job.id}: ${job.job}${job.job === "forward" ? ` to ${job.target}` : ""}: ${job.state}`, log.join("\n") || "not tried yet"));
  }
  detail.replaceChildren(...parts); detail.hidden = false; shown = e;
}

function button(label, handler) { const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.addEventListener("click", handler); return b; }
async function act(e, action, payload) {
  const result = document.getElementById("result");
  result.textContent = `${action}...`;
  const answer = await fetch(`/api/events/${e.id}/${action}`, {
    method: "POST", headers: { "content-type": "application/json", "x-avasam-csrf": session.csrf },
    body: JSON.stringify(payload || {}),
  });
  const out = await answer.json();
  result.textContent = answer.ok ? said(action, out) : `${action} refused: ${out.detail}`;
  if (answer.ok && action === "replay" && REPLAY_HINTS[out.outcome]) {
    result.textContent += `\n${REPLAY_HINTS[out.outcome]}`;
    const resign = document.getElementById("resign");
    if (resign) { resign.classList.add("suggested"); resign.focus(); }
  }
}
function said(action, out) {
  // "acknowledge: 200 {...}", not "200  200 {...}": an answer may start with its own code.
  let answer = String(out.answer ?? "");
  if (out.status === null || out.status === undefined) return `${action} failed: ${answer}`;
  if (answer.startsWith(`${out.status} `)) answer = answer.slice(String(out.status).length + 1);
  const parts = [`${action}: ${out.status}`, out.ms ? `${out.ms} ms` : "", answer, out.request_id ? `(request id ${out.request_id})` : ""];
  return parts.filter(Boolean).join(" ");
}
// What a plain replay's answer means, and the way on (as `avasam events replay` says it).
const REPLAY_HINTS = {
  duplicate: "Answered duplicate: the receiver has this request id already, so it passed nothing on. \"Re-sign as new\" sends the items as a new update.",
  expired: "Refused as expired: the stored token's lifetime is over (Avasam's tokens last minutes). \"Re-sign as new\" signs the items afresh with a new request id.",
};
function curl(e) {
  const quote = (text) => `'${String(text).replaceAll("'", "'\\''")}'`;
  const url = session.receiver[e.kind] || "URL";
  const headers = e.headers.filter(([n]) => !["host", "content-length", "connection"].includes(n)).map(([n, v]) => `-H ${quote(`${n}: ${v}`)}`);
  return ["curl", "-X", "POST", quote(url), ...headers, "--data-binary", quote(e.body_text)].join(" ");
}
function actions(e) {
  const box = document.createElement("div"); box.className = "actions";
  const result = document.createElement("pre"); result.id = "result";
  const canSend = session && session.receiver[e.kind];
  if (canSend) { const replay = button("Replay to the receiver (r)", () => act(e, "replay")); replay.id = "replay"; box.append(replay); }
  if (session && session.forward[e.kind] && e.status === "verified") box.append(button(`Replay to ${session.forward[e.kind]}`, () => act(e, "forward")));
  if (session && session.can_acknowledge && e.kind === "stock" && e.status === "verified" && !e.test) box.append(button("Acknowledge", () => act(e, "acknowledge")));
  if (canSend && session.can_resign && e.items) {
    const resign = button("Re-sign as new…", () => {
      if (document.getElementById("items-editor")) { document.getElementById("items-editor").focus(); return; }
      const editor = document.createElement("textarea"); editor.id = "items-editor"; editor.rows = 8; editor.cols = 60;
      editor.value = JSON.stringify(e.items, null, 2);
      const send = button("Send re-signed", () => {
        let items; try { items = JSON.parse(editor.value); } catch (error) { result.textContent = `The items are not JSON: ${error.message}`; return; }
        act(e, "resign", { items });
      });
      resign.after(editor, send);
    });
    resign.id = "resign";
    box.append(resign);
  }
  const link = document.createElement("a"); link.href = `/api/events/${e.id}/raw`; link.textContent = "Download raw body"; link.download = `event-${e.id}.json`;
  box.append(link, button("Copy as curl", async () => {
    const text = curl(e); result.textContent = text;
    try { await navigator.clipboard.writeText(text); } catch (error) { /* shown above: copy it by hand */ }
  }), result);
  return box;
}

document.getElementById("pause").addEventListener("click", (event) => {
  paused = !paused; event.target.setAttribute("aria-pressed", String(paused)); event.target.textContent = paused ? "Resume" : "Pause";
  if (!paused) { waiting.forEach(prepend); waiting = []; }
  showCounts();
});
document.getElementById("more").addEventListener("click", () => load(oldest));
document.getElementById("ack-all").addEventListener("click", async () => {
  const status = document.getElementById("ack-all-result");
  status.textContent = "acknowledging every pending stock update...";
  const answer = await fetch("/api/acknowledge-pending", { method: "POST", headers: { "x-avasam-csrf": session.csrf } });
  const out = await answer.json();
  status.textContent = answer.ok ? out.answer : `refused: ${out.detail}`;
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams(new FormData(form)); for (const [k, v] of [...params]) if (!v) params.delete(k);
  history.replaceState(null, "", params.toString() ? `?${params}` : "/");
  start();
});
form.addEventListener("reset", () => setTimeout(() => { history.replaceState(null, "", "/"); start(); }));
document.addEventListener("keydown", (event) => {
  if (event.target.closest && event.target.closest("form")) return;
  const current = selected && selected.isConnected ? selected : null;
  if (event.key === "j" || event.key === "k") {
    const next = current ? (event.key === "j" ? current.nextElementSibling : current.previousElementSibling) : rows.firstElementChild;
    if (next) { if (selected) selected.classList.remove("selected"); selected = next; next.classList.add("selected"); next.scrollIntoView({ block: "nearest" }); }
  } else if (event.key === "Enter" && current) open(current);
  else if (event.key === "Escape") detail.hidden = true;
  else if (event.key === "r" && !detail.hidden) document.getElementById("replay")?.click();
});
for (const [name, value] of new URLSearchParams(location.search)) if (form.elements[name]) form.elements[name].value = value;
fetch("/api/session").then((answer) => answer.json()).then((value) => { session = value; });
start();
