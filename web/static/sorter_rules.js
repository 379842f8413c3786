// The Sorter page's rules card: the configured sorting rules (read-only), how often each fired,
// and which step or rule decided each recent part, with its measured sizes.
"use strict";
Object.assign(partrig, (() => {
  const {$, esc, api, poll} = partrig;
  const sizeText = (sizes) => Object.entries(sizes || {})
    .map(([k, v]) => `${esc(k.replace(/_mm2?$/, "").replace(/_/g, " "))} ${Number(v).toFixed(1)}`).join(", ") || "–";

  function showRules(r) {
    const card = $("#rules-card");
    if (!r || !r.table || !r.table.length) { card.hidden = true; return; }
    card.hidden = false;
    $("#rules-problem").hidden = !r.problem;
    $("#rules-problem").textContent = r.problem || "";
    $("#rules-marker").hidden = !(r.measuring && r.marker_found === false);
    const rc = r.recirculation || {};
    $("#rules-recirculation").hidden = rc.bin === null || rc.bin === undefined;
    $("#rules-recirculation").textContent = rc.bin === null || rc.bin === undefined ? "" :
      `Parts whose pose hides a size go round again through bin ${rc.bin} (at most ${rc.max_in_a_row} in a row, ` +
      `then review): ${rc.recirculated} sent round since start.`;
    $("#rules-table tbody").innerHTML = r.table.map((row) =>
      `<tr data-rule="${esc(row.title)}"><td>${row.index + 1}</td><td>${esc(row.title)}</td>` +
      `<td>${esc(row.when)}</td><td>${row.bin}</td><td class="fired">${row.fired}</td></tr>`).join("");
    $("#rules-recent tbody").innerHTML = (r.recent || []).map((d) =>
      `<tr><td>${esc(d.label ?? "–")}</td><td class="step">${esc(d.why ?? String(d.step).replace(/_/g, " "))}</td>` +
      `<td class="rule">${esc(d.rule ?? "–")}</td><td>${d.bin}</td><td>${sizeText(d.sizes)}</td></tr>`).join("") ||
      `<tr><td colspan="5" class="muted">No part sorted by the rules yet.</td></tr>`;
  }

  function sorterRules() {
    const refresh = poll(async () => {
      const s = await api("GET", "/api/sorter/status");
      showRules(s.rules);
    });
    refresh(); setInterval(refresh, 2000);
  }
  return {sorterRules, showRules};
})());
document.addEventListener("DOMContentLoaded", () => { if (document.querySelector("#rules-card")) partrig.sorterRules(); });
