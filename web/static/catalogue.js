// The parts catalogue on the dataset page: each label's name and attributes, edited in place,
// a parts list (CSV) imported from a file, and the catalogue downloaded as CSV.
"use strict";
Object.assign(partrig, (() => {
  const {$, esc, api, act, flash} = partrig;
  const show = (v) => (v === null || v === undefined ? "" : String(v));
  /** "category=screw; thread=M4" as {category: "screw", thread: "M4"}; a blank value removes. */
  function parseAttrs(text) {
    const out = {};
    for (const part of text.split(";")) {
      if (!part.trim()) continue;
      const i = part.indexOf("=");
      if (i < 1) throw new Error(`"${part.trim()}": write attributes as name=value; name=value`);
      out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
    return out;
  }
  const attrsText = (a) => Object.entries(a).map(([k, v]) => `${k}=${show(v)}`).join("; ");

  function cataloguePage() {
    const body = $("#catalogue tbody");
    async function load() {
      const cat = await api("GET", "/api/dataset/catalogue");
      // NOTE: the browse filter's attribute names follow the catalogue as it is edited
      const sel = document.querySelector("#filters select[name=attr_name]");
      if (sel) {
        const have = new Set([...sel.options].map((o) => o.value));
        cat.attribute_names.filter((n) => !have.has(n)).forEach((n) => sel.add(new Option(n.replace(/_/g, " "), n)));
      }
      body.innerHTML = Object.entries(cat.parts).map(([label, p]) =>
        `<tr data-label="${esc(label)}"><th>${esc(label)}</th>` +
        `<td><input class="cat-name" value="${esc(p.name)}" aria-label="name of ${esc(label)}"></td>` +
        `<td><input class="cat-attrs" value="${esc(attrsText(p.attributes))}" aria-label="attributes of ${esc(label)}" placeholder="category=screw; colour=silver"></td>` +
        `<td><button type="button" class="cat-save">Save</button></td></tr>`).join("") ||
        "<tr><td class='muted'>No parts yet: capture a run or import a parts list.</td></tr>";
    }
    body.addEventListener("click", act(async (e) => {
      if (!e.target.classList.contains("cat-save")) return;
      const row = e.target.closest("tr");
      const label = row.dataset.label;
      await api("PUT", `/api/dataset/catalogue/${encodeURIComponent(label)}`, {
        name: row.querySelector(".cat-name").value.trim() || null,
        attributes: parseAttrs(row.querySelector(".cat-attrs").value),
      });
      flash(`Saved ${label}.`, "ok");
      await load();
    }));
    $("#catalogue-import").addEventListener("submit", act(async (e) => {
      e.preventDefault();
      const file = $("#catalogue-file").files[0];
      if (!file) throw new Error("Choose the parts list (CSV) first.");
      const r = await fetch("/api/dataset/catalogue/import", {method: "POST", body: await file.text(), credentials: "same-origin",
        headers: {"Content-Type": "text/csv", "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]')?.content || ""}});
      const data = await r.json();
      if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : `${r.status} import refused`);
      flash(`${data.parts} part(s) imported${data.new_labels.length ? "; new: " + data.new_labels.join(", ") : ""}.`, "ok");
      await load();
    }));
    load().catch((err) => flash(err.message));
  }
  return {cataloguePage};
})());
