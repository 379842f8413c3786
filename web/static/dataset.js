// The dataset: class balance, the filtered grid, and one shot's page (view, relabel, delete).
"use strict";
Object.assign(partrig, (() => {
  const {$, esc, api, act, poll, fmtTime, thumb} = partrig;
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
    const query = () => {
      const p = new URLSearchParams(), f = new FormData(form);
      for (const [k, v] of f) if (v && !k.startsWith("attr_")) p.set(k, v);
      if (f.get("attr_name") && f.get("attr_value")) p.append("attr", `${f.get("attr_name")}=${f.get("attr_value")}`);
      return p;
    };
    const load = act(async (append) => {
      const p = query(); p.set("limit", "48"); if (append && cursor) p.set("cursor", cursor);
      const page = await api("GET", "/api/dataset/shots?" + p);
      const html = page.items.map(thumb).join("");
      if (append) $("#grid").insertAdjacentHTML("beforeend", html); else $("#grid").innerHTML = html || "<p class='muted'>No shots match.</p>";
      cursor = page.next_cursor; $("#more").hidden = !cursor;
    });
    poll(async () => {
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
  const metaValue = (k, v) => {
    if (v === null || v === undefined) return "–";
    if (/_at$/.test(k) || k === "at") return fmtTime(v);
    return typeof v === "object" ? JSON.stringify(v) : v;
  };
  function shotPage(id) {
    const show = poll(async () => {
      const s = await api("GET", `/api/dataset/shots/${id}`);
      $("#shot-image").src = `/api/dataset/shots/${id}/image`;
      const mask = $("#shot-mask");
      if (s.mask_path) mask.src = `/api/dataset/shots/${id}/mask`; else mask.hidden = true;
      $("#sizes").innerHTML = partrig.sizeHtml(s.measurement);
      $("#meta").innerHTML = Object.entries(s).filter(([k]) => !["edits", "measurement", "attributes"].includes(k)).map(([k, v]) => `<tr><th>${esc(k.replace(/_/g, " "))}</th><td>${esc(metaValue(k, v))}</td></tr>`).join("");
      $("#edits").innerHTML = s.edits.map((e) => `<li>${esc(fmtTime(e.at))}: ${esc(e.action)}${e.action === "set_attribute" ? " " + esc(e.field) : ""} ${esc(e.old ?? "")} → ${esc(e.new ?? "")} by ${esc(e.who)}</li>`).join("") || "<li class='muted'>none</li>";
      return s;
    });
    const attrs = partrig.attributesPanel($("#attributes"), {shot: () => id, after: () => show(), undo: true});
    show().then((s) => s && attrs(s.attributes));
    $("#show-mask").addEventListener("change", (e) => { $("#shot-mask").style.display = e.target.checked ? "" : "none"; });
    $("#relabel").addEventListener("click", act(async () => {
      const label = $("#new-label").value.trim();
      if (!label) throw new Error("Type the correct label first.");
      if (!confirm(`Relabel shot ${id} as ${label}?`)) return;
      await api("POST", `/api/dataset/shots/${id}/relabel`, {label}); await show();
    }));
    $("#delete").addEventListener("click", act(async () => {
      if (!confirm(`Delete shot ${id}? Its files move to the trash folder.`)) return;
      await api("DELETE", `/api/dataset/shots/${id}`); location.href = "/dataset";
    }));
  }
  return {datasetPage, shotPage};
})());
