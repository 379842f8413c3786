// The dashboard: the rig's status, manual control, lights, the fault box and the live preview.
"use strict";
Object.assign(partrig, (() => {
  const {$, api, act, poll, plainReason, runWords, sorterWords} = partrig;

  function showStatus(s) {
    $("#st-link").textContent = s.link + (s.simulated ? " (simulated)" : "") + ` · ${s.port}`;
    const fw = s.firmware || {};
    $("#st-firmware").textContent = [fw.name, fw.version, fw.dialect && `(${fw.dialect})`].filter(Boolean).join(" ") || "–";
    $("#st-angle").textContent = `${Number(s.angle_deg).toFixed(2)}°`;
    $("#st-lights").textContent = s.lights ? `${Math.round(s.lights * 100)} %` : "off";
    $("#st-camera").textContent = s.camera;
    const slider = $("#light-level");
    // NOTE: the slider shows the real level, except while the operator is moving it.
    if (document.activeElement !== slider) slider.value = s.lights || 0;
    $("#light-value").textContent = `${Math.round(Number(slider.value) * 100)} %`;
    $("#fault-box").hidden = !s.fault;
    $("#fault-reason").textContent = plainReason(s.fault || "");
    const busy = Boolean(s.fault || s.live_run);
    document.querySelectorAll("[data-jog], #set-zero").forEach((b) => { b.disabled = busy; });
  }
  function showActivity(o) {
    const parts = [];
    if (o.run) parts.push(`<a href="/runs/${o.run.id}">run ${o.run.id}</a>: ${partrig.esc(runWords(o.run.state))}` +
      (o.run.state === "awaiting_operator" && o.run.prompt ? ` — <strong>${partrig.esc(o.run.prompt)}</strong>` : ""));
    const so = o.sorter || {};
    if (so.state && so.state !== "stopped" && so.state !== "absent") parts.push(`<a href="/sorter">sorter</a>: ${partrig.esc(sorterWords(so.state))}`);
    $("#st-run").innerHTML = parts.join("; ") || "idle (no run, sorter stopped)";
  }
  function dashboard() {
    const refresh = poll(async () => showStatus(await api("GET", "/api/rig/status")));
    refresh(); setInterval(refresh, 1000);
    document.addEventListener("partrig:overview", (e) => showActivity(e.detail));
    const img = $("#preview");
    if (img) img.src = img.dataset.src;
    document.querySelectorAll("[data-jog]").forEach((b) => b.addEventListener("click", act(async () => {
      showStatus(await api("POST", "/api/rig/jog", {degrees: Number(b.dataset.jog)}));
    })));
    $("#set-zero").addEventListener("click", act(async () => showStatus(await api("POST", "/api/rig/zero"))));
    const setLights = act(async (level) => showStatus(await api("POST", "/api/rig/lights", {level})));
    $("#light-level").addEventListener("input", () => { $("#light-value").textContent = `${Math.round(Number($("#light-level").value) * 100)} %`; });
    $("#light-level").addEventListener("change", () => setLights(Number($("#light-level").value)));
    $("#lights-on").addEventListener("click", () => setLights(Number($("#light-level").value) || 1));
    $("#lights-off").addEventListener("click", () => setLights(0));
    $("#clear-fault").addEventListener("click", act(async () => {
      showStatus(await api("POST", "/api/rig/clear-fault", {zero_confirmed: $("#zero-confirmed").checked}));
      if (img) img.src = img.dataset.src + "&t=" + Date.now();
    }));
  }
  return {dashboard};
})());
