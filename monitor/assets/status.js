// Polls api/status (relative, so the page works under a path prefix) and redraws the page in place; no build step, no CDN.
(function () {
  "use strict";
  var order = ["ready", "resuming", "connecting", "disconnected", "stopped", "unknown"];
  function $(id) { return document.getElementById(id); }
  function text(s) { return document.createTextNode(s == null ? "" : String(s)); }
  function mib(b) { return b > 0 ? (b / 1048576).toFixed(1) + " MiB" : "-"; }
  function dur(s) {
    if (!(s > 0)) return "-";
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + "d" + h + "h";
    if (h) return h + "h" + m + "m";
    if (m) return m + "m" + (s % 60) + "s";
    return s + "s";
  }
  function hhmmss(iso) { var d = new Date(iso); return isNaN(d) ? "-" : d.toISOString().substr(11, 8); }
  function row(cells, cls) {
    var tr = document.createElement("tr");
    cells.forEach(function (c, i) {
      var td = document.createElement("td");
      if (cls && cls[i]) td.className = cls[i];
      td.appendChild(text(c));
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(tbody, rows) {
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    tbody.replaceChildren(frag);
  }
  function shards(list) {
    var grid = $("shards");
    // Cells are reused: with thousands of shards only classes and titles change.
    while (grid.children.length > list.length) grid.removeChild(grid.lastChild);
    while (grid.children.length < list.length) {
      var cell = document.createElement("div");
      grid.appendChild(cell);
    }
    list.forEach(function (s, i) {
      var cell = grid.children[i];
      var cls = "shard " + s.status;
      if (cell.className !== cls) cell.className = cls;
      cell.dataset.shard = s.id;
      cell.dataset.status = s.status;
      cell.title = "shard " + s.id + " · cluster " + s.cluster + " · " + s.status + " · " + s.latency_ms + " ms · " +
        (s.guilds >= 0 ? s.guilds : "?") + " guilds";
    });
  }
  function render(st) {
    $("ns").textContent = st.namespace;
    $("ready-count").textContent = st.shards_by_status.ready || 0;
    $("shard-count").textContent = st.shards.length;
    order.forEach(function (k) { var el = $("count-" + k); if (el) el.textContent = st.shards_by_status[k] || 0; });
    $("budget").textContent = st.budget.remaining + " / " + st.budget.total;
    $("maxconc").textContent = st.budget.max_concurrency;
    $("reset").textContent = st.budget.reset_at ? st.budget.reset_at.replace("T", " ").substr(0, 19) + " UTC" : "-";
    $("updated").textContent = hhmmss(st.at);
    shards(st.shards);
    fill($("clusters").tBodies[0], st.clusters.map(function (c) {
      var tr = row([c.id, c.status + (c.alive ? "" : " (no heartbeat)"), c.shards, c.pid, c.owner || "",
        c.cpu_percent.toFixed(1), mib(c.rss_bytes), dur(c.uptime_seconds), c.restarts],
        [null, "st-" + c.status, null, null, null, "num", "num", "num", "num"]);
      tr.dataset.cluster = c.id;
      return tr;
    }));
    fill($("services").tBodies[0], st.services.map(function (s) {
      return row([s.name + "#" + s.copy, s.pid, s.cpu_percent.toFixed(1), mib(s.rss_bytes), dur(s.uptime_seconds), s.restarts],
        [null, null, "num", "num", "num", "num"]);
    }));
    fill($("events").tBodies[0], st.events.slice().reverse().map(function (e) {
      return row([hhmmss(e.at), e.type, e.cluster >= 0 ? e.cluster : "", e.shard >= 0 ? e.shard : "",
        ((e.service || "") + " " + (e.detail || "")).trim()]);
    }));
  }
  function poll() {
    fetch("api/status", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (st) { render(st); $("error").textContent = ""; document.body.dataset.polled = st.at; })
      .catch(function (e) { $("error").textContent = "(" + e.message + ")"; })
      .then(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
