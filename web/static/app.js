// partrig's pages: plain JavaScript, no build step, no CDN.
"use strict";
const partrig = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  function flash(msg) {
    const box = $("#flash");
    if (!box) { alert(msg); return; }
    box.textContent = msg; box.hidden = !msg;
  }

  async function api(method, url, body) {
    const opts = {method, headers: {"X-CSRF-Token": csrf()}, credentials: "same-origin"};
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);
    const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
    if (!r.ok) {
      const detail = data && data.detail;
      const text = typeof detail === "string" ? detail : JSON.stringify(detail ?? r.statusText);
      if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
      throw new Error(text);
    }
    flash("");
    return data;
  }
  const act = (fn) => async (...args) => { try { return await fn(...args); } catch (e) { flash(e.message); } };

  function fmtS(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    const m = Math.floor(s / 60), r = s % 60;
    return m ? `${m} min ${r} s` : `${r} s`;
  }

  function common() {
    $("#estop")?.addEventListener("click", act(async () => {
      const r = await api("POST", "/api/rig/estop");
      flash("EMERGENCY STOP: " + (r.fault || "fault latched") + (r.warning ? " — " + r.warning : ""));
    }));
    $("#logout")?.addEventListener("click", act(async () => { await api("POST", "/api/auth/logout"); location.href = "/login"; }));
  }
  document.addEventListener("DOMContentLoaded", common);

  // --- dashboard ---------------------------------------------------------------------------
  function showStatus(s) {
    $("#st-link").textContent = s.link + (s.simulated ? " (simulated)" : "") + ` · ${s.port}`;
    const fw = s.firmware || {};
    $("#st-firmware").textContent = [fw.name, fw.version, fw.dialect && `(${fw.dialect})`].filter(Boolean).join(" ") || "–";
    $("#st-angle").textContent = `${Number(s.angle_deg).toFixed(2)}°`;
    $("#st-lights").textContent = s.lights ? `${Math.round(s.lights * 100)} %` : "off";
    $("#st-camera").textContent = s.camera;
    $("#st-run").innerHTML = s.live_run ? `<a href="/runs/${s.live_run}">run ${s.live_run}</a> is live` : "idle";
    $("#fault-box").hidden = !s.fault;
    $("#fault-reason").textContent = s.fault || "";
  }
  function dashboard() {
    const refresh = act(async () => showStatus(await api("GET", "/api/rig/status")));
    refresh(); setInterval(refresh, 1000);
    const img = $("#preview");
    if (img) img.src = img.dataset.src;
    document.querySelectorAll("[data-jog]").forEach((b) => b.addEventListener("click", act(async () => {
      showStatus(await api("POST", "/api/rig/jog", {degrees: Number(b.dataset.jog)}));
    })));
    $("#set-zero").addEventListener("click", act(async () => showStatus(await api("POST", "/api/rig/zero"))));
    $("#lights-on").addEventListener("click", act(async () => showStatus(await api("POST", "/api/rig/lights", {level: Number($("#light-level").value)}))));
    $("#lights-off").addEventListener("click", act(async () => showStatus(await api("POST", "/api/rig/lights", {level: 0}))));
    $("#clear-fault").addEventListener("click", act(async () => {
      showStatus(await api("POST", "/api/rig/clear-fault", {zero_confirmed: $("#zero-confirmed").checked}));
      if (img) img.src = img.dataset.src + "&t=" + Date.now();
    }));
  }

  // --- runs ----------------------------------------------------------------------------------
  function formToToml() {
    const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
    const parts = list($("#f-parts").value).map((p) => {
      const [label, instance] = p.split(":").map((x) => x.trim());
      return `{ label = ${JSON.stringify(label)}, instance = ${JSON.stringify(instance || label + "-a")} }`;
    });
    return [
      `name = ${JSON.stringify($("#f-name").value || "run")}`,
      `backgrounds = [${list($("#f-backgrounds").value).map(Number).join(", ")}]`,
      `angles_per_rev = ${Number($("#f-angles").value)}`,
      `lights = [${list($("#f-lights").value).map(Number).join(", ")}]`,
      `settle_s = ${Number($("#f-settle").value)}`,
      `parts = [${parts.join(", ")}]`, "",
    ].join("\n");
  }
  function showPlanPreview(p) {
    const rows = p.shots.slice(0, 50).map((s) => `<tr><td>${esc(s.index)}</td><td>${esc(s.label)}</td><td>${esc(s.instance ?? s.instance_id)}</td><td>${esc(s.background ?? s.background_id)}</td><td>${esc(s.angle ?? s.angle_deg)}</td></tr>`).join("");
    $("#plan-preview").innerHTML = `<p id="plan-summary"><strong>${p.total}</strong> shots, estimated <strong>${fmtS(p.estimate_s)}</strong></p>` +
      `<table><thead><tr><th>#</th><th>Label</th><th>Instance</th><th>Background</th><th>Angle</th></tr></thead><tbody>${rows}</tbody></table>` +
      (p.total > 50 ? `<p class="muted">… and ${p.total - 50} more</p>` : "");
  }
  async function loadRuns() {
    const runs = await api("GET", "/api/runs");
    $("#run-table tbody").innerHTML = runs.map((r) => `<tr><td><a href="/runs/${r.id}">${r.id}</a></td><td>${esc(r.name)}</td><td class="state">${esc(r.state)}</td><td>${r.shots_done}/${r.shots_total}</td><td>${esc(r.created_at)}</td></tr>`).join("");
  }
  function runsPage() {
    act(loadRuns)();
    $("#plan-toml").value = formToToml();
    $("#form-to-toml").addEventListener("click", () => { $("#plan-toml").value = formToToml(); });
    $("#plan-file").addEventListener("change", async (e) => {
      const file = e.target.files[0]; if (file) $("#plan-toml").value = await file.text();
    });
    $("#preview-plan").addEventListener("click", act(async () => showPlanPreview(await api("POST", "/api/plans/preview", {plan_toml: $("#plan-toml").value}))));
    $("#create-run").addEventListener("click", act(async () => {
      const run = await api("POST", "/api/runs", {plan_toml: $("#plan-toml").value});
      location.href = `/runs/${run.id}`;
    }));
  }

  // --- one run -------------------------------------------------------------------------------
  const FINAL = ["completed", "aborted"];
  // NOTE: a control's HTTP answer can arrive after the SSE events that followed it; the
  // sequence number keeps a stale answer from overwriting a newer state (e.g. a prompt).
  let lastSeq = -1;
  function showRun(d) {
    if (typeof d.seq === "number") { if (d.seq < lastSeq) return; lastSeq = d.seq; }
    if (d.state) { $("#run-state").textContent = d.state; $("#run-state").dataset.state = d.state; }
    // NOTE: only some events carry progress; the others must not reset the bar to zero.
    if ("total" in d && "done" in d) {
      const total = d.total || 0, done = d.done || 0;
      const pct = total ? Math.min(100, (100 * done) / total) : 0;
      $("#bar").style.width = pct.toFixed(1) + "%";
      $("#bar").dataset.pct = Math.round(pct);
      $("#progress-text").textContent = `shot ${done} of ${total} (${Math.round(pct)} %)`;
    }
    if ("elapsed_s" in d) $("#cur-elapsed").textContent = fmtS(d.elapsed_s);
    if ("eta_s" in d) $("#cur-eta").textContent = fmtS(d.eta_s);
    if (d.reason !== undefined) $("#run-reason").textContent = d.reason || "–";
    if (d.state) {
      const prompting = d.state === "awaiting_operator" && d.prompt;
      $("#prompt-box").hidden = !prompting;
      $("#prompt-text").textContent = prompting ? d.prompt : "";
    }
    if (d.label) $("#cur-part").textContent = `${d.label} (${d.instance ?? ""}${d.pose ? ", " + d.pose : ""})`;
    if (d.background !== undefined && d.background !== null) $("#cur-bg").textContent = `sheet ${d.background}`;
    if (d.angle !== undefined && d.angle !== null) $("#cur-angle").textContent = `${Number(d.angle).toFixed(1)}°`;
  }
  async function loadRunShots(id) {
    const page = await api("GET", `/api/runs/${id}/shots?limit=60`);
    $("#run-shots").innerHTML = page.items.map(thumb).join("");
  }
  function runPage(id) {
    act(async () => { const r = await api("GET", `/api/runs/${id}`); $("#run-name").textContent = r.name; showRun(r); })();
    act(loadRunShots)(id);
    document.querySelectorAll("[data-control]").forEach((b) => b.addEventListener("click", act(async () => {
      if (b.dataset.control === "abort" && !confirm("Abort this run? Captured shots are kept.")) return;
      showRun(await api("POST", `/api/runs/${id}/${b.dataset.control}`));
    })));
    $("#answer").addEventListener("click", act(async () => { showRun(await api("POST", `/api/runs/${id}/answer`)); }));
    // NOTE: EventSource sends Last-Event-ID itself when it reconnects, so the server replays
    // exactly the events this page missed.
    const es = new EventSource(`/api/runs/${id}/events`);
    let lastRefresh = 0;
    const onEvent = (e) => {
      const ev = JSON.parse(e.data);
      showRun(Object.assign({seq: ev.seq}, ev.data || ev));
      if (ev.kind === "stored" && Date.now() - lastRefresh > 2000) { lastRefresh = Date.now(); act(loadRunShots)(id); }
      if (ev.kind === "state" && FINAL.includes(ev.data.state)) { es.close(); act(loadRunShots)(id); }
    };
    ["snapshot", "state", "shot", "stored", "info"].forEach((k) => es.addEventListener(k, onEvent));
  }

  // --- dataset -------------------------------------------------------------------------------
  const thumb = (s) => `<a class="thumb" href="/dataset/shots/${s.id}" data-shot-id="${s.id}"><img loading="lazy" src="/api/dataset/shots/${s.id}/thumb" alt="shot ${s.id}"><span>${esc(s.label)} · bg ${esc(s.background_id ?? "–")} · ${s.angle_cmd !== null && s.angle_cmd !== undefined ? Number(s.angle_cmd).toFixed(0) + "°" : ""}</span></a>`;
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  function drawBalance(stats) {
    const svg = $("#balance");
    const labels = Object.keys(stats.by_label_background);
    const bgs = Object.keys(stats.by_background);
    const max = Math.max(1, ...labels.map((l) => stats.by_label[l] || 0));
    const rowH = 22, left = 120, width = 600;
    let out = "";
    labels.forEach((l, i) => {
      let x = left; const y = i * rowH + 4;
      out += `<text x="0" y="${y + 14}" class="axis">${esc(l)}</text>`;
      bgs.forEach((b, j) => {
        const n = stats.by_label_background[l][b] || 0; if (!n) return;
        const w = (n / max) * width;
        out += `<rect x="${x}" y="${y}" width="${w}" height="${rowH - 6}" fill="${PALETTE[j % PALETTE.length]}" data-label="${esc(l)}" data-bg="${esc(b)}"><title>${esc(l)} on background ${esc(b)}: ${n}</title></rect>`;
        x += w;
      });
      out += `<text x="${x + 4}" y="${y + 14}" class="axis">${stats.by_label[l]}</text>`;
    });
    const ly = labels.length * rowH + 12;
    bgs.forEach((b, j) => { out += `<rect x="${left + j * 110}" y="${ly}" width="12" height="12" fill="${PALETTE[j % PALETTE.length]}"></rect><text x="${left + j * 110 + 16}" y="${ly + 11}" class="axis">bg ${esc(b)}</text>`; });
    svg.setAttribute("height", ly + 24);
    svg.setAttribute("viewBox", `0 0 ${left + width + 60} ${ly + 24}`);
    svg.innerHTML = out;
    $("#total").textContent = `${stats.total} shots (${stats.deleted} deleted)`;
  }
  function datasetPage() {
    let cursor = null;
    const form = $("#filters");
    const query = () => { const p = new URLSearchParams(); for (const [k, v] of new FormData(form)) if (v) p.set(k, v); return p; };
    const load = act(async (append) => {
      const p = query(); p.set("limit", "48"); if (append && cursor) p.set("cursor", cursor);
      const page = await api("GET", "/api/dataset/shots?" + p);
      const html = page.items.map(thumb).join("");
      if (append) $("#grid").insertAdjacentHTML("beforeend", html); else $("#grid").innerHTML = html || "<p class='muted'>No shots match.</p>";
      cursor = page.next_cursor; $("#more").hidden = !cursor;
    });
    act(async () => {
      const stats = await api("GET", "/api/dataset/stats");
      drawBalance(stats);
      const fill = (name, keys) => { const sel = form.elements[name]; keys.filter((k) => k !== "none").forEach((k) => sel.add(new Option(k, k))); };
      fill("label", Object.keys(stats.by_label)); fill("background", Object.keys(stats.by_background));
      fill("run", Object.keys(stats.by_run)); fill("instance", Object.keys(stats.by_instance));
    })();
    form.addEventListener("submit", (e) => { e.preventDefault(); load(false); });
    $("#more").addEventListener("click", () => load(true));
    load(false);
  }
  function shotPage(id) {
    const show = act(async () => {
      const s = await api("GET", `/api/dataset/shots/${id}`);
      $("#shot-image").src = `/api/dataset/shots/${id}/image`;
      const mask = $("#shot-mask");
      if (s.mask_path) mask.src = `/api/dataset/shots/${id}/mask`; else mask.hidden = true;
      $("#meta").innerHTML = Object.entries(s).filter(([k]) => k !== "edits").map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v)}</td></tr>`).join("");
      $("#edits").innerHTML = s.edits.map((e) => `<li>${esc(e.at)}: ${esc(e.action)} ${esc(e.old ?? "")} → ${esc(e.new ?? "")} by ${esc(e.who)}</li>`).join("") || "<li class='muted'>none</li>";
    });
    show();
    $("#show-mask").addEventListener("change", (e) => { $("#shot-mask").style.display = e.target.checked ? "" : "none"; });
    $("#relabel").addEventListener("click", act(async () => {
      const label = $("#new-label").value.trim();
      if (!label || !confirm(`Relabel shot ${id} as ${label}?`)) return;
      await api("POST", `/api/dataset/shots/${id}/relabel`, {label}); show();
    }));
    $("#delete").addEventListener("click", act(async () => {
      if (!confirm(`Delete shot ${id}? Its files move to the trash folder.`)) return;
      await api("DELETE", `/api/dataset/shots/${id}`); location.href = "/dataset";
    }));
  }

  // --- sorter --------------------------------------------------------------------------------
  const fmtCounts = (obj) => Object.entries(obj || {}).map(([k, v]) => `${esc(k)}: ${v}`).join(" · ") || "–";
  function showSorter(s) {
    $("#sorter-state").textContent = s.state; $("#sorter-state").dataset.state = s.state;
    $("#sorter-error").hidden = !s.error; $("#sorter-error").textContent = s.error || "";
    $("#sorter-model").textContent = s.model_id || s.active_model || "none active";
    $("#sorter-total").textContent = s.decisions.total;
    $("#sorter-bins").innerHTML = fmtCounts(s.decisions.by_bin);
    $("#sorter-reasons").innerHTML = fmtCounts(s.decisions.by_reason);
    $("#sorter-review").textContent = `${s.review.open} open`;
    const last = s.last_decision;
    $("#sorter-last").textContent = last ? `${last.label ?? "no model"} (${Number(last.confidence).toFixed(2)}, ${last.reason}) → bin ${last.bin}` : "–";
    const inc = s.incident;
    $("#incident-box").hidden = !(inc || s.state === "faulted");
    $("#incident-text").textContent = inc ? `${inc.kind}: ${inc.message}` : (s.fault || "");
    // NOTE: the banner shows whenever the running sorter has no model: every part goes to review.
    $("#collect-banner").hidden = !(s.state === "running" && !s.model_id);
    $("#collect-choice").hidden = Boolean(s.model_id || s.active_model);
    $("#sorter-start").disabled = !s.available || s.state === "running";
    $("#sorter-stop").disabled = !s.available || s.state !== "running";
  }
  async function loadSorterTables() {
    const d = await api("GET", "/api/sorter/decisions?limit=30");
    $("#decision-table tbody").innerHTML = d.items.map((r) => `<tr><td>${r.id}</td><td>${esc(r.at)}</td><td>${esc(r.label)}</td><td>${Number(r.confidence).toFixed(3)}</td><td>${r.bin}</td><td>${esc(r.reason)}</td><td>${esc(r.model_id ?? "–")}</td></tr>`).join("");
    const inc = await api("GET", "/api/sorter/incidents?limit=20");
    $("#incident-table tbody").innerHTML = inc.map((i) => `<tr><td>${i.id}</td><td>${esc(i.at)}</td><td>${esc(i.kind)}</td><td>${esc(i.message)}</td><td>${esc(i.acknowledged_by ?? "open")}</td></tr>`).join("");
  }
  function sorterPage() {
    const refresh = act(async () => { showSorter(await api("GET", "/api/sorter/status")); await loadSorterTables(); });
    refresh(); setInterval(refresh, 1500);
    $("#sorter-start").addEventListener("click", act(async () => showSorter(await api(
      "POST", "/api/sorter/start", {collect_for_review: $("#collect-for-review").checked}))));
    $("#sorter-stop").addEventListener("click", act(async () => showSorter(await api("POST", "/api/sorter/stop"))));
    $("#acknowledge").addEventListener("click", act(async () => { showSorter(await api("POST", "/api/sorter/acknowledge")); await loadSorterTables(); }));
  }

  // --- review queue --------------------------------------------------------------------------
  function reviewCard(item, labels) {
    const guesses = (item.top_k || []).map(([l, p]) => `${esc(l)} ${Number(p).toFixed(2)}`).join(", ");
    const buttons = labels.map((l) => `<button type="button" data-label="${esc(l)}" class="${l === item.predicted ? "primary" : ""}">${esc(l)}</button>`).join("");
    const said = item.model_id ? `${esc(item.model_id)} said ${esc(item.predicted)} (${Number(item.confidence).toFixed(2)}); top: ${guesses}` : "no model was active";
    return `<div class="card review-item" data-item-id="${item.id}"><img loading="lazy" src="/api/review/${item.id}/crop" alt="review item ${item.id}">` +
      `<p class="muted">${said}</p><div class="row">${buttons}</div>` +
      `<div class="row"><input data-other placeholder="other label" size="14" aria-label="other label"><button type="button" data-label-other>Label</button>` +
      `<button type="button" data-discard class="danger">Discard</button></div></div>`;
  }
  function reviewPage() {
    let before = null;
    const load = act(async (append) => {
      const q = new URLSearchParams({limit: "60"}); if (append && before) q.set("before_id", before);
      const page = await api("GET", "/api/review?" + q);
      const html = page.items.map((i) => reviewCard(i, page.labels)).join("");
      if (append) $("#review-items").insertAdjacentHTML("beforeend", html);
      else $("#review-items").innerHTML = html || "<p class='muted'>Nothing to review.</p>";
      $("#review-counts").textContent = `${page.counts.open} open · ${page.counts.labelled} labelled · ${page.counts.discarded} discarded`;
      before = page.next_before_id; $("#review-more").hidden = !before;
    });
    $("#review-items").addEventListener("click", act(async (e) => {
      const card = e.target.closest("[data-item-id]"); if (!card || e.target.tagName !== "BUTTON") return;
      const id = card.dataset.itemId;
      if ("discard" in e.target.dataset) await api("POST", `/api/review/${id}/discard`);
      else {
        const label = "labelOther" in e.target.dataset ? card.querySelector("[data-other]").value.trim() : e.target.dataset.label;
        if (!label) return;
        await api("POST", `/api/review/${id}/label`, {label});
      }
      card.remove();
    }));
    $("#review-more").addEventListener("click", () => load(true));
    load(false);
  }

  // --- models --------------------------------------------------------------------------------
  const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`);
  async function loadModels() {
    const m = await api("GET", "/api/models");
    $("#active-model").textContent = m.active ? `${m.active} is active` : "none active";
    $("#rollback").disabled = !m.rollback_to;
    $("#rollback-to").textContent = m.rollback_to ? `would restore ${m.rollback_to}` : "nothing to roll back to";
    $("#model-table tbody").innerHTML = m.items.map((r) => {
      const v = r.validation || {};
      const can = r.state === "validated" || r.state === "retired";
      return `<tr data-model-id="${esc(r.id)}"><td>${esc(r.id)}</td><td class="state">${esc(r.state)}</td><td>${esc(r.snapshot_id ?? "–")}</td>` +
        `<td>${pct(v.accuracy)}${v.reason ? `<br><span class="muted">${esc(v.reason)}</span>` : ""}</td><td>${pct(v.required_accuracy)}</td>` +
        `<td>${pct((r.metrics || {}).accuracy)}</td><td>${esc(r.uploaded_at)} by ${esc(r.uploaded_by ?? "–")}</td>` +
        `<td>${can ? `<button type="button" class="primary" data-activate="${esc(r.id)}">Activate</button>` : ""}</td></tr>`;
    }).join("");
    const acts = await api("GET", "/api/models/activations");
    $("#activation-table tbody").innerHTML = acts.map((a) => `<tr><td>${esc(a.at)}</td><td>${esc(a.action)}</td><td>${esc(a.model_id)}</td><td>${esc(a.previous_model_id ?? "–")}</td><td>${esc(a.who)}</td></tr>`).join("");
  }
  function modelsPage() {
    act(loadModels)();
    $("#model-table").addEventListener("click", act(async (e) => {
      const id = e.target.dataset.activate; if (!id) return;
      if (!confirm(`Make ${id} the sorter's model now?`)) return;
      await api("POST", `/api/models/${id}/activate`); await loadModels();
    }));
    $("#rollback").addEventListener("click", act(async () => {
      if (!confirm("Put the previous model back?")) return;
      await api("POST", "/api/models/rollback"); await loadModels();
    }));
  }
  return {api, dashboard, runsPage, runPage, datasetPage, shotPage, sorterPage, reviewPage, modelsPage};
})();
