// The labelling station: one image large with its mask and box, the model's top-k as numbered
// choices, everything on the keyboard and by mouse or touch.  Actions are optimistic (the next
// image shows at once) and go to the server one after another; each answer brings the items'
// real states and fresh counts.  Undo and redo wait for what is in flight, then ask the server,
// which restores exactly from its own record of the action.
"use strict";
partrig.labelPage = function labelPage() {
  const {$, esc, api, flash} = partrig;
  const PREFETCH = 3;            // images fetched ahead of the one shown (contracts: at most 3)
  const CONFIDENT = 0.5;         // "select confident": margin (top-1 minus top-2) at least this
  let items = [];                // the queue as loaded: open items, least certain first
  let labels = [];               // the catalogue, for search and the new-label check
  let pos = 0;                   // index of the shown item
  let grid = false, gridPos = 0, anchor = null;
  const selected = new Set();
  const cache = new Map();       // queue id -> {img, mask, ready}: the shown item + PREFETCH ahead
  let chain = Promise.resolve(); // server calls, strictly in order
  let inflight = 0;
  let showToken = 0;
  let suggestPos = -1;
  let pendingLabel = null;       // {label, ids}: waiting for the new-label confirmation
  let cursorTimer = null;
  const timings = [];            // ms from keydown to the first frame with the next image drawn
  const shownIds = new Set();    // items whose image was shown (the bench checks the prefetch bound)
  window.partrigLabel = {timings, idle: () => inflight === 0, items: () => items, pos: () => pos, shown: () => shownIds.size};

  // --- talking to the server ---------------------------------------------------------------
  function send(method, url, body) {
    inflight += 1;
    const p = chain.then(() => api(method, url, body));
    chain = p.then(applyAnswer, async (e) => {
      flash(e.message);
      localDone.length = 0; localUndone.length = 0;
      try { await reload(); if (grid) renderGrid(); else show(); } catch (e2) { flash(e2.message); }
    }).finally(() => { inflight -= 1; });
    return p;
  }
  function applyAnswer(ans) {
    if (!ans) return;
    for (const it of ans.items || []) {
      const i = items.findIndex((x) => x.id === it.id);
      if (i >= 0) items[i] = it; else items.unshift(it);
    }
    if (ans.counts) showCounts(ans.counts);
    if (ans.shots && ans.shots.includes(items[pos]?.shot_id)) showAttributes();
    const it = items[pos];
    if (!grid && it && (ans.items || []).some((x) => x.id === it.id)) renderSide(it);
    return ans;
  }
  function showCounts(c) {
    $("#label-counts").textContent = `${c.open} to label · ${c.accepted} accepted · ${c.discarded} discarded`;
    $("#btn-undo").disabled = !c.undo;
    $("#btn-redo").disabled = !c.redo;
  }
  async function reload() {
    const q = await api("GET", "/api/label/queue?limit=1000");
    const keep = items[pos]?.id;
    items = q.items;
    labels = q.labels;
    showCounts(q.counts);
    const i = items.findIndex((x) => x.id === keep);
    pos = keep !== undefined && i >= 0 ? i : Math.min(q.start, Math.max(0, items.length - 1));
  }
  function saveCursor() {
    clearTimeout(cursorTimer);
    const it = items[pos];
    if (it) cursorTimer = setTimeout(() => api("PUT", "/api/label/cursor", {queue_id: it.id}).catch(() => {}), 400);
  }

  // --- images ------------------------------------------------------------------------------
  function load(it) {
    let entry = cache.get(it.id);
    if (entry) return entry;
    const img = new Image();
    img.className = "shot"; img.alt = `item ${it.id}`;
    img.src = `/api/label/items/${it.id}/image`;
    const parts = [img.decode()];
    let mask = null;
    if (it.has_mask) {
      mask = new Image(); mask.className = "mask"; mask.alt = "";
      mask.src = `/api/label/items/${it.id}/mask`;
      parts.push(mask.decode());
    }
    entry = {img, mask, ready: Promise.all(parts)};
    cache.set(it.id, entry);
    return entry;
  }
  function prefetch() {
    // NOTE: the shown item and the one before it stay; at most PREFETCH are fetched ahead.
    const want = new Set([items[pos]?.id, items[pos - 1]?.id]);
    for (let i = pos + 1, n = 0; i < items.length && n < PREFETCH; i++) {
      if (items[i].state === "open") { want.add(items[i].id); load(items[i]); n++; }
    }
    for (const id of [...cache.keys()]) if (!want.has(id)) cache.delete(id);
  }
  function boxEl(it, entry) {
    const b = document.createElement("div");
    b.className = "box";
    const w = entry.img.naturalWidth || it.width, h = entry.img.naturalHeight || it.height;
    if (!it.box || !w || !h) { b.hidden = true; return b; }
    const [x, y, bw, bh] = it.box;
    Object.assign(b.style, {left: `${100 * x / w}%`, top: `${100 * y / h}%`, width: `${100 * bw / w}%`, height: `${100 * bh / h}%`});
    return b;
  }

  // --- the single view ---------------------------------------------------------------------
  async function show(t0) {
    const token = ++showToken;
    const it = items[pos];
    $("#label-empty").hidden = !!it;
    $("#single").hidden = !it || grid;
    if (!it) return;
    renderSide(it);
    const entry = load(it);
    prefetch();
    try { await entry.ready; } catch { /* a broken image still shows its alt text */ }
    if (token !== showToken) return;
    const fig = $("#figure");
    fig.replaceChildren(...[entry.img, entry.mask, boxEl(it, entry)].filter(Boolean));
    fig.dataset.item = it.id;
    shownIds.add(it.id);
    if (t0 !== undefined) requestAnimationFrame(() => { timings.push(performance.now() - t0); fig.dataset.shown = String(timings.length); });
    saveCursor();
  }
  function stateWords(it) {
    if (it.state === "accepted") return `Accepted as ${it.label}`;
    if (it.state === "discarded") return "Discarded";
    return it.label ? `Labelled ${it.label}, not yet checked` : "Not labelled yet";
  }
  function renderSide(it) {
    const open = items.filter((x) => x.state === "open").length;
    $("#label-where").textContent = `Item ${pos + 1} of ${items.length} (${open} open here) · ${it.kind === "review" ? "sorter review" : "shot " + it.shot_id}` +
      (it.margin === null || it.margin === undefined ? " · no prediction" : ` · margin ${it.margin.toFixed(2)}`);
    const now = $("#label-now");
    now.textContent = stateWords(it); now.dataset.state = it.state;
    $("#choices").innerHTML = it.top_k.slice(0, 9).map(([l, p], i) =>
      `<li><button type="button" class="choice" data-label="${esc(l)}"><kbd>${i + 1}</kbd> ${esc(l)} <span class="muted">${(100 * p).toFixed(0)} %</span></button></li>`).join("") ||
      '<li class="muted">No suggestions: type the label.</li>';
    showAttributes();
  }
  // NOTE: an attribute edit is one action of this person's history like an accept, so it is
  // sent in order with them and recorded locally (with no item change) to keep undo aligned.
  const attrShot = () => { const it = items[pos]; return it && it.shot_id && it.state !== "discarded" ? it.shot_id : null; };
  const renderAttrs = partrig.attributesPanel($("#attr-box"), {
    shot: attrShot,
    post: (url, body) => { record([], () => {}); return send("POST", url, body); },
  });
  function showAttributes() { if ($("#label-attrs").open) renderAttrs().catch((e) => flash(e.message)); }
  $("#label-attrs").addEventListener("toggle", showAttributes);
  function nextOpen(from) {
    for (let i = from + 1; i < items.length; i++) if (items[i].state === "open") return i;
    for (let i = 0; i <= from && i < items.length; i++) if (items[i].state === "open") return i;
    return Math.min(from + 1, items.length - 1);
  }

  // --- actions -----------------------------------------------------------------------------
  // NOTE: this page's own actions, newest last, with each item's state before and after, so
  // undo and redo show their item at once; the server's answer then replaces them.  Actions
  // from before the page loaded are undone by the server alone (the page waits for it).
  const localDone = [], localUndone = [];
  const snap = (it) => ({id: it.id, state: it.state, label: it.label});
  function record(ids, change) {
    const its = ids.map((id) => items.find((x) => x.id === id)).filter(Boolean);
    const before = its.map(snap);
    its.forEach(change);
    localDone.push({before, after: its.map(snap)});
    localUndone.length = 0;
  }
  function accept(ids, label, t0, confirmNew = false) {
    if (!ids.length) return;
    record(ids, (it) => { it.label = label || it.label || it.top_k[0]?.[0] || null; it.state = "accepted"; });
    send("POST", "/api/label/accept", label ? {ids, label, confirm_new: confirmNew} : {ids});
    after(t0);
  }
  function discard(ids, t0) {
    if (!ids.length) return;
    record(ids, (it) => { it.state = "discarded"; });
    send("POST", "/api/label/discard", {ids});
    after(t0);
  }
  function after(t0) {
    if (grid) { selected.clear(); renderGrid(); return; }
    pos = nextOpen(pos);
    show(t0);
  }
  function placeAfter(kind, firstId) {
    if (kind === "undo" && firstId !== undefined) pos = Math.max(0, items.findIndex((x) => x.id === firstId));
    else if (!grid) pos = items[pos]?.state === "open" ? pos : nextOpen(pos);
    if (grid) renderGrid(); else show(lastT0);
  }
  let lastT0;
  async function history(kind, t0) {
    lastT0 = t0;
    const local = (kind === "undo" ? localDone : localUndone).pop();
    if (local) {
      (kind === "undo" ? localUndone : localDone).push(local);
      const states = kind === "undo" ? local.before : local.after;
      for (const st of states) { const it = items.find((x) => x.id === st.id); if (it) Object.assign(it, st); }
      send("POST", `/api/label/${kind}`);
      placeAfter(kind, states[0]?.id);
      return;
    }
    inflight += 1;
    try {
      await chain;
      const ans = applyAnswer(await api("POST", `/api/label/${kind}`));
      placeAfter(kind, ans.items[0]?.id);
    } catch (e) { flash(e.message); } finally { inflight -= 1; }
  }
  /** A typed label: a catalogue label at once, anything else after an explicit yes. */
  function useLabel(raw, t0) {
    const typed = raw.trim();
    if (!typed) return;
    // NOTE: the server's normaliser, so "Brick 2x4" finds brick-2x4 without a confirmation
    const label = labels.includes(typed) ? typed : typed.toLowerCase().replace(/\s+/g, "-");
    const ids = grid ? [...selected] : [items[pos]?.id].filter(Boolean);
    if (!ids.length) { flash("select the items to label first"); return; }
    closeSearch();
    if (labels.includes(label)) { accept(ids, label, t0); return; }
    pendingLabel = {label, ids};
    $("#confirm-text").innerHTML = `<strong>${esc(label)}</strong> is not in the parts catalogue. Add it as a new part and label ${ids.length === 1 ? "this item" : ids.length + " items"} with it?`;
    $("#confirm").hidden = false;
    $("#confirm-yes").focus();
  }
  function confirmNew(yes, t0) {
    const p = pendingLabel;
    pendingLabel = null;
    $("#confirm").hidden = true;
    document.activeElement?.blur();
    if (yes && p) { labels.push(p.label); accept(p.ids, p.label, t0, true); }
  }

  // --- search --------------------------------------------------------------------------------
  function openSearch(initial = "") {
    const s = $("#search");
    s.value = initial; s.focus();
    renderSuggest();
  }
  function closeSearch() { $("#search").value = ""; $("#suggest").hidden = true; suggestPos = -1; $("#search").blur(); }
  function matches() {
    const q = $("#search").value.trim().toLowerCase();
    if (!q) return [];
    const starts = labels.filter((l) => l.toLowerCase().startsWith(q));
    return [...starts, ...labels.filter((l) => !starts.includes(l) && l.toLowerCase().includes(q))].slice(0, 8);
  }
  function renderSuggest() {
    const m = matches();
    suggestPos = Math.min(suggestPos, m.length - 1);
    const ul = $("#suggest");
    ul.hidden = !m.length;
    ul.innerHTML = m.map((l, i) => `<li role="option" aria-selected="${i === suggestPos}" data-label="${esc(l)}">${esc(l)}</li>`).join("");
  }
  $("#search").addEventListener("input", () => { suggestPos = -1; renderSuggest(); });
  $("#search").addEventListener("keydown", (e) => {
    const m = matches();
    if (e.key === "ArrowDown") { suggestPos = Math.min(suggestPos + 1, m.length - 1); renderSuggest(); e.preventDefault(); }
    else if (e.key === "ArrowUp") { suggestPos = Math.max(suggestPos - 1, -1); renderSuggest(); e.preventDefault(); }
    else if (e.key === "Tab" && m.length) { $("#search").value = m[Math.max(suggestPos, 0)]; suggestPos = -1; renderSuggest(); e.preventDefault(); }
    else if (e.key === "Escape") { closeSearch(); e.preventDefault(); }
    else if (e.key === "Enter") { e.preventDefault(); useLabel(suggestPos >= 0 ? m[suggestPos] : $("#search").value, e.timeStamp); }
    e.stopPropagation();
  });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); useLabel($("#search").value); });
  $("#suggest").addEventListener("click", (e) => { const li = e.target.closest("li"); if (li) useLabel(li.dataset.label); });

  // --- the grid view -----------------------------------------------------------------------
  const openItems = () => items.filter((x) => x.state === "open");
  function setView(toGrid) {
    grid = toGrid;
    $("#btn-view").setAttribute("aria-pressed", String(grid));
    $("#btn-view").firstChild.textContent = grid ? "Single " : "Grid ";
    $("#grid").hidden = !grid;
    const home = grid ? $("#grid") : $("#single .side");
    home.insertBefore($("#confirm"), grid ? $("#grid-cells") : $("#single .actions"));
    home.insertBefore($("#search-form"), $("#confirm"));
    if (grid) { selected.clear(); gridPos = 0; anchor = null; renderGrid(); $("#single").hidden = true; }
    else { pos = Math.max(0, Math.min(pos, items.length - 1)); show(); }
  }
  function renderGrid() {
    const list = openItems();
    gridPos = Math.max(0, Math.min(gridPos, list.length - 1));
    $("#label-empty").hidden = list.length > 0;
    $("#grid-cells").innerHTML = list.map((it, i) =>
      `<button type="button" class="cell" role="option" data-id="${it.id}" data-index="${i}" aria-selected="${selected.has(it.id)}"${i === gridPos ? ' data-focus="1"' : ""}>` +
      `<img loading="lazy" src="/api/label/items/${it.id}/image" alt="item ${it.id}"><span>${esc(it.label || it.top_k[0]?.[0] || "?")}` +
      `${it.margin === null || it.margin === undefined ? "" : ` · ${it.margin.toFixed(2)}`}</span></button>`).join("");
    $("#grid-selected").textContent = `${selected.size} selected`;
    $(`#grid-cells [data-index="${gridPos}"]`)?.scrollIntoView({block: "nearest"});
  }
  function selectRange(from, to) {
    const list = openItems();
    const [a, b] = from < to ? [from, to] : [to, from];
    for (let i = a; i <= b; i++) if (list[i]) selected.add(list[i].id);
  }
  function gridMove(delta, extend) {
    const list = openItems();
    if (!list.length) return;
    const from = gridPos;
    gridPos = Math.max(0, Math.min(list.length - 1, gridPos + delta));
    if (extend) { if (anchor === null) anchor = from; selectRange(anchor, gridPos); } else anchor = null;
    renderGrid();
  }
  function gridToggle(i) { const it = openItems()[i]; if (!it) return; if (selected.has(it.id)) selected.delete(it.id); else selected.add(it.id); }
  function gridColumns() {
    const cells = [...document.querySelectorAll("#grid-cells .cell")];
    if (cells.length < 2) return 1;
    const top = cells[0].offsetTop;
    const n = cells.findIndex((c) => c.offsetTop !== top);
    return n < 0 ? cells.length : n;
  }
  $("#grid-cells").addEventListener("click", (e) => {
    const cell = e.target.closest(".cell");
    if (!cell) return;
    const i = Number(cell.dataset.index);
    if (e.shiftKey && anchor !== null) selectRange(anchor, i); else { gridToggle(i); anchor = i; }
    gridPos = i;
    renderGrid();
  });
  const selectConfident = () => { for (const it of openItems()) if ((it.margin ?? -1) >= CONFIDENT) selected.add(it.id); renderGrid(); };

  // --- keys and buttons ----------------------------------------------------------------------
  const cur = () => items[pos];
  const chooseN = (n, t0) => { const it = cur(); const c = it?.top_k[n - 1]; if (c) accept([it.id], c[0], t0); };
  function step(delta, t0) {
    if (!items.length) return;
    pos = Math.max(0, Math.min(items.length - 1, pos + delta));
    show(t0);
  }
  function onKey(e) {
    if (e.target.closest?.("input, textarea, select")) return;
    if (!$("#confirm").hidden) {
      if (e.key === "Enter") { e.preventDefault(); confirmNew(true, e.timeStamp); }
      else if (e.key === "Escape") { e.preventDefault(); confirmNew(false); }
      return;
    }
    if (e.altKey || e.metaKey) return;
    const k = e.key, t0 = e.timeStamp;
    const ctrl = e.ctrlKey;
    if (ctrl && (k === "z" || k === "Z")) { e.preventDefault(); history(e.shiftKey ? "redo" : "undo", t0); return; }
    if (ctrl && (k === "y" || k === "Y")) { e.preventDefault(); history("redo", t0); return; }
    if (ctrl) return;
    if (k === "z" || k === "Z") { history(k === "Z" || e.shiftKey ? "redo" : "undo", t0); }
    else if (k === "g") { setView(!grid); }
    else if (k === "/") { openSearch(); }
    else if (grid) {
      const cols = gridColumns();
      if (k === "ArrowRight" || k === "l") gridMove(1, e.shiftKey);
      else if (k === "ArrowLeft" || k === "h") gridMove(-1, e.shiftKey);
      else if (k === "ArrowDown" || k === "j") gridMove(cols, e.shiftKey);
      else if (k === "ArrowUp" || k === "k") gridMove(-cols, e.shiftKey);
      else if (k === " ") { gridToggle(gridPos); anchor = gridPos; renderGrid(); }
      else if (k === "c") selectConfident();
      else if (k === "Enter" || k === "a") accept([...selected], null, t0);
      else if (k === "x") discard([...selected], t0);
      else if (k === "Escape") { if (selected.size) { selected.clear(); renderGrid(); } else setView(false); }
      else return;
    } else if (k === "Enter" || k === "a") { const it = cur(); if (it) accept([it.id], null, t0); }
    else if (/^[1-9]$/.test(k)) chooseN(Number(k), t0);
    else if (k === "x") { const it = cur(); if (it) discard([it.id], t0); }
    else if (k === "s") { pos = nextOpen(pos); show(t0); }
    else if (k === "j" || k === "ArrowRight" || k === "ArrowDown") step(1, t0);
    else if (k === "k" || k === "ArrowLeft" || k === "ArrowUp") step(-1, t0);
    else if (k.length === 1 && /\S/.test(k)) { openSearch(k); }
    else return;
    e.preventDefault();
  }
  document.addEventListener("keydown", onKey);

  const click = (sel, fn) => $(sel).addEventListener("click", (e) => { fn(e.timeStamp); e.currentTarget.blur(); });
  click("#btn-accept", (t) => { const it = cur(); if (it) accept([it.id], null, t); });
  click("#btn-discard", (t) => { const it = cur(); if (it) discard([it.id], t); });
  click("#btn-skip", (t) => { pos = nextOpen(pos); show(t); });
  click("#btn-prev", (t) => step(-1, t));
  click("#btn-next", (t) => step(1, t));
  click("#btn-undo", (t) => history("undo", t));
  click("#btn-redo", (t) => history("redo", t));
  click("#btn-view", () => setView(!grid));
  click("#confirm-yes", (t) => confirmNew(true, t));
  click("#confirm-no", () => confirmNew(false));
  click("#grid-confident", selectConfident);
  click("#grid-none", () => { selected.clear(); renderGrid(); });
  click("#grid-accept", (t) => accept([...selected], null, t));
  click("#grid-discard", (t) => discard([...selected], t));
  click("#grid-label", () => openSearch());
  $("#choices").addEventListener("click", (e) => { const b = e.target.closest("button.choice"); if (b && cur()) accept([cur().id], b.dataset.label, e.timeStamp); });

  $("#prelabel-form").addEventListener("submit", partrig.act(async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/label/prelabel", {run_id: Number($("#prelabel-run").value)});
    $("#prelabel-result").textContent = `${r.queued} shots queued with ${r.model_id}'s guesses`;
    await reload();
    if (grid) renderGrid(); else show();
  }));

  // NOTE: other people label too: their work shows in the counts within seconds.
  setInterval(() => {
    if (document.visibilityState === "visible" && inflight === 0) api("GET", "/api/label/counts").then(showCounts, () => {});
  }, 5000);

  (async () => {
    try { await reload(); } catch (e) { flash(e.message); return; }
    $("#station").dataset.ready = "1";
    show();
  })();
};
