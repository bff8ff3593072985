// ftpool dashboard: reads the JSON API with the session cookie, follows the events stream,
// and writes everything into the page with textContent (never innerHTML), so a bot's
// name or log line is shown as text whatever it contains.
"use strict";

(() => {
  // Every event type the controller emits (tests/unit/controller/ui checks this list):
  // EventSource delivers a named event only to a listener for that name.
  const EVENT_TYPES = [
    "bot_state", "bot_restart", "bot_failed", "bot_memory_limit", "bot_deprioritised",
    "bot_reprioritised", "bot_moved", "bot_move_failed",
    "bot_failed_over",
    "bot_migrated", "bot_rolled_back", "pool_healthy", "pool_suspect", "pool_recovery",
    "pool_died", "pool_oom", "agent_connected", "agent_disconnected", "bot_restored", "pool_upgraded",
    "pool_upgrade_failed", "pool_upgrade_rolled_back", "backup_failed", "backup_recovered",
    "backup_offsite_failed", "backup_offsite_recovered",
    "pool_fenced", "market_data_port_taken", "market_data_port_recovered", "upgrade_finished",
  ];
  const MAX_EVENTS = 200;
  const MAX_RUNS = 20;
  const REFRESH_MS = 10000; // figures without an event (uptime, memory, CPU)
  const LOG_BYTES = 16384;
  const LOG_MS = 5000;
  const USAGE_MS = 10000; // the controller samples every 30 s, a new bot within 5 s

  const body = document.body;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const page = body.dataset.page;
  const isAdmin = body.dataset.role === "admin";
  const botId = body.dataset.bot || null;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  async function api(method, path) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, { method, headers, credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign("/ui/login");
      throw new Error("signed out");
    }
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) throw new Error((data && data.error) || response.statusText);
    return data;
  }

  const fmt = {
    bytes(n) {
      if (n === null || n === undefined) return "–";
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
      return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
    },
    duration(s) {
      if (s === null || s === undefined) return "–";
      s = Math.floor(s);
      if (s < 60) return `${s}s`;
      if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
      if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
      return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
    },
    pct(p) {
      return p === null || p === undefined ? "–" : `${Number(p).toFixed(1)} %`;
    },
    ping(ping) {
      if (!ping) return "–";
      if (!ping.ok) return "failing";
      return ping.ms === null || ping.ms === undefined ? "ok" : `${Math.round(ping.ms)} ms`;
    },
    time(iso) {
      const d = new Date(iso);
      return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString();
    },
  };

  function stateCell(status) {
    const td = el("td", status, "state");
    td.dataset.state = status;
    return td;
  }

  function botLink(id) {
    const a = el("a", id);
    a.href = `/ui/bots/${encodeURIComponent(id)}`;
    return a;
  }

  // -- the dashboard ---------------------------------------------------------------------

  let bots = [];

  // Memory, CPU and ping of a process; none for a bot without one (stopped, pending).
  function processCells(p) {
    if (!p.pid) return [el("td", "–"), el("td", "–"), el("td", "–")];
    return [el("td", fmt.bytes(p.memoryBytes)), el("td", fmt.pct(p.cpuPercent)),
      el("td", fmt.ping(p.ping))];
  }

  function renderBots() {
    const filter = byId("state-filter");
    const states = [...new Set(bots.map((b) => b.status))].sort();
    const chosen = filter.value;
    filter.replaceChildren(el("option", "all"));
    filter.firstChild.value = "";
    for (const s of states) {
      const option = el("option", s);
      option.value = s;
      filter.append(option);
    }
    filter.value = states.includes(chosen) ? chosen : "";
    const tbody = byId("bots").tBodies[0];
    const rows = [];
    for (const b of bots) {
      if (filter.value && b.status !== filter.value) continue;
      const p = b.process || {};
      const tr = el("tr");
      tr.dataset.bot = b.instanceId;
      const name = el("td");
      name.append(botLink(b.instanceId));
      const r = b.restarts || {};
      tr.append(
        name, el("td", b.userId), el("td", b.poolId), stateCell(b.status),
        el("td", fmt.duration(p.uptimeSeconds)), ...processCells(p),
        el("td", r.failed ? `${r.attempts} (failed)` : r.attempts), el("td", b.strategy),
      );
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    const running = bots.filter((b) => b.status === "running").length;
    const memory = bots.reduce((sum, b) => sum + ((b.process || {}).memoryBytes || 0), 0);
    byId("bots-summary").textContent =
      `${bots.length} bots, ${running} running, ${bots.length - running} not running, ` +
      `${fmt.bytes(memory)} resident in total`;
  }

  // A saving as bytes, a negative one as what pooling costs more.
  function saved(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    return bytes < 0 ? `costs ${fmt.bytes(-bytes)}` : fmt.bytes(bytes);
  }

  function imageText(image) {
    if (!image) return "–";
    const short = image.id.replace(/^sha256:/, "").slice(0, 12);
    return `${image.ref} (${short})${image.current ? "" : ", outdated"}`;
  }

  function renderPools(status) {
    const tbody = byId("pools").tBodies[0];
    const rows = status.pools.map((p) => {
      const tr = el("tr");
      tr.dataset.pool = p.id;
      const agent = p.agent || {};
      const memory = p.memory || {};
      tr.append(
        el("td", p.id), stateCell(p.status), el("td", `${p.botsCount}/${p.capacity}`),
        el("td", `${p.utilizationPercent} %`),
        el("td", fmt.bytes(memory.runtimeBytes ?? memory.usedBytes)),
        el("td", saved(memory.savedBytes), "saved"), el("td", fmt.pct(p.cpuPercent)),
        el("td", imageText(p.image), "image"), el("td", p.freqtrade || "–", "freqtrade"),
        el("td", p.node || "–", "node"),
        el("td", agent.connected ? `connected ${agent.version || ""}` : "disconnected"),
        el("td", (p.launch || {}).mode), el("td", p.containerName),
      );
      return tr;
    });
    tbody.replaceChildren(...rows);
    const slots = status.pools.reduce((s, p) => s + p.capacity, 0);
    const used = status.pools.reduce((s, p) => s + p.botsCount, 0);
    byId("pools-summary").textContent =
      `${status.pools.length} pools, ${used} of ${slots} slots used` +
      (status.pools.length ? ` (${Math.round((100 * used) / Math.max(slots, 1))} %)` : "");
    const m = status.memorySaved;
    byId("memory-saved").textContent = !m || m.savedBytes === null
      ? "memory saved: no estimate yet"
      : `memory saved against one container per bot: ${saved(m.savedBytes)}` +
        (m.savedPercent === null ? "" : ` (${m.savedPercent} %)`) +
        ` — pools take ${fmt.bytes(m.poolsBytes)}, ${m.runningBots} running bots in ` +
        `containers of their own ${fmt.bytes(m.legacyBytes)} ` +
        `(${fmt.bytes(m.legacyContainerBytes)} each, an estimate)`;
  }

  // The latest migration and rollback runs (ftpool migrate), newest first.
  function renderRuns(runs) {
    const latest = runs.slice(-MAX_RUNS).reverse();
    byId("runs").tBodies[0].replaceChildren(...latest.map((r) => {
      const tr = el("tr");
      tr.append(
        el("td", fmt.time(new Date(r.started_at * 1000).toISOString())), el("td", r.bot),
        el("td", r.user), el("td", r.kind), stateCell(r.outcome),
        el("td", r.from_pool || r.source_container || r.source), el("td", r.to_pool || "–"),
        el("td", r.reason),
      );
      return tr;
    }));
    const going = runs.filter((r) => r.outcome === "in_progress").length;
    byId("runs-summary").textContent = runs.length
      ? `${runs.length} runs, ${going} in progress, the latest ${latest.length} shown`
      : "no migration has run";
  }

  // Rolling upgrades of the pool image: the run going on, the last ones, newest first.
  function renderUpgrades(status) {
    const when = (t) => (t ? fmt.time(new Date(t * 1000).toISOString()) : "–");
    byId("upgrades").tBodies[0].replaceChildren(...status.runs.slice().reverse().map((r) => {
      const tr = el("tr");
      tr.dataset.run = r.id;
      const pools = r.pools.map((p) => `${p.pool} ${p.step}`).join(", ");
      tr.append(el("td", when(r.started_at)), el("td", r.to_ref), stateCell(r.outcome),
        el("td", pools || "–", "pools"), el("td", r.reason));
      return tr;
    }));
    const current = status.current;
    let text;
    if (current) {
      const done = current.pools.filter((p) => p.finished_at).length;
      text = `upgrading to ${current.to_ref}: ${done} of ${current.pools.length} pools done`;
    } else if (status.runs.length) {
      const last = status.runs[status.runs.length - 1];
      text = `no upgrade running; the last one (to ${last.to_ref}) ended ${last.outcome}`;
    } else {
      text = "no upgrade has run";
    }
    if (status.poolImage) text += `; POOL_IMAGE is ${status.poolImage.ref}`;
    if (status.outdatedPools.length) {
      text += `; on another image: ${status.outdatedPools.join(", ")}`;
    }
    byId("upgrade-summary").textContent = text;
  }

  async function refreshDashboard() {
    const data = await api("GET", "/api/bots");
    bots = data.bots;
    renderBots();
    if (isAdmin) {
      renderPools(await api("GET", "/api/pool/status"));
      renderRuns((await api("GET", "/api/pool/migration/log")).runs);
      renderUpgrades(await api("GET", "/api/pool/upgrade"));
    }
  }

  // -- one bot ---------------------------------------------------------------------------

  const BOT_URL = () => `/api/bots/${encodeURIComponent(botId)}`;

  function renderBot(b) {
    const state = byId("bot-state");
    state.textContent = b.status;
    state.dataset.state = b.status;
    const p = b.process || {};
    const r = b.restarts || {};
    const facts = [
      ["user", b.userId], ["pool", b.poolId], ["port", b.port], ["strategy", b.strategy],
      ["desired", b.desired], ["pid", p.pid], ["uptime", fmt.duration(p.uptimeSeconds)],
      ["memory", p.pid ? fmt.bytes(p.memoryBytes) : null],
      ["CPU", p.pid ? fmt.pct(p.cpuPercent) : null], ["ping", p.pid ? fmt.ping(p.ping) : null],
      ["restarts", r.failed ? `${r.attempts} (failed)` : r.attempts],
    ];
    const list = byId("bot-facts");
    list.replaceChildren();
    for (const [key, value] of facts) {
      list.append(el("dt", key), el("dd", value === null || value === undefined ? "–" : value));
    }
  }

  async function refreshBot() {
    renderBot(await api("GET", BOT_URL()));
  }

  async function refreshLog() {
    const text = await api("GET", `/api/pool/bot/${encodeURIComponent(botId)}/log?bytes=${LOG_BYTES}`);
    const log = byId("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = text;
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  // A line of one figure over the hour before the latest sample, scaled to its maximum.
  function drawChart(svg, samples, value) {
    const width = 300, height = 80, ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    if (!samples.length) return;
    const end = samples[samples.length - 1].t;
    const top = Math.max(...samples.map(value)) || 1;
    const xy = samples.map((s) => [
      ((s.t - (end - 3600)) / 3600) * width, height - 2 - (value(s) / top) * (height - 4),
    ]);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
    line.setAttribute("class", "line");
    const last = document.createElementNS(ns, "circle");
    last.setAttribute("cx", xy[xy.length - 1][0].toFixed(1));
    last.setAttribute("cy", xy[xy.length - 1][1].toFixed(1));
    last.setAttribute("r", "2.5");
    svg.append(line, last);
  }

  async function refreshUsage() {
    const data = await api("GET", `/api/pool/bot/${encodeURIComponent(botId)}/usage`);
    const samples = data.samples;
    const memory = (s) => s.memoryBytes;
    const cpu = (s) => s.cpuPercent;
    drawChart(byId("chart-memory"), samples, memory);
    drawChart(byId("chart-cpu"), samples, cpu);
    const latest = samples[samples.length - 1];
    byId("memory-now").textContent = latest
      ? `${fmt.bytes(latest.memoryBytes)} (max ${fmt.bytes(Math.max(...samples.map(memory)))})`
      : "no samples yet";
    byId("cpu-now").textContent = latest
      ? `${fmt.pct(latest.cpuPercent)} (max ${fmt.pct(Math.max(...samples.map(cpu)))})`
      : "no samples yet";
  }

  async function act(action) {
    const error = byId("action-error");
    error.textContent = "";
    const question = action === "delete"
      ? `Delete ${botId}? Its directory is archived and its slot freed.`
      : `${action[0].toUpperCase()}${action.slice(1)} ${botId}?`;
    if (!window.confirm(question)) return;
    try {
      if (action === "delete") {
        await api("DELETE", BOT_URL());
        window.location.assign("/ui/");
        return;
      }
      await api("POST", `${BOT_URL()}/${action}`);
      await refreshBot();
    } catch (exc) {
      error.textContent = exc.message;
    }
  }

  // -- events ----------------------------------------------------------------------------

  function addEvent(event) {
    const list = byId("events");
    const li = el("li");
    li.dataset.type = event.type;
    li.append(el("time", fmt.time(event.timestamp)), el("span", event.type, "type"));
    if (event.poolId) li.append(el("span", event.poolId, "pool"));
    if (event.instanceId) li.append(el("span", event.instanceId, "bot"));
    if (event.reason) li.append(el("span", event.reason, "reason"));
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function follow(onEvent) {
    const live = byId("live");
    const source = new EventSource("/api/pool/events?history=50");
    source.onopen = () => {
      live.textContent = "live";
      live.dataset.state = "open";
    };
    source.onerror = () => {
      live.textContent = "reconnecting…";
      live.dataset.state = "reconnecting";
    };
    const handle = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      onEvent(event);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
  }

  // A burst of events refreshes once, and never while a refresh is still running (pool
  // status asks the runtime for each pool's figures, which can take a while with Docker).
  function debounced(fn, ms) {
    let timer = null;
    let running = false;
    let again = false;
    const run = async () => {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      try { await fn(); } catch { /* shown by the next successful refresh */ }
      running = false;
      if (again) { again = false; schedule(); }
    };
    const schedule = () => {
      if (!timer) timer = setTimeout(run, ms);
    };
    return schedule;
  }

  function start() {
    if (page === "dashboard") {
      const refresh = debounced(refreshDashboard, 200);
      byId("state-filter").addEventListener("change", renderBots);
      follow((event) => { addEvent(event); refresh(); });
      refreshDashboard().catch(() => {});
      setInterval(refresh, REFRESH_MS);
    } else if (page === "bot") {
      byId("frequi-url").textContent = `${window.location.origin}/bots/${botId}`;
      const refresh = debounced(refreshBot, 100);
      const refreshTail = debounced(refreshLog, 300);
      for (const button of document.querySelectorAll("[data-action]")) {
        button.addEventListener("click", () => act(button.dataset.action));
      }
      byId("log-refresh").addEventListener("click", () => refreshLog().catch(() => {}));
      follow((event) => {
        if (event.instanceId !== botId) return;
        addEvent(event);
        refresh();
        refreshTail();
      });
      refreshBot().catch(() => {});
      refreshLog().catch((exc) => { byId("log").textContent = `(log unavailable: ${exc.message})`; });
      refreshUsage().catch(() => {});
      setInterval(refresh, REFRESH_MS);
      setInterval(refreshTail, LOG_MS);
      setInterval(() => refreshUsage().catch(() => {}), USAGE_MS);
    }
  }

  start();
})();
