// A shot's size in millimetres and its attributes, for the shot page and the labelling station.
// An attribute edit is one undoable action of the person's history: the labelling station's
// undo (z) takes it back, and so does the Undo button here (POST /api/label/undo).
"use strict";
Object.assign(partrig, (() => {
  const {esc, api} = partrig;
  const num = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const STATUS = {measured: "marker found, measured", marker_missing: "marker NOT found: no size (flagged)", no_part: "marker found, no part in the mask"};

  /** The size table's rows: length, width, area in mm, mm per pixel, marker found or flagged. */
  function sizeHtml(m) {
    if (!m) return "<p class='muted'>Not measured (an imported photo, a sorter shot, or a shot from before measuring). <code>partrig dataset measure --run ID</code> measures a run.</p>";
    const rows = [
      ["marker", `<span data-status="${esc(m.status)}">${esc(STATUS[m.status] || m.status)}</span>`],
      ["length", `${num(m.length_mm)} mm`], ["width", `${num(m.width_mm)} mm`],
      ["area", `${num(m.area_mm2, 1)} mm²`],
      ["shaft / head", m.shaft_length_mm === null ? "–" : `${num(m.shaft_length_mm)} / ${num(m.head_length_mm)} mm`],
      ["scale", m.mm_per_px === null ? "–" : `${num(m.mm_per_px, 4)} mm/px`],
      ["lens", m.calibrated ? "calibrated" : "uncalibrated (sheet plane only)"],
    ];
    return `<table class="sizes">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("")}</table>`;
  }

  const show = (v) => (v === null || v === undefined ? "" : String(v));

  /** The attribute editor inside `box` for the shot `opts.shot()` names (null: none).
   *  `opts.post(url, body)` sends an edit (default: at once; the station queues it behind its
   *  other actions), `opts.after(answer)` runs after each change, `opts.undo` adds an Undo. */
  function attributesPanel(box, opts) {
    const post = opts.post || ((url, body) => api("POST", url, body));
    async function render(data) {
      const shotId = opts.shot();
      if (!shotId) { box.innerHTML = "<p class='muted'>Accept this item first: attributes belong to a stored shot.</p>"; return; }
      const a = data || await api("GET", `/api/dataset/shots/${shotId}/attributes`);
      const names = [...new Set([...Object.keys(a.part), ...Object.keys(a.overrides)])];
      const rows = names.map((n) => {
        const own = n in a.overrides;
        return `<tr><th>${esc(n.replace(/_/g, " "))}</th><td><input data-attr="${esc(n)}" value="${esc(show(a.attributes[n]))}" aria-label="${esc(n)}"></td>` +
          `<td class="muted">${own ? `this shot (part: ${esc(show(a.part[n]) || "–")})` : "part"}</td>` +
          `<td>${own ? `<button type="button" data-clear="${esc(n)}" title="use the part's value">Reset</button>` : ""}</td></tr>`;
      }).join("");
      box.innerHTML = `<table class="attrs">${rows || "<tr><td class='muted'>No attributes: set them in the catalogue or add one below.</td></tr>"}</table>` +
        `<form class="row attr-add"><input name="name" placeholder="attribute, e.g. finish" style="width:12rem" aria-label="attribute name">` +
        `<input name="value" placeholder="value" style="width:10rem" aria-label="value"><button type="submit">Set</button>` +
        (opts.undo ? `<button type="button" class="attr-undo" title="undo your latest label or attribute edit">Undo</button>` : "") + `</form>`;
    }
    async function set(name, value) {
      const shotId = opts.shot();
      if (!shotId) return;
      const ans = await post(`/api/dataset/shots/${shotId}/attributes`, {name, value});
      if (opts.shot() === shotId) await render(ans);
      if (opts.after) opts.after(ans);
    }
    box.addEventListener("change", (e) => {
      const name = e.target.dataset?.attr;
      if (name) set(name, e.target.value.trim()).catch((err) => partrig.flash(err.message));
    });
    box.addEventListener("click", (e) => {
      const clear = e.target.dataset?.clear;
      if (clear) set(clear, null).catch((err) => partrig.flash(err.message));
      if (e.target.classList.contains("attr-undo")) {
        api("POST", "/api/label/undo").then(async (ans) => { await render(); if (opts.after) opts.after(ans); })
          .catch((err) => partrig.flash(err.message));
      }
    });
    box.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      const name = String(f.get("name") || "").trim();
      if (!name) { partrig.flash("Type the attribute's name, e.g. finish."); return; }
      set(name, String(f.get("value") || "").trim()).catch((err) => partrig.flash(err.message));
    });
    return render;
  }
  return {sizeHtml, attributesPanel};
})());
