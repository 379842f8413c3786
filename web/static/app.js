// partrig's pages: plain JavaScript, no build step, no CDN.  This file is the core every page
// loads (API calls, messages, words for states, the status strip, the e-stop); each page adds
// its own module (dashboard.js, runs.js, ...) onto the same `partrig` object.
"use strict";
const partrig = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  // NOTE: a message stays until the operator dismisses it or a newer one replaces it; a poll
  // that succeeds never clears it (the refusal must still be readable when they look up).
  function flash(msg, kind = "error") {
    const box = $("#flash");
    if (!box) { if (msg) alert(msg); return; }
    $("#flash-text").textContent = msg || "";
    box.className = `banner ${kind}`;
    box.hidden = !msg;
  }

  /** A reason in words: "PositionLost: the table ..." → "the table ...". */
  const plainReason = (r) => String(r ?? "").replace(/^(?:[A-Z][a-z0-9]+){1,5}:\s*/, "");

  function detailText(data, r) {
    const detail = data && data.detail;
    if (typeof detail === "string") return plainReason(detail);
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${d.msg}`).join("; ");
    }
    return `${r.status} ${r.statusText || "request failed"}`;
  }

  async function api(method, url, body) {
    const opts = {method, headers: {"X-CSRF-Token": csrf()}, credentials: "same-origin"};
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);
    const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
    if (!r.ok) {
      if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
      const err = new Error(detailText(data, r));
      err.status = r.status;
      throw err;
    }
    return data;
  }
  /** For what the operator clicks: an error is shown; success clears an earlier error. */
  const act = (fn) => async (...args) => {
    try { const out = await fn(...args); if ($("#flash")?.className.includes("error")) flash(""); return out; }
    catch (e) { flash(e.message); }
  };
  /** For polls: an error is shown, success leaves any message alone (except the lost-contact
   *  one, which a poll that gets through is the news that contact is back). */
  const LOST = "Lost contact with the rig's server; trying again…";
  const poll = (fn) => async (...args) => {
    try {
      const out = await fn(...args);
      if ($("#flash-text")?.textContent === LOST) flash("");
      return out;
    } catch (e) { flash(e instanceof TypeError && /fetch|network|load failed/i.test(e.message) ? LOST : e.message); }
  };

  function fmtS(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return `${h} h ${m} min`;
    return m ? `${m} min ${r} s` : `${r} s`;
  }
  /** "2026-12-03T07:59:35.123456+00:00" → the operator's local time, to the second. */
  function fmtTime(iso) {
    if (!iso) return "–";
    let s = String(iso).replace(" ", "T").replace(/(\.\d{3})\d+/, "$1");
    if (!/(Z|[+-]\d\d:?\d\d)$/.test(s)) s += "Z";
    const d = new Date(s);
    if (isNaN(d)) return String(iso);
    return d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }
  const fmtBytes = (n) => {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
  };

  /** A shot's thumbnail linking to its page (the dataset grid and a run's shots). */
  const thumb = (s) => `<a class="thumb" href="/dataset/shots/${s.id}" data-shot-id="${s.id}"><img loading="lazy" src="/api/dataset/shots/${s.id}/thumb" alt="shot ${s.id}"><span>${esc(s.label)} · bg ${esc(s.background_id ?? "–")}${s.angle_cmd !== null && s.angle_cmd !== undefined ? " · " + Number(s.angle_cmd).toFixed(0) + "°" : ""}</span></a>`;

  const RUN_WORDS = {
    pending: "Ready to start", running: "Running", awaiting_operator: "Waiting for you", paused: "Paused",
    completed: "Completed", aborted: "Aborted", failed: "Failed", interrupted: "Interrupted",
  };
  const SORTER_WORDS = {stopped: "Stopped", running: "Sorting", faulted: "Stopped by a fault", stopping: "Stopping", starting: "Starting", absent: "Not available"};
  const MODEL_WORDS = {uploaded: "Uploaded", validating: "Being checked", validated: "Ready to activate", active: "Active", retired: "Retired", rejected: "Rejected"};
  const words = (table, s) => table[s] || String(s ?? "–").replace(/_/g, " ");
  const runWords = (s) => words(RUN_WORDS, s);
  const sorterWords = (s) => words(SORTER_WORDS, s);
  const modelWords = (s) => words(MODEL_WORDS, s);

  // --- the status strip on every page ------------------------------------------------------
  function healthText(h) {
    const out = [];
    const warn = [];
    if (h.disk) { out.push(`disk ${fmtBytes(h.disk.free_bytes)} free`); if (h.disk.low) warn.push("disk nearly full"); }
    if (h.cpu_temp_c !== null && h.cpu_temp_c !== undefined) { out.push(`CPU ${h.cpu_temp_c.toFixed(0)} °C`); if (h.cpu_temp_c >= 80) warn.push("CPU hot"); }
    if (h.throttled) {
      if (h.throttled.now.length) warn.push(h.throttled.now.join(", "));
      else if (h.throttled.since_boot.length) out.push(`was ${h.throttled.since_boot.join(", ")} since boot`);
      else out.push("not throttled");
    }
    if (h.memory) out.push(`memory ${fmtBytes(h.memory.available_bytes)} free`);
    return {text: out.join(" · "), warn};
  }
  function showStrip(o) {
    const run = o.run;
    const r = $("#strip-run");
    if (run) {
      r.href = `/runs/${run.id}`;
      r.textContent = `Run ${run.id}: ${runWords(run.state)}` + (run.state === "awaiting_operator" && run.prompt ? ` — ${run.prompt}` : "");
      r.dataset.state = run.state;
    } else { r.href = "/runs"; r.textContent = "Run: none live"; r.dataset.state = "idle"; }
    const s = $("#strip-sorter");
    const so = o.sorter || {};
    s.textContent = `Sorter: ${sorterWords(so.state)}` + (so.state === "running" ? (so.model_id ? ` with ${so.model_id}` : " (collecting for review)") : "");
    s.dataset.state = so.state || "absent";
    const f = $("#strip-fault");
    f.hidden = !o.fault; f.textContent = o.fault ? `Fault: ${plainReason(o.fault)}` : "";
    const h = healthText(o.health || {});
    const hs = $("#strip-health");
    hs.textContent = h.warn.length ? `⚠ ${h.warn.join(", ")} · ${h.text}` : h.text;
    hs.classList.toggle("warn", h.warn.length > 0);
    document.dispatchEvent(new CustomEvent("partrig:overview", {detail: o}));
  }
  function strip() {
    if (!$("#strip")) return;
    const refresh = poll(async () => showStrip(await api("GET", "/api/overview")));
    refresh(); setInterval(refresh, 2000);
  }

  function common() {
    $("#estop")?.addEventListener("click", async () => {
      try {
        const r = await api("POST", "/api/rig/estop");
        flash("EMERGENCY STOP: " + plainReason(r.fault || "fault latched") + (r.warning ? " — " + r.warning : ""));
      } catch (e) { flash("The emergency stop was NOT confirmed: " + e.message + ". Switch the rig off at the mains."); }
    });
    $("#flash-close")?.addEventListener("click", () => flash(""));
    $("#logout")?.addEventListener("click", act(async () => { await api("POST", "/api/auth/logout"); location.href = "/login"; }));
    strip();
  }
  document.addEventListener("DOMContentLoaded", common);

  return {$, esc, thumb, api, act, poll, flash, fmtS, fmtTime, fmtBytes, plainReason, runWords, sorterWords, modelWords};
})();
