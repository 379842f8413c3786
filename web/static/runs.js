// The Runs page (a plan from the form or TOML, kept in step both ways) and one run's page.
"use strict";
Object.assign(partrig, (() => {
  const {$, esc, api, act, poll, fmtS, fmtTime, runWords, plainReason} = partrig;

  // --- the plan form <-> its TOML ------------------------------------------------------------
  // NOTE: each form field owns one top-level key of the TOML text; editing a field rewrites only
  // that key's line, so whatever else the text holds (an uploaded plan's other settings) stays.
  const whole = (x) => /^-?\d+$/.test(x);
  const number = (x) => /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(x);
  const items = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const FIELDS = {
    name: {id: "f-name", what: "Name", toToml: (v) => JSON.stringify(v.trim() || "run"),
      fromToml: (t) => { const m = t.match(/^"((?:[^"\\]|\\.)*)"$/); return m ? JSON.parse(`"${m[1]}"`) : null; }},
    backgrounds: {id: "f-backgrounds", what: "Backgrounds", toToml: (v) => {
      const xs = items(v); const bad = xs.find((x) => !whole(x));
      if (!xs.length) throw new Error("give at least one sheet id, e.g. 1 or 1, 2");
      if (bad !== undefined) throw new Error(`“${bad}” is not a sheet id: use whole numbers separated by commas, e.g. 1, 2`);
      return `[${xs.map(Number).join(", ")}]`;
    }, fromToml: (t) => listFrom(t)},
    angles_per_rev: {id: "f-angles", what: "Angles per turn", toToml: (v) => {
      if (!whole(v.trim()) || Number(v) < 1 || Number(v) > 3600) throw new Error("a whole number from 1 to 3600");
      return String(Number(v));
    }, fromToml: (t) => (whole(t) ? t : null)},
    lights: {id: "f-lights", what: "Light levels", toToml: (v) => {
      const xs = items(v); const bad = xs.find((x) => !number(x) || Number(x) < 0 || Number(x) > 1);
      if (!xs.length) throw new Error("give at least one level from 0 to 1, e.g. 1.0 or 0.5, 1.0");
      if (bad !== undefined) throw new Error(`“${bad}” is not a light level: use numbers from 0 to 1 separated by commas`);
      return `[${xs.map(Number).join(", ")}]`;
    }, fromToml: (t) => listFrom(t)},
    settle_s: {id: "f-settle", what: "Settle", toToml: (v) => {
      if (!number(v.trim()) || Number(v) < 0) throw new Error("seconds, 0 or more, e.g. 0.2");
      return String(Number(v));
    }, fromToml: (t) => (number(t) ? t : null)},
    parts: {id: "f-parts", what: "Parts", toToml: (v) => {
      const ps = items(v).map((p) => {
        const [label, instance] = p.split(":").map((x) => x.trim());
        if (!label) throw new Error(`“${p}” has no label: write label:instance, e.g. brick-2x4-red:brick-2x4-red-a`);
        return `{ label = ${JSON.stringify(label)}, instance = ${JSON.stringify(instance || label + "-a")} }`;
      });
      if (!ps.length) throw new Error("give at least one part as label:instance");
      return `[${ps.join(", ")}]`;
    }, fromToml: (t) => {
      if (!/^\[.*\]$/.test(t)) return null;
      const out = [];
      for (const m of t.matchAll(/\{([^}]*)\}/g)) {
        const label = m[1].match(/label\s*=\s*"([^"]*)"/), inst = m[1].match(/instance\s*=\s*"([^"]*)"/);
        if (!label) return null;
        out.push(inst ? `${label[1]}:${inst[1]}` : label[1]);
      }
      return out.join(", ");
    }},
  };
  function listFrom(t) { const m = t.match(/^\[(.*)\]$/); return m ? items(m[1]).join(", ") : null; }
  const keyLine = (key) => new RegExp(`^${key}\\s*=\\s*(.*?)\\s*$`, "m");

  function fieldError(f, msg) {
    const el = $(`#err-${f.id}`);
    el.textContent = msg ? `${f.what}: ${msg}` : ""; el.hidden = !msg;
    $(`#${f.id}`).setAttribute("aria-invalid", msg ? "true" : "false");
  }
  /** The form's field `key` into the TOML text (only that key's line); false if invalid. */
  function formToToml(key) {
    const f = FIELDS[key];
    let value;
    try { value = f.toToml($(`#${f.id}`).value); } catch (e) { fieldError(f, e.message); return false; }
    fieldError(f, "");
    const box = $("#plan-toml");
    const line = `${key} = ${value}`;
    box.value = keyLine(key).test(box.value) ? box.value.replace(keyLine(key), line) : (box.value.replace(/\s*$/, "\n") + line + "\n").replace(/^\n/, "");
    return true;
  }
  /** The TOML text into every form field it can show; says which ones it cannot. */
  function tomlToForm() {
    const text = $("#plan-toml").value;
    const unshown = [];
    for (const [key, f] of Object.entries(FIELDS)) {
      const m = text.match(keyLine(key));
      const value = m ? f.fromToml(m[1]) : null;
      if (value === null) { if (m) unshown.push(f.what); continue; }
      if (document.activeElement !== $(`#${f.id}`)) $(`#${f.id}`).value = value;
      fieldError(f, "");
    }
    $("#form-note").textContent = unshown.length ? `The form cannot show ${unshown.join(", ")} as written in the text; edit them there.` : "";
  }
  function showPlanPreview(p) {
    const rows = p.shots.slice(0, 50).map((s) => `<tr><td>${esc(s.index)}</td><td>${esc(s.label)}</td><td>${esc(s.instance ?? s.instance_id)}</td><td>${esc(s.background ?? s.background_id)}</td><td>${esc(s.angle ?? s.angle_deg)}</td></tr>`).join("");
    $("#plan-preview").innerHTML = `<p id="plan-summary"><strong>${p.total}</strong> shots, estimated <strong>${fmtS(p.estimate_s)}</strong></p>` +
      `<div class="scroll-x"><table><thead><tr><th>#</th><th>Label</th><th>Instance</th><th>Background</th><th>Angle</th></tr></thead><tbody>${rows}</tbody></table></div>` +
      (p.total > 50 ? `<p class="muted">… and ${p.total - 50} more</p>` : "");
  }
  async function loadRuns() {
    const runs = await api("GET", "/api/runs");
    $("#run-table tbody").innerHTML = runs.map((r) => `<tr><td><a href="/runs/${r.id}">${r.id}</a></td><td>${esc(r.name)}</td><td class="state" data-state="${esc(r.state)}">${esc(runWords(r.state))}</td><td>${r.shots_done ?? r.done ?? 0}/${r.shots_total ?? r.total ?? 0}</td><td>${esc(fmtTime(r.created_at))}</td></tr>`).join("") ||
      "<tr><td colspan='5' class='muted'>No runs yet.</td></tr>";
  }
  function runsPage() {
    poll(loadRuns)();
    $("#plan-toml").value = "";
    Object.keys(FIELDS).forEach(formToToml);
    for (const [key, f] of Object.entries(FIELDS)) $(`#${f.id}`).addEventListener("input", () => formToToml(key));
    $("#plan-toml").addEventListener("input", tomlToForm);
    $("#plan-file").addEventListener("change", async (e) => {
      const file = e.target.files[0]; if (file) { $("#plan-toml").value = await file.text(); tomlToForm(); }
    });
    const invalid = () => Object.values(FIELDS).filter((f) => !$(`#err-${f.id}`).hidden).map((f) => f.what);
    const check = () => { const bad = invalid(); if (bad.length) throw new Error(`Fix ${bad.join(", ")} in the form first.`); };
    $("#preview-plan").addEventListener("click", act(async () => { check(); showPlanPreview(await api("POST", "/api/plans/preview", {plan_toml: $("#plan-toml").value})); }));
    $("#create-run").addEventListener("click", act(async () => {
      check();
      const run = await api("POST", "/api/runs", {plan_toml: $("#plan-toml").value});
      location.href = `/runs/${run.id}`;
    }));
  }

  // --- one run -------------------------------------------------------------------------------
  const FINAL = ["completed", "aborted"];
  const ACTIVE = ["running", "awaiting_operator", "paused"];
  //: Which controls each state allows (capture/runs/state.py's transitions).
  const ALLOWED = {
    pending: ["start", "abort"], running: ["pause", "abort"], awaiting_operator: ["abort"],
    paused: ["resume", "abort"], interrupted: ["resume", "abort"], failed: ["resume", "abort"],
    completed: [], aborted: [],
  };
  // NOTE: a control's HTTP answer can arrive after the SSE events that followed it; the
  // sequence number keeps a stale answer from overwriting a newer state (e.g. a prompt).
  let lastSeq = -1;
  let state = null;
  let known = {done: 0, total: 0};
  function showControls() {
    const ok = ALLOWED[state] || [];
    document.querySelectorAll("[data-control]").forEach((b) => { b.disabled = !ok.includes(b.dataset.control); });
    const restart = state === "interrupted" || state === "failed";
    $("[data-control=resume]").textContent = restart ? "Resume from the first missing shot" : "Resume";
  }
  function showProgress(done, total) {
    known = {done, total};
    const pct = total ? Math.min(100, (100 * done) / total) : 0;
    $("#bar").style.width = pct.toFixed(1) + "%";
    $("#bar").dataset.pct = Math.round(pct);
    $("#progress-text").textContent = total ? `shot ${done} of ${total} (${Math.round(pct)} %)` : "no shots yet";
  }
  function showRun(d, kind) {
    if (typeof d.seq === "number") { if (d.seq < lastSeq) return; lastSeq = d.seq; }
    if (d.state) {
      state = d.state;
      $("#run-state").textContent = runWords(d.state); $("#run-state").dataset.state = d.state;
      showControls();
    }
    // NOTE: only some events carry progress; the others must not reset the bar.  A run this
    // process has only just loaded (after a restart) snapshots zeros: the stored totals win.
    if ("total" in d && "done" in d) {
      const total = d.total || 0, done = d.done || 0;
      const stale = kind === "snapshot" && known.total > 0 && (total === 0 || done < known.done);
      if (!stale) showProgress(done, total);
    }
    if ("elapsed_s" in d && d.elapsed_s !== null) $("#cur-elapsed").textContent = fmtS(d.elapsed_s);
    if ("eta_s" in d) $("#cur-eta").textContent = d.eta_s === null ? "–" : fmtS(d.eta_s);
    // NOTE: an ETA means something only while the run can still progress.
    $("#eta-row").hidden = !ACTIVE.includes(state);
    if (d.reason !== undefined) $("#run-reason").textContent = d.reason ? plainReason(d.reason) : "–";
    if (d.state) {
      const prompting = d.state === "awaiting_operator" && d.prompt;
      $("#prompt-box").hidden = !prompting;
      $("#prompt-text").textContent = prompting ? d.prompt : "";
    }
    if (d.label) $("#cur-part").textContent = `${d.label} (${d.instance ?? ""}${d.pose ? ", " + d.pose : ""})`;
    if (d.background !== undefined && d.background !== null) $("#cur-bg").textContent = `sheet ${d.background}`;
    if (d.angle !== undefined && d.angle !== null) $("#cur-angle").textContent = `${Number(d.angle).toFixed(1)}°`;
  }

  // The run's shots, newest first: the newest page is refreshed as shots arrive, "More" pages
  // back through all of them.
  function runShots(id) {
    const shown = new Set();
    let cursor = null;
    const counter = () => { $("#run-shots-count").textContent = shown.size ? `${shown.size} shown` : "none yet"; };
    const newest = poll(async () => {
      const page = await api("GET", `/api/runs/${id}/shots?limit=60`);
      const fresh = page.items.filter((s) => !shown.has(s.id));
      fresh.forEach((s) => shown.add(s.id));
      $("#run-shots").insertAdjacentHTML("afterbegin", fresh.map(partrig.thumb).join(""));
      if (cursor === null && shown.size === page.items.length) cursor = page.next_cursor;
      $("#run-shots-more").hidden = !cursor; counter();
    });
    const older = act(async () => {
      if (!cursor) return;
      const page = await api("GET", `/api/runs/${id}/shots?limit=60&cursor=${encodeURIComponent(cursor)}`);
      const fresh = page.items.filter((s) => !shown.has(s.id));
      fresh.forEach((s) => shown.add(s.id));
      $("#run-shots").insertAdjacentHTML("beforeend", fresh.map(partrig.thumb).join(""));
      cursor = page.next_cursor; $("#run-shots-more").hidden = !cursor; counter();
    });
    $("#run-shots-more").addEventListener("click", older);
    return newest;
  }
  function runPage(id) {
    const img = $("#preview");
    if (img) img.src = img.dataset.src;
    poll(async () => { const r = await api("GET", `/api/runs/${id}`); $("#run-name").textContent = r.name; showRun(r, "get"); })();
    const refreshShots = runShots(id);
    refreshShots();
    document.querySelectorAll("[data-control]").forEach((b) => b.addEventListener("click", act(async () => {
      if (b.dataset.control === "abort" && !confirm("Abort this run? Captured shots are kept.")) return;
      showRun(await api("POST", `/api/runs/${id}/${b.dataset.control}`), "control");
    })));
    $("#answer").addEventListener("click", act(async () => { showRun(await api("POST", `/api/runs/${id}/answer`), "control"); }));
    // NOTE: EventSource sends Last-Event-ID itself when it reconnects, so the server replays
    // exactly the events this page missed.
    const es = new EventSource(`/api/runs/${id}/events`);
    let lastRefresh = 0;
    const onEvent = (e) => {
      const ev = JSON.parse(e.data);
      showRun(Object.assign({seq: ev.seq}, ev.data || ev), e.type);
      if (ev.kind === "stored" && Date.now() - lastRefresh > 2000) { lastRefresh = Date.now(); refreshShots(); }
      if (ev.kind === "state" && FINAL.includes(ev.data.state)) { es.close(); refreshShots(); }
    };
    ["snapshot", "state", "shot", "stored", "info"].forEach((k) => es.addEventListener(k, onEvent));
  }
  return {runsPage, runPage};
})());
