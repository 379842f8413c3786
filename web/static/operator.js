// The operator's tools: snapshots, the G-code terminal with the port, and the settings page
// (the configuration in force and the camera's exposure, white balance and focus).
"use strict";
Object.assign(partrig, (() => {
  const {$, esc, api, act, poll, fmtTime, fmtBytes, plainReason} = partrig;

  // --- snapshots -----------------------------------------------------------------------------
  async function loadSnapshots() {
    const {items} = await api("GET", "/api/snapshots");
    $("#snapshot-table tbody").innerHTML = items.slice().reverse().map((s) => `<tr data-snapshot-id="${esc(s.id)}"><td>${esc(s.id)}</td><td>${esc(fmtTime(s.created_at))}</td>` +
      `<td>${esc(s.shots)}</td><td>${esc(fmtBytes(s.bytes))}</td><td class="row">` +
      `<button type="button" data-report="${esc(s.id)}">Report</button>` +
      `<a href="/api/snapshots/${encodeURIComponent(s.id)}/archive.tar" download data-download="${esc(s.id)}">Download</a></td></tr>`).join("") ||
      "<tr><td colspan='5' class='muted'>No snapshots yet.</td></tr>";
  }
  function showReport(id, r) {
    const split = r.split || {};
    const classes = Object.keys(r.counts || {});
    const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
    const rows = classes.map((c) => {
      const by = r.counts[c] || {}, inst = (r.instances_per_class || {})[c] || {};
      const cell = (s) => `${sum(by[s])}${inst[s] !== undefined ? ` <span class="muted">(${inst[s]} inst.)</span>` : ""}`;
      return `<tr><td>${esc(c)}</td><td>${cell("train")}</td><td>${cell("val")}</td><td>${cell("test")}</td></tr>`;
    }).join("");
    const dup = r.duplicates || {};
    const imb = r.imbalance || {};
    $("#report-id").textContent = id;
    $("#report").innerHTML =
      `<p>Split by <strong>${esc(split.group_by)}</strong>${split.weaker ? " (weaker than by instance)" : ""}. ${esc(split.note || "")}</p>` +
      `<table id="report-table"><thead><tr><th>Class</th><th>Train</th><th>Val</th><th>Test</th></tr></thead><tbody>${rows}</tbody></table>` +
      `<p>Largest class ${esc(imb.largest ?? "–")}, smallest ${esc(imb.smallest ?? "–")}, ratio ${esc(imb.max_over_min ?? "–")}.</p>` +
      (Object.keys(r.dropped_classes || {}).length ? `<p>Left out (too few shots): ${esc(Object.entries(r.dropped_classes).map(([k, v]) => `${k} (${v})`).join(", "))}</p>` : "") +
      `<p class="muted">Near duplicates across splits: ${esc(typeof dup === "object" ? Object.entries(dup).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(", ") : dup)}</p>`;
    $("#report-card").hidden = false;
  }
  function snapshotsPage() {
    poll(loadSnapshots)();
    $("#snapshot-table").addEventListener("click", act(async (e) => {
      const id = e.target.dataset.report; if (!id) return;
      showReport(id, await api("GET", `/api/snapshots/${encodeURIComponent(id)}/report`));
    }));
    $("#snapshot-form").addEventListener("submit", act(async (e) => {
      e.preventDefault();
      const button = $("#snapshot-create");
      button.disabled = true;
      $("#snapshot-status").textContent = "Writing the snapshot; this can take a minute…";
      try {
        const r = await api("POST", "/api/snapshots", {
          min_per_class: Number($("#s-min").value) || 1, group_by: $("#s-group").value,
          allow_empty_splits: $("#s-allow-empty").checked,
        });
        $("#snapshot-status").textContent = `${r.manifest.id} written.`;
        await loadSnapshots();
        showReport(r.manifest.id, r.report);
      } catch (err) { $("#snapshot-status").textContent = ""; throw err; }
      finally { button.disabled = false; }
    }));
  }

  // --- the G-code terminal -------------------------------------------------------------------
  function terminalPage() {
    let last = 0;
    const box = $("#terminal-log");
    const cls = {sent: "sent", refused: "err", error: "err"};
    const prefix = {sent: "> ", reply: "< ", refused: "✗ refused: ", error: "✗ ", link: "· "};
    const refreshLog = poll(async () => {
      const r = await api("GET", `/api/terminal/log?after=${last}`);
      if (!r.lines.length) return;
      const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      box.insertAdjacentHTML("beforeend", r.lines.map((l) => `<span class="${cls[l.kind] || ""}" data-kind="${esc(l.kind)}">${esc(new Date(l.at * 1000).toLocaleTimeString())} ${esc(prefix[l.kind] || "")}${esc(l.text)}</span>\n`).join(""));
      last = r.last;
      if (atEnd) box.scrollTop = box.scrollHeight;
    });
    const refreshPort = poll(async () => {
      const [s, p] = await Promise.all([api("GET", "/api/rig/status"), api("GET", "/api/rig/port")]);
      $("#port-path").textContent = p.port || "–";
      $("#port-baud-now").textContent = p.baud || "–";
      $("#port-link").textContent = p.link + (s.simulated ? " (simulated board)" : "");
      $("#port-link").dataset.link = p.link;
      const fw = s.firmware || {};
      $("#port-firmware").textContent = p.link === "ready" ? [fw.name, fw.version, fw.dialect && `(${fw.dialect})`].filter(Boolean).join(" ") || "–" : "–";
      $("#port-resets").textContent = s.resets ?? "–";
      $("#port-fault").hidden = !s.fault; $("#port-fault").textContent = s.fault ? plainReason(s.fault) : "";
      const choice = $("#port-choice");
      if (document.activeElement !== choice) {
        const keep = choice.value || p.port;
        choice.innerHTML = p.candidates.map((c) => `<option value="${esc(c.device)}">${esc(c.device)}${c.description ? " — " + esc(c.description) : ""}${c.in_use ? " (in use)" : ""}</option>`).join("");
        choice.value = p.candidates.some((c) => c.device === keep) ? keep : p.port;
      }
      const baud = $("#port-baud");
      if (!baud.options.length) { baud.innerHTML = p.bauds.map((b) => `<option>${b}</option>`).join(""); baud.value = String(p.baud); }
      $("#port-disconnect").disabled = p.link === "closed";
    });
    refreshLog(); refreshPort();
    setInterval(refreshLog, 1000); setInterval(refreshPort, 3000);
    const history = []; let back = 0;
    $("#terminal-form").addEventListener("submit", act(async (e) => {
      e.preventDefault();
      const line = $("#terminal-line").value.trim();
      if (!line) return;
      history.push(line); back = 0;
      $("#terminal-line").value = "";
      try { await api("POST", "/api/terminal/send", {line}); } finally { await refreshLog(); }
    }));
    $("#terminal-line").addEventListener("keydown", (e) => {
      if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
      back = Math.max(0, Math.min(history.length, back + (e.key === "ArrowUp" ? 1 : -1)));
      e.target.value = back ? history[history.length - back] : "";
      e.preventDefault();
    });
    const portAction = (ask, body, url = "/api/rig/port/connect") => act(async () => {
      const question = ask();
      if (!question || !confirm(question)) return;
      const buttons = document.querySelectorAll("#port-card button");
      buttons.forEach((b) => { b.disabled = true; });
      try { await api("POST", url, body && body()); } finally { buttons.forEach((b) => { b.disabled = false; }); await refreshPort(); await refreshLog(); }
    });
    const chosen = () => $("#port-other").value.trim() || $("#port-choice").value;
    $("#port-connect").addEventListener("click", portAction(
      () => chosen() && `Connect to ${chosen()} at ${$("#port-baud").value} baud? The present port is closed first, and the turntable's position will have to be confirmed again.`,
      () => ({port: chosen(), baud: Number($("#port-baud").value)})));
    $("#port-form").addEventListener("submit", (e) => { e.preventDefault(); $("#port-connect").click(); });
    $("#reconnect").addEventListener("click", portAction(
      () => `Close and reopen ${$("#port-path").textContent}? The turntable's position will have to be confirmed again.`,
      () => ({port: $("#port-path").textContent, baud: Number($("#port-baud-now").textContent)})));
    $("#port-disconnect").addEventListener("click", portAction(
      () => "Disconnect the board? Nothing moves until a port is connected again and zero confirmed.", null, "/api/rig/port/disconnect"));
  }

  // --- settings and the camera ---------------------------------------------------------------
  const showValue = (v) => (v === null || v === undefined || v === "" ? "–" : Array.isArray(v) ? v.map((x) => (typeof x === "object" ? JSON.stringify(x) : x)).join(", ") || "–" : typeof v === "object" ? JSON.stringify(v) : String(v));
  function showSettings(r) {
    $("#settings-source").textContent = r.source ? `Read from ${r.source}.` : "Not read from a file: built-in defaults and the command line's choices.";
    $("#settings-sections").innerHTML = Object.entries(r.settings).map(([section, values]) => {
      if (typeof values !== "object" || values === null) return `<p><strong>${esc(section)}</strong>: ${esc(showValue(values))}</p>`;
      const rows = Object.entries(values).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(showValue(v))}</td></tr>`).join("");
      return `<details data-section="${esc(section)}"><summary>${esc(section)}</summary><table class="settings">${rows}</table></details>`;
    }).join("");
  }
  const CAMERA_FIELDS = [
    {key: "exposure_us", label: "Exposure (µs)", min: 100, max: 200000, step: 100},
    {key: "gain", label: "Gain", min: 1, max: 16, step: 0.1},
    {key: "wb_red", label: "White balance: red gain", min: 0.25, max: 4, step: 0.05},
    {key: "wb_blue", label: "White balance: blue gain", min: 0.25, max: 4, step: 0.05},
    {key: "focus", label: "Focus (dioptres, 0 = infinity)", min: 0, max: 15, step: 0.1},
  ];
  function showCamera(c) {
    const auto = c.auto;
    if (!c.adjustable) { $("#camera-controls").innerHTML = `<p class="muted">${esc(c.note)}</p>`; return; }
    $("#camera-controls").innerHTML =
      `<p class="muted">${esc(c.note || "")}</p>` +
      `<label><input type="checkbox" id="cam-auto" ${auto ? "checked" : ""}> automatic exposure and white balance</label>` +
      CAMERA_FIELDS.map((f) => `<label>${esc(f.label)} <input type="number" id="cam-${f.key}" data-key="${f.key}" min="${f.min}" max="${f.max}" step="${f.step}" value="${esc(c[f.key] ?? "")}" ${auto && f.key !== "focus" ? "disabled" : ""}></label>`).join("") +
      `<div class="row"><button type="button" id="cam-apply" class="primary">Apply</button><span class="muted" id="cam-status"></span></div>`;
    $("#cam-auto").addEventListener("change", () => { CAMERA_FIELDS.forEach((f) => { if (f.key !== "focus") $(`#cam-${f.key}`).disabled = $("#cam-auto").checked; }); });
    $("#cam-apply").addEventListener("click", act(async () => {
      const body = {auto: $("#cam-auto").checked};
      CAMERA_FIELDS.forEach((f) => { const v = $(`#cam-${f.key}`).value; if (v !== "") body[f.key] = Number(v); });
      const r = await api("PUT", "/api/camera/settings", body);
      showCamera(r);
      $("#cam-status").textContent = "Applied: the preview below shows the result.";
    }));
  }
  function settingsPage() {
    poll(async () => showSettings(await api("GET", "/api/settings")))();
    const img = $("#preview");
    if (img) img.src = img.dataset.src;
    (async () => {
      try { showCamera(await api("GET", "/api/camera/settings")); }
      catch (e) { $("#camera-controls").innerHTML = `<p class="muted">${esc(e.message)}</p>`; }
    })();
  }
  return {snapshotsPage, terminalPage, settingsPage};
})());
