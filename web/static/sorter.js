// The sorter, its review queue, and the models it can sort with.
"use strict";
Object.assign(partrig, (() => {
  const {$, esc, api, act, poll, fmtTime, plainReason, sorterWords, modelWords} = partrig;

  // --- sorter --------------------------------------------------------------------------------
  const fmtCounts = (obj) => Object.entries(obj || {}).map(([k, v]) => `${esc(k.replace(/_/g, " "))}: ${v}`).join(" · ") || "–";
  function showSorter(s) {
    $("#sorter-state").textContent = sorterWords(s.state); $("#sorter-state").dataset.state = s.state;
    $("#sorter-error").hidden = !s.error; $("#sorter-error").textContent = s.error ? plainReason(s.error) : "";
    const model = s.model_id || s.active_model;
    $("#sorter-model").textContent = model || "none active";
    $("#sorter-total").textContent = s.decisions.total;
    $("#sorter-bins").innerHTML = fmtCounts(s.decisions.by_bin);
    $("#sorter-reasons").innerHTML = fmtCounts(s.decisions.by_reason);
    $("#sorter-reasons").dataset.reasons = Object.keys(s.decisions.by_reason || {}).join(" ");
    $("#sorter-review").textContent = `${s.review.open} open`;
    const last = s.last_decision;
    $("#sorter-last").textContent = last ? `${last.label ?? "no model"} (${Number(last.confidence).toFixed(2)}, ${String(last.reason).replace(/_/g, " ")}) → bin ${last.bin}` : "–";
    const inc = s.incident;
    $("#incident-box").hidden = !(inc || s.state === "faulted");
    $("#incident-text").textContent = inc ? `${String(inc.kind).replace(/^sorter_/, "").replace(/_/g, " ")}: ${plainReason(inc.message)}` : plainReason(s.fault || "");
    // NOTE: the banner shows whenever the running sorter has no model: every part goes to review.
    $("#collect-banner").hidden = !(s.state === "running" && !s.model_id);
    $("#no-model-banner").hidden = Boolean(model) || s.state === "running";
    $("#collect-choice").hidden = Boolean(model);
    const needsChoice = !model && !$("#collect-for-review").checked;
    $("#sorter-start").disabled = !s.available || s.state === "running" || s.state === "faulted" || needsChoice;
    $("#sorter-stop").disabled = !s.available || s.state !== "running";
  }
  async function loadSorterTables() {
    const d = await api("GET", "/api/sorter/decisions?limit=30");
    $("#decision-table tbody").innerHTML = d.items.map((r) => `<tr><td>${r.id}</td><td>${esc(fmtTime(r.at))}</td><td>${esc(r.label ?? "–")}</td><td>${Number(r.confidence).toFixed(3)}</td><td>${r.bin}</td><td>${esc(String(r.reason).replace(/_/g, " "))}</td><td>${esc(r.model_id ?? "–")}</td></tr>`).join("");
    const inc = await api("GET", "/api/sorter/incidents?limit=20");
    $("#incident-table tbody").innerHTML = inc.map((i) => `<tr><td>${i.id}</td><td>${esc(fmtTime(i.at))}</td><td>${esc(String(i.kind).replace(/^sorter_/, "").replace(/_/g, " "))}</td><td>${esc(plainReason(i.message))}</td><td>${esc(i.acknowledged_by ?? "open")}</td></tr>`).join("");
  }
  // --- the feeder view: the sorter's own frames, never a second grab of its camera ----------
  let shownNewest = null;
  function showFeeder(f) {
    const part = $("#feeder-part");
    part.textContent = f.state !== "running" ? "not sorting" : f.part_in_view ? (f.phase === "leaving" ? "part sorted, leaving" : "part in view") : "platform empty";
    part.dataset.inView = String(Boolean(f.part_in_view));
    $("#feeder-view").hidden = !f.frame; $("#feeder-none").hidden = Boolean(f.frame);
    $("#feeder-bins").innerHTML = fmtCounts(Object.fromEntries(Object.entries(f.by_bin || {}).map(([b, n]) => [`bin ${b}`, n])));
    const newest = f.recent.length ? f.recent[0].number : null;
    if (newest === shownNewest) return;
    shownNewest = newest;
    $("#feeder-recent").innerHTML = f.recent.map((d) => `<li data-number="${d.number}"><img src="${esc(d.crop)}" alt="part ${d.number}" loading="lazy">` +
      `${esc(d.label ?? "to review")} → <strong>bin ${d.bin}</strong><br><span class="muted">${Number(d.confidence).toFixed(2)} · ${esc(String(d.reason).replace(/_/g, " "))}</span></li>`).join("") ||
      "<li class='muted'>No part sorted since start-up.</li>";
  }
  function feederStream() {
    const img = $("#feeder-view");
    // NOTE: the stream is dropped while the tab is hidden, so the server encodes nothing for it.
    const start = async () => {
      if (document.hidden) return;
      const t = await api("GET", "/api/rig/preview-token");
      img.src = `/api/sorter/feeder/stream.mjpg?token=${encodeURIComponent(t.token)}`;
    };
    document.addEventListener("visibilitychange", () => { if (document.hidden) img.removeAttribute("src"); else start().catch(() => {}); });
    img.addEventListener("error", () => { if (img.getAttribute("src")) setTimeout(() => start().catch(() => {}), 3000); });
    start().catch(() => {});
  }
  function sorterPage() {
    let last = null;
    if ($("#feeder")) {
      const feeder = poll(async () => {
        let f;
        try { f = await api("GET", "/api/sorter/feeder"); } catch (e) {
          if (e.status !== 503) throw e;  // no sorter on this rig: say so in place, not as an error banner
          $("#feeder-none").textContent = e.message; $("#feeder-none").hidden = false; $("#feeder-view").hidden = true; return;
        }
        showFeeder(f);
      });
      feeder(); setInterval(feeder, 1000); feederStream();
    }
    const refresh = poll(async () => { last = await api("GET", "/api/sorter/status"); showSorter(last); await loadSorterTables(); });
    refresh(); setInterval(refresh, 1500);
    $("#collect-for-review").addEventListener("change", () => { if (last) showSorter(last); });
    $("#sorter-start").addEventListener("click", act(async () => { last = await api(
      "POST", "/api/sorter/start", {collect_for_review: $("#collect-for-review").checked}); showSorter(last); }));
    $("#sorter-stop").addEventListener("click", act(async () => { last = await api("POST", "/api/sorter/stop"); showSorter(last); }));
    $("#acknowledge").addEventListener("click", act(async () => { last = await api("POST", "/api/sorter/acknowledge"); showSorter(last); await loadSorterTables(); }));
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
        if (!label) throw new Error("Type the label first.");
        try { await api("POST", `/api/review/${id}/label`, {label}); } catch (err) {
          // NOTE: a label outside the parts catalogue needs a yes: on a new rig every label is new.
          if (err.status !== 409 || !/catalogue/.test(err.message) || !confirm(`"${label}" is not in the parts catalogue yet. Add it as a new part?`)) throw err;
          await api("POST", `/api/review/${id}/label`, {label, confirm_new: true});
        }
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
      return `<tr data-model-id="${esc(r.id)}"><td>${esc(r.id)}</td><td class="state" data-state="${esc(r.state)}">${esc(modelWords(r.state))}</td><td>${esc(r.snapshot_id ?? "–")}</td>` +
        `<td>${pct(v.accuracy)}${v.reason ? `<br><span class="muted">${esc(plainReason(v.reason))}</span>` : ""}</td><td>${pct(v.required_accuracy)}</td>` +
        `<td>${pct((r.metrics || {}).accuracy)}</td><td>${esc(fmtTime(r.uploaded_at))} by ${esc(r.uploaded_by ?? "–")}</td>` +
        `<td>${can ? `<button type="button" class="primary" data-activate="${esc(r.id)}">Activate</button>` : ""}</td></tr>`;
    }).join("") || "<tr><td colspan='8' class='muted'>No models yet.</td></tr>";
    const acts = await api("GET", "/api/models/activations");
    $("#activation-table tbody").innerHTML = acts.map((a) => `<tr><td>${esc(fmtTime(a.at))}</td><td>${esc(a.action)}</td><td>${esc(a.model_id)}</td><td>${esc(a.previous_model_id ?? "–")}</td><td>${esc(a.who)}</td></tr>`).join("");
  }
  function modelsPage() {
    poll(loadModels)();
    $("#model-table").addEventListener("click", act(async (e) => {
      const id = e.target.dataset.activate; if (!id) return;
      if (!confirm(`Make ${id} the sorter's model now?`)) return;
      await api("POST", `/api/models/${id}/activate`); await loadModels();
    }));
    $("#rollback").addEventListener("click", act(async () => {
      if (!confirm("Put the previous model back?")) return;
      await api("POST", "/api/models/rollback"); await loadModels();
    }));
    $("#upload-model")?.addEventListener("submit", act(async (e) => {
      e.preventDefault();
      const files = $("#model-files").files;
      if (!files.length) throw new Error("Choose the model's files first (model.tflite, labels.txt, metrics.json).");
      const body = new FormData();
      for (const f of files) body.append("files", f, f.name);
      $("#upload-status").textContent = "Uploading and checking the model on this rig…";
      try {
        const r = await api("POST", "/api/models", body);
        const v = r.validation || {};
        $("#upload-status").textContent = `${r.id}: ${modelWords(r.state)}` + (v.reason ? ` — ${plainReason(v.reason)}` : "");
      } catch (err) { $("#upload-status").textContent = ""; throw err; }
      $("#model-files").value = "";
      await loadModels();
    }));
  }
  return {sorterPage, reviewPage, modelsPage};
})());
