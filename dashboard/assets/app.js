// raftswarm dashboard: a snapshot, then diffs, over server-sent events.
// Every string shown comes from users or workers: the DOM is built with
// createElement and textContent only, never parsed as markup.
"use strict";
(function () {
  const nodes = new Map();      // id -> node
  const services = new Map();   // id -> service
  const tasks = new Map();      // id -> task
  const byNode = new Map();     // node id ("" = unassigned) -> Set of task ids

  // What changed since the last paint.
  let rebuild = true;           // the set of nodes changed: rebuild columns and rows
  let servicesDirty = true;
  const dirtyNodes = new Set();
  let meta = {};
  let frame = 0;

  const cols = new Map();       // node id -> grid column element
  const rows = new Map();       // node id -> nodes table row

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function badge(text) {
    const b = el("span", "badge " + String(text).replace(/[^a-z_]/g, ""), text);
    return b;
  }
  function hue(s) {
    let h = 0;
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
    return h % 360;
  }
  function bytes(n) {
    if (!n) return "";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + u[i];
  }
  function short(id) { return String(id).slice(0, 12); }

  function indexTask(t, add) {
    const k = t.node || "";
    let s = byNode.get(k);
    if (add) {
      if (!s) { s = new Set(); byNode.set(k, s); }
      s.add(t.id);
    } else if (s) {
      s.delete(t.id);
    }
    dirtyNodes.add(k);
  }
  function putTask(t) {
    const old = tasks.get(t.id);
    if (old) indexTask(old, false);
    tasks.set(t.id, t);
    indexTask(t, true);
  }
  function delTask(id) {
    const old = tasks.get(id);
    if (!old) return;
    indexTask(old, false);
    tasks.delete(id);
  }

  function onSnapshot(m) {
    nodes.clear(); services.clear(); tasks.clear(); byNode.clear();
    for (const n of m.nodes || []) nodes.set(n.id, n);
    for (const s of m.services || []) services.set(s.id, s);
    for (const t of m.tasks || []) putTask(t);
    meta = m.meta || {};
    rebuild = true; servicesDirty = true;
    schedule();
  }
  function onDiff(m) {
    meta = m.meta || meta;
    for (const n of m.nodes || []) {
      if (!nodes.has(n.id)) rebuild = true;
      const old = nodes.get(n.id);
      if (old && old.host !== n.host) rebuild = true; // order is by hostname
      nodes.set(n.id, n);
      dirtyNodes.add(n.id);
    }
    for (const id of m.delNodes || []) { nodes.delete(id); rebuild = true; }
    const restyle = new Set();
    for (const s of m.services || []) {
      const old = services.get(s.id);
      // Task cells show their service's name and whether they run its
      // current spec: repaint the columns holding its tasks.
      if (old && (old.name !== s.name || old.specVersion !== s.specVersion)) restyle.add(s.id);
      services.set(s.id, s);
    }
    if (restyle.size) {
      for (const t of tasks.values()) if (restyle.has(t.svc)) dirtyNodes.add(t.node || "");
    }
    for (const id of m.delServices || []) { services.delete(id); rebuild = true; }
    for (const t of m.tasks || []) putTask(t);
    for (const id of m.delTasks || []) delTask(id);
    servicesDirty = true;
    schedule();
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(paint);
  }

  // For the benchmark (BENCHMARKS.md), in ms since navigation: when the
  // snapshot came and the last paint was on screen; how long parsing and
  // the last DOM update took.
  const timing = window.dashboardTiming = { snapshotAt: 0, parse: 0, paint: 0, renderedAt: 0, renders: 0 };

  function paint() {
    const t0 = performance.now();
    paintDOM();
    timing.paint = performance.now() - t0;
    // The next frame starts once this one is laid out and painted.
    requestAnimationFrame(() => { timing.renderedAt = performance.now(); timing.renders++; });
  }

  function paintDOM() {
    frame = 0;
    paintHeader();
    if (servicesDirty) paintServices();
    if (rebuild) {
      paintAllNodes();
    } else {
      for (const id of dirtyNodes) paintNode(id);
    }
    rebuild = false; servicesDirty = false; dirtyNodes.clear();
    document.body.dataset.index = String(meta.index || 0);
    document.body.dataset.tasks = String(tasks.size);
    document.body.dataset.paints = String(Number(document.body.dataset.paints || 0) + 1);
  }

  function paintHeader() {
    const src = document.getElementById("source");
    const notice = document.getElementById("notice");
    if (!meta.available) {
      src.textContent = "";
      notice.hidden = false;
      notice.textContent = meta.message || "no data";
    } else {
      notice.hidden = !!meta.leader;
      notice.textContent = meta.leader ? "" :
        "Served by a follower manager: read-only and possibly a moment behind the leader.";
      src.textContent = "served by " + short(meta.nodeId) + (meta.leader ? " (leader)" : " (follower)") +
        " · cluster " + short(meta.cluster || "") + " · raft index " + meta.index;
    }
    let ready = 0;
    for (const n of nodes.values()) if (n.status === "ready") ready++;
    document.getElementById("counts").textContent =
      nodes.size + " nodes (" + ready + " ready) · " + services.size + " services · " + tasks.size + " tasks";
  }

  function paintServices() {
    // running / up to date, per service
    const running = new Map(), current = new Map(), live = new Map();
    for (const t of tasks.values()) {
      const s = services.get(t.svc);
      if (t.desired === "running") live.set(t.svc, (live.get(t.svc) || 0) + 1);
      if (t.state !== "running") continue;
      running.set(t.svc, (running.get(t.svc) || 0) + 1);
      if (s && t.v === s.specVersion) current.set(t.svc, (current.get(t.svc) || 0) + 1);
    }
    const list = Array.from(services.values()).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const body = document.querySelector("#services tbody");
    const frag = document.createDocumentFragment();
    for (const s of list) {
      const tr = el("tr");
      tr.dataset.serviceName = s.name;
      tr.append(el("td", "", s.name), el("td", "", s.mode), el("td", "muted", s.image));
      const desired = s.mode === "global" ? (live.get(s.id) || 0) : s.replicas;
      const rep = el("td", "", (running.get(s.id) || 0) + "/" + desired);
      rep.dataset.field = "replicas";
      tr.append(rep);
      const up = el("td");
      if (s.update) up.append(badge(s.update));
      if (s.updateMsg) up.append(" ", el("span", "muted", s.updateMsg));
      up.dataset.field = "update";
      tr.append(up);
      const pr = el("td");
      if (s.update === "updating" || s.update === "rollback_started") {
        const done = current.get(s.id) || 0;
        const bar = el("span", "progress");
        const fill = el("span");
        fill.style.width = (desired ? Math.min(100, Math.round(100 * done / desired)) : 0) + "%";
        bar.append(fill);
        pr.append(bar, done + "/" + desired + " updated");
      }
      pr.dataset.field = "progress";
      tr.append(pr);
      frag.append(tr);
    }
    body.replaceChildren(frag);
  }

  function sortedNodes() {
    return Array.from(nodes.values()).sort((a, b) =>
      a.host < b.host ? -1 : a.host > b.host ? 1 : (a.id < b.id ? -1 : 1));
  }

  function paintAllNodes() {
    cols.clear(); rows.clear();
    seen.disconnect(); // the old columns are about to go
    const grid = document.getElementById("grid");
    const body = document.querySelector("#nodes tbody");
    const gf = document.createDocumentFragment(), bf = document.createDocumentFragment();
    const list = sortedNodes();
    if ((byNode.get("") || new Set()).size) {
      const c = el("div", "col");
      cols.set("", c);
      fillColumn(c, "");
      gf.append(c);
    }
    for (const n of list) {
      const c = el("div", "col");
      c.dataset.nodeId = n.id;
      cols.set(n.id, c);
      fillColumn(c, n.id);
      gf.append(c);
      const tr = el("tr");
      tr.dataset.nodeId = n.id;
      rows.set(n.id, tr);
      fillRow(tr, n);
      bf.append(tr);
    }
    grid.replaceChildren(gf);
    body.replaceChildren(bf);
  }

  function paintNode(id) {
    if (id === "" && !cols.has("")) { rebuild = true; paintAllNodes(); return; }
    const c = cols.get(id);
    if (c) fillColumn(c, id);
    const tr = rows.get(id), n = nodes.get(id);
    if (tr && n) fillRow(tr, n);
  }

  // Columns are filled once they come near the screen.
  const seen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      const c = e.target;
      seen.unobserve(c);
      c.dataset.seen = "1";
      c.style.minHeight = "";
      fillColumn(c, c.dataset.nodeId || "");
    }
  }, { rootMargin: "400px" });

  function fillColumn(c, id) {
    const n = nodes.get(id);
    const head = el("div", "head");
    if (n) {
      head.append(badge(n.status), document.createTextNode(n.host));
      head.title = n.host + " (" + n.id + ")";
      head.append(el("span", "sub", n.role + " · " + n.avail));
      c.classList.toggle("down", n.status !== "ready");
    } else {
      head.textContent = "unassigned";
    }
    const ids = Array.from(byNode.get(id) || []);
    if (!c.dataset.seen) {
      // Off screen so far: the head and a count stand in for the tasks
      // until the column scrolls into view (a thousand nodes' worth of task
      // cells would cost the first load most of its time).
      c.replaceChildren(head, el("div", "task pending", ids.length + " tasks"));
      c.style.minHeight = (2.6 + 1.55 * ids.length) + "em";
      seen.observe(c);
      return;
    }
    const ts = ids.map((i) => tasks.get(i)).filter(Boolean);
    const name = (t) => (services.get(t.svc) || {}).name || short(t.svc);
    ts.sort((a, b) => {
      const x = name(a), y = name(b);
      return x < y ? -1 : x > y ? 1 : a.slot - b.slot;
    });
    const frag = document.createDocumentFragment();
    frag.append(head);
    for (const t of ts) {
      const svc = services.get(t.svc);
      const stale = svc && t.v !== svc.specVersion; // not updated yet
      const d = el("div", "task" + (t.state === "running" ? "" : " notrunning") + (stale ? " stale" : ""),
        name(t) + (t.slot ? "." + t.slot : "") + (t.state === "running" ? "" : " (" + t.state + ")"));
      d.title = t.id + " · " + t.state + (stale ? " · previous spec" : "");
      d.style.setProperty("--c", "hsl(" + hue(t.svc) + " 60% 45%)");
      d.dataset.taskId = t.id;
      frag.append(d);
    }
    c.replaceChildren(frag);
  }

  function fillRow(tr, n) {
    const st = el("td");
    st.append(badge(n.status));
    st.dataset.field = "status";
    if (n.msg) st.title = n.msg;
    const labels = Object.keys(n.labels || {}).sort().map((k) => k + "=" + n.labels[k]).join(", ");
    const av = el("td"); av.append(badge(n.avail));
    tr.replaceChildren(el("td", "", n.host), el("td", "muted", short(n.id)), st, el("td", "", n.role), av,
      el("td", "", n.cpus ? n.cpus.toFixed(2).replace(/\.?0+$/, "") : ""), el("td", "", bytes(n.mem)),
      el("td", "", (byNode.get(n.id) || new Set()).size), el("td", "labels", labels));
  }

  function connect() {
    const conn = document.getElementById("conn");
    const es = new EventSource("events");
    es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "badge live"; });
    es.addEventListener("snapshot", (e) => {
      const t0 = performance.now();
      onSnapshot(JSON.parse(e.data));
      timing.snapshotAt = t0; timing.parse = performance.now() - t0;
    });
    es.addEventListener("diff", (e) => onDiff(JSON.parse(e.data)));
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (a rotated token, or the manager went away): say so.
        conn.textContent = "offline"; conn.className = "badge offline";
        const notice = document.getElementById("notice");
        notice.hidden = false;
        notice.textContent = "Disconnected. If the dashboard token was rotated, reload the page to log in again.";
      } else {
        conn.textContent = "reconnecting…"; conn.className = "badge pending";
      }
    });
  }
  connect();
})();
