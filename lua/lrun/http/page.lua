--- lrun.http.page: the status page lrun.http serves -- one self-contained HTML file
-- (no framework, nothing fetched from elsewhere). Its script listens to /events,
-- draws the units as a table by level of the graph, and posts the buttons' requests
-- to /api. Each unit's row carries data-unit, data-state and data-seen (the states
-- this page has shown it in), so a test can read the page's life from its DOM.
--
--   require("lrun.http.page").html
-- No action is ever taken from the URL: a link from elsewhere can only show the page.
local M = {}

M.html = [==[<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lrun</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; } table { border-collapse: collapse; }
th, td { padding: .25em .7em; text-align: left; border-bottom: 1px solid #ddd; }
th.level { background: #f4f4f4; font-weight: normal; color: #666; }
td.state { font-weight: bold; }
.running, .ready { color: #06c; } .ok { color: #080; }
.failed, .timeout, .gave { color: #c00; } .skipped, .stopped { color: #888; }
.backing-off, .retrying { color: #b60; }
pre { background: #f6f6f6; padding: .6em; max-height: 20em; overflow: auto; }
button { margin-right: .3em; } #conn { color: #888; font-size: .9em; }
</style></head>
<body>
<h1>lrun <span id="pid"></span> <span id="conn">connecting...</span></h1>
<table><thead><tr><th>job</th><th>state</th><th>pid</th><th>attempt</th>
<th>duration</th><th>last exit</th><th></th></tr></thead>
<tbody id="units"></tbody></table>
<h2 id="tail-title" hidden>log</h2><pre id="tail" hidden></pre>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
window.onerror = (msg) => { $("conn").textContent = "page error: " + msg; };
let shown = null;
const seen = {};   // unit -> the states this page has shown it in, in order
function dur(s) {
  if (s === undefined || s === null) return "-";
  if (s < 10) return s.toFixed(2) + "s";
  if (s < 60) return s.toFixed(1) + "s";
  const m = Math.floor(s / 60);
  return m + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
}
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function button(td, cmd, unit) {
  const b = document.createElement("button");
  b.textContent = cmd;
  b.dataset.cmd = cmd;
  b.dataset.unit = unit;
  b.onclick = () => send(cmd, unit);
  td.appendChild(b);
}
async function send(cmd, job) {
  const r = await fetch("/api", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ cmd: cmd, job: job }) });
  const reply = await r.json();
  if (!reply.ok) $("conn").textContent = cmd + " " + job + ": " + reply.error;
}
async function tail(unit) {
  const r = await fetch("/api", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ cmd: "tail", job: unit, lines: 100 }) });
  const reply = await r.json();
  shown = unit;
  $("tail-title").hidden = false; $("tail").hidden = false;
  $("tail-title").textContent = "log of " + unit;
  $("tail").textContent = reply.ok ? reply.result.lines.join("\n") : reply.error;
}
function draw(st) {
  $("pid").textContent = "(pid " + st.pid + ")";
  const body = $("units");
  body.textContent = "";
  const units = st.units.slice().sort((a, b) =>
    (st.levels[a.job] || 0) - (st.levels[b.job] || 0));
  let level = -1;
  for (const u of units) {
    const l = st.levels[u.job] || 0;
    if (l !== level) {
      level = l;
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.colSpan = 7; th.className = "level"; th.textContent = "level " + l;
      tr.appendChild(th); body.appendChild(tr);
    }
    const tr = document.createElement("tr");
    const list = seen[u.name] = seen[u.name] || [];
    if (list[list.length - 1] !== u.state) list.push(u.state);
    tr.dataset.unit = u.name; tr.dataset.state = u.state; tr.dataset.seen = list.join(",");
    tr.dataset.attempt = u.attempt; tr.dataset.pid = u.pid || "";
    const name = cell(tr, u.name);
    name.style.cursor = "pointer"; name.onclick = () => tail(u.name);
    cell(tr, u.state, "state " + u.state.split(" ")[0]);
    cell(tr, u.pid || "-"); cell(tr, u.attempt);
    cell(tr, dur(u.duration)); cell(tr, u.last_exit || "-");
    const td = cell(tr, "");
    const live = u.state === "running" || u.state === "ready";
    if (live) { button(td, "stop", u.name); button(td, "restart", u.name); }
    else button(td, "start", u.name);
    body.appendChild(tr);
  }
  if (shown) tail(shown);
}
const es = new EventSource("/events");
es.addEventListener("state", (e) => {
  try { draw(JSON.parse(e.data)); $("conn").textContent = "live"; }
  catch (err) { $("conn").textContent = "page error: " + err; }
});
es.onerror = () => { $("conn").textContent = "disconnected (lrun ended?)"; };
</script>
</body></html>
]==]

return M
