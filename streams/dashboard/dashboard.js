// Disruption Feed dashboard: counts, firing alerts and the live feed of alert transitions.
//
// Data comes from the worker's JSON API (/counts, /alerts), polled every few seconds, and from
// its Server-Sent Events stream (/alerts/stream), read with fetch() so that the response status
// is seen (EventSource hides it) and the reconnection backoff is ours. Requests carry the
// session cookie the worker set at sign-in (HttpOnly: this script never sees a credential).
// Everything from the server is put on the page as text (textContent), never as HTML.
"use strict";

(() => {
  const POLL_MS = 5000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 15000;
  const FEED_MAX = 100;
  const TYPES = [
    ["account.disrupted", "t-account", "accounts disrupted"],
    ["network.identified", "t-network", "networks identified"],
    ["report.released", "t-report", "reports released"],
  ];
  const WINDOWS = { "1h": "hour", "24h": "24 hours", "7d": "7 days" };
  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
  const heartbeatMeta = document.querySelector('meta[name="disruptfeed-heartbeat"]');
  const HEARTBEAT_S = Number(heartbeatMeta && heartbeatMeta.content) || 15;
  // No byte (not even a heartbeat) for this long: the connection is dead, whatever TCP says.
  const STALL_MS = (HEARTBEAT_S * 2 + 5) * 1000;

  const $ = (id) => document.getElementById(id);
  const regionNames = (() => {
    try { return new Intl.DisplayNames(["en"], { type: "region" }); } catch { return null; }
  })();

  const state = {
    window: "24h",
    counts: null,
    firing: [],
    lastEventId: null,
    previous: new Map(), // "region/window" -> last value shown, to flash what changed
  };

  // ---------- small DOM helpers ----------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child == null) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text != null) node.textContent = text;
    return node;
  }
  function regionName(code) {
    if (code === "unknown") return "Unknown";
    try { return (regionNames && regionNames.of(code)) || code; } catch { return code; }
  }
  const fmt = new Intl.NumberFormat("en");
  function utc(iso, withDate = true) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const s = d.toISOString();
    return (withDate ? s.slice(0, 10) + " " : "") + s.slice(11, 16) + " UTC";
  }
  function clock(date) {
    return date.toTimeString().slice(0, 8);
  }

  // ---------- API ----------
  async function api(path) {
    const response = await fetch(path, {
      headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
    });
    if (response.status === 401) {
      location.assign("/login"); // the session expired or the token was rotated away
      throw new Error("signed out");
    }
    if (!response.ok) {
      let reason = `HTTP ${response.status}`;
      try { reason = (await response.json()).error || reason; } catch { /* not JSON */ }
      throw new Error(reason);
    }
    return response.json();
  }

  // ---------- counts: chart and table ----------
  function totals(byType) {
    const out = { "1h": 0, "24h": 0, "7d": 0, total: 0 };
    for (const row of Object.values(byType || {})) {
      for (const key of Object.keys(out)) out[key] += row[key] || 0;
    }
    return out;
  }

  function alertingRegions() {
    return new Set(state.firing.map((a) => a.region));
  }

  function renderTable() {
    const body = $("counts").tBodies[0];
    const counts = state.counts || {};
    const alerting = alertingRegions();
    const regions = Object.keys(counts).sort((a, b) =>
      totals(counts[b])[state.window] - totals(counts[a])[state.window]
      || totals(counts[b]).total - totals(counts[a]).total || a.localeCompare(b));
    const rows = regions.map((region) => {
      const sum = totals(counts[region]);
      const row = el("tr", { "data-region": region, class: alerting.has(region) ? "alerting" : "" },
        el("td", { class: "region", title: regionName(region) },
          el("span", { class: "code" }, region), " ",
          el("span", { class: "name" }, region === regionName(region) ? "" : regionName(region))));
      for (const key of ["1h", "24h", "7d", "total"]) {
        const detail = TYPES.map(([type, , label]) =>
          `${fmt.format((counts[region][type] || {})[key] || 0)} ${label}`).join(", ");
        const cell = el("td", { class: "num", "data-window": key, title: detail }, fmt.format(sum[key]));
        const seen = state.previous.get(`${region}/${key}`);
        if (seen !== undefined && seen !== sum[key]) cell.classList.add("changed");
        state.previous.set(`${region}/${key}`, sum[key]);
        row.append(cell);
      }
      return row;
    });
    body.replaceChildren(...rows);
    $("counts-empty").hidden = regions.length > 0;
  }

  function renderChart() {
    const chart = $("chart");
    const counts = state.counts || {};
    const key = state.window;
    const width = Math.max(240, Math.round(chart.parentElement.getBoundingClientRect().width) || 600);
    const narrow = width < 420;
    const regions = Object.keys(counts)
      .map((region) => ({ region, byType: counts[region], sum: totals(counts[region])[key] }))
      .filter((r) => r.sum > 0)
      .sort((a, b) => b.sum - a.sum || a.region.localeCompare(b.region));
    const shown = regions.slice(0, 12);
    const bar = 20, gap = 10, top = 22;
    const labelW = narrow ? 44 : 150, valueW = 56;
    const plotW = Math.max(60, width - labelW - valueW);
    const height = top + Math.max(1, shown.length) * (bar + gap) + (regions.length > shown.length ? 18 : 0);
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    chart.setAttribute("width", width);
    chart.setAttribute("height", height);
    const nodes = [svg("title", { id: "chart-title" },
      `Events per region in the last ${WINDOWS[key]}, by event type`)];
    if (!shown.length) {
      nodes.push(svg("text", { x: 0, y: top + 14, class: "nothing" },
        `No events in the last ${WINDOWS[key]} of event time.`));
      chart.replaceChildren(...nodes);
      return;
    }
    const max = shown[0].sum;
    const step = niceStep(max);
    for (let v = 0; v <= max; v += step) {
      const x = labelW + (v / max) * plotW;
      nodes.push(svg("line", { x1: x, x2: x, y1: top - 6, y2: height, class: "gridline" }));
      nodes.push(svg("text", { x, y: top - 10, "text-anchor": "middle", class: "axis" }, fmt.format(v)));
    }
    shown.forEach((r, i) => {
      const y = top + i * (bar + gap);
      const g = svg("g", { "data-region": r.region });
      g.append(svg("text", { x: 0, y: y + bar / 2 + 5, class: "label" }, r.region));
      if (!narrow && r.region !== regionName(r.region)) {
        const name = regionName(r.region);
        g.append(svg("text", { x: 36, y: y + bar / 2 + 4, class: "sub" },
          name.length > 17 ? name.slice(0, 16) + "…" : name));
      }
      let x = labelW;
      for (const [type, cls, label] of TYPES) {
        const n = (r.byType[type] || {})[key] || 0;
        if (!n) continue;
        const w = Math.max(2, (n / max) * plotW);
        const rect = svg("rect", { x, y, width: w, height: bar, rx: 3, class: cls });
        rect.append(svg("title", {}, `${r.region}: ${fmt.format(n)} ${label}`));
        g.append(rect);
        x += w;
      }
      g.append(svg("text", { x: x + 6, y: y + bar / 2 + 4, class: "value" }, fmt.format(r.sum)));
      nodes.push(g);
    });
    if (regions.length > shown.length) {
      nodes.push(svg("text", { x: 0, y: height - 4, class: "sub" },
        `+${regions.length - shown.length} more regions in the table`));
    }
    chart.replaceChildren(...nodes);
  }

  function niceStep(max) {
    const rough = max / 4;
    const power = 10 ** Math.floor(Math.log10(Math.max(1, rough)));
    for (const m of [1, 2, 5, 10]) if (m * power >= rough) return Math.max(1, m * power);
    return Math.max(1, 10 * power);
  }

  function renderCounts() {
    renderChart();
    renderTable();
  }

  // ---------- firing alerts ----------
  function alertCard(alert) {
    const sev = alert.severity || "info";
    return el("li", { class: `alert sev-${sev}`, "data-fingerprint": alert.fingerprint,
      "data-region": alert.region },
      el("div", { class: "line1" },
        el("span", { class: `pill sev-${sev}` }, sev),
        el("span", { class: "what" }, `${alert.region} · ${alert.rule}`)),
      el("p", { class: "summary" }, alert.summary || ""),
      el("p", { class: "since" }, `Since ${utc(alert.starts_at)} (event time)`));
  }

  function renderFiring() {
    const list = [...state.firing].sort((a, b) =>
      (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9)
      || String(a.starts_at).localeCompare(String(b.starts_at)));
    $("firing").replaceChildren(...list.map(alertCard));
    $("firing-empty").hidden = list.length > 0;
    const badge = $("firing-count");
    badge.textContent = String(list.length);
    badge.classList.toggle("hot", list.length > 0);
  }

  // ---------- polling ----------
  let pollTimer = null;
  let lastLoaded = null;
  async function recovering() {
    // /health answers without credentials; "recovering": the worker is rebuilding its counts
    // from its tables (a start or a rebalance), so what /counts says is not complete yet.
    try {
      const response = await fetch("/health", { cache: "no-store" });
      return (await response.json()).status === "recovering";
    } catch {
      return false;
    }
  }

  async function refresh() {
    clearTimeout(pollTimer);
    try {
      const [counts, alerts, rebuilding] = await Promise.all(
        [api("/counts"), api("/alerts"), recovering()]);
      $("recovering").hidden = !rebuilding;
      state.counts = counts;
      state.firing = alerts.alerts || [];
      $("stream-time").textContent = utc(alerts.stream_time);
      if (alerts.stream_time) $("stream-time").setAttribute("datetime", alerts.stream_time);
      lastLoaded = new Date();
      const updated = $("updated");
      updated.textContent = `Updated ${clock(lastLoaded)}`;
      updated.classList.remove("stale");
      renderFiring();
      renderCounts();
    } catch (error) {
      const updated = $("updated");
      updated.textContent = lastLoaded
        ? `Could not refresh (${error.message}); showing the counts of ${clock(lastLoaded)}`
        : `Could not load the counts (${error.message})`;
      updated.classList.add("stale");
    } finally {
      pollTimer = setTimeout(refresh, POLL_MS);
    }
  }
  let soon = null;
  function refreshSoon() { // several transitions at once: one refresh
    clearTimeout(soon);
    soon = setTimeout(refresh, 300);
  }

  // ---------- live feed ----------
  function addTransition(alert) {
    const status = alert.status === "resolved" ? "resolved" : "firing";
    const sev = alert.severity || "info";
    const item = el("li", { class: "new", "data-status": status, "data-region": alert.region,
      "data-alert-id": alert.alert_id || "" },
      el("time", { datetime: new Date().toISOString() }, clock(new Date())),
      el("div", { class: "body" },
        el("div", { class: "line1" },
          el("span", { class: `pill st-${status}` }, status),
          el("span", { class: `pill sev-${sev}` }, sev),
          el("strong", { class: "what" }, `${alert.region} · ${alert.rule}`)),
        el("p", { class: "summary" }, alert.summary || "")));
    const feed = $("feed");
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    $("feed-empty").hidden = true;
  }

  // ---------- the SSE stream, read with fetch ----------
  const conn = $("conn");
  let retryNow = null;
  function setConnection(kind, text) {
    conn.dataset.state = kind;
    const label = $("conn-text");
    if (label.textContent !== text) label.textContent = text;
    $("retry").hidden = kind !== "disconnected";
  }
  $("retry").addEventListener("click", () => retryNow && retryNow());

  function wait(ms, onTick) {
    return new Promise((resolve) => {
      const end = Date.now() + ms;
      const tick = () => {
        const left = end - Date.now();
        if (left <= 0) { clearInterval(timer); retryNow = null; resolve(); return; }
        onTick(left);
      };
      const timer = setInterval(tick, 250);
      retryNow = () => { clearInterval(timer); retryNow = null; resolve(); };
      tick();
    });
  }

  async function readEvents(body, controller) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let stall = setTimeout(() => controller.abort(), STALL_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(stall);
        stall = setTimeout(() => controller.abort(), STALL_MS);
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          handleBlock(block);
        }
      }
    } finally {
      clearTimeout(stall);
    }
  }

  class TooSlow extends Error {}

  function handleBlock(block) {
    let event = "message", id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue; // heartbeats and comments
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (!data.length) return;
    if (event === "alert") {
      let alert;
      try { alert = JSON.parse(data.join("\n")); } catch { return; }
      if (id) state.lastEventId = id;
      addTransition(alert);
      refreshSoon();
    } else if (event === "error") {
      // The server dropped us for falling behind; resume from what it says we had.
      try { state.lastEventId = JSON.parse(data.join("\n")).last_event_id || state.lastEventId; } catch { /* keep ours */ }
      throw new TooSlow("fell behind");
    }
  }

  async function follow() {
    let attempt = 0;
    for (;;) {
      const controller = new AbortController();
      let problem = "the stream ended";
      try {
        const headers = { Accept: "text/event-stream" };
        if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
        const response = await fetch("/alerts/stream", {
          headers, credentials: "same-origin", cache: "no-store", signal: controller.signal,
        });
        if (response.status === 401) { location.assign("/login"); return; }
        if (response.status === 400 && state.lastEventId) {
          state.lastEventId = null; // a position this feed no longer has: start at the end
          continue;
        }
        if (response.status === 429) {
          problem = "too many live streams with this token";
        } else if (!response.ok || !response.body) {
          problem = `HTTP ${response.status}`;
        } else {
          attempt = 0;
          setConnection("live", "Live");
          refresh(); // whatever changed while we were away
          await readEvents(response.body, controller);
        }
      } catch (error) {
        problem = controller.signal.aborted ? "no heartbeat" : "the worker cannot be reached";
        if (error instanceof TooSlow) problem = "fell behind";
      } finally {
        controller.abort();
      }
      attempt += 1;
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (attempt - 1));
      const delay = base * (0.8 + Math.random() * 0.4);
      await wait(delay, (left) => setConnection("disconnected",
        `Disconnected: ${problem}. Retrying in ${Math.ceil(left / 1000)} s`));
      setConnection("connecting", "Reconnecting…");
    }
  }

  // ---------- controls ----------
  for (const button of document.querySelectorAll(".seg button")) {
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      for (const other of document.querySelectorAll(".seg button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      $("window-label").textContent = WINDOWS[state.window];
      renderCounts();
    });
  }
  // Drawn for the width it has (text stays its size): again whenever that width changes.
  let drawnWidth = 0;
  new ResizeObserver((entries) => {
    const width = Math.round(entries[0].contentRect.width);
    if (width !== drawnWidth) {
      drawnWidth = width;
      renderChart();
    }
  }).observe(document.querySelector(".chart"));
  window.addEventListener("online", () => retryNow && retryNow());

  refresh();
  follow();
})();
