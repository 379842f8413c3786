"""Benchmark: the labelling station driven in the real browser, keyboard only.

Prints one JSON object as its last line:
``{"bench": "labelling", "ui_ms_p95", "ui_ms_p50", "ui_ms_max", "samples", "key_presses",
"labels_per_min", "images_fetched", "items_shown", "db_verified", ...}``

- 200 crops are queued directly in a fresh store: a bag run's shots (label ``unlabelled``),
  each a distinct 1024 x 768 JPEG with its PNG mask, box and a random top-3 over a catalogue.
- The session is a fixed, seeded script of mixed key presses (Enter, 2, 3, x, s, z, Shift+Z,
  j, k); a Python model of the station computes what each press must do.
- ``ui_ms_*`` (contracts, "ui_ms_p95"): measured in the page, from the keydown's
  ``event.timeStamp`` to the first animation frame after the next item's full-size image, its
  mask and its box are in place, the image having decoded.  Goal: p95 <= 100 ms.
- ``labels_per_min``: items resolved (accepted or discarded, after undos) per minute of the
  scripted session, pressing each key as soon as the previous image is shown: the station's
  ceiling, not a person's pace.
- Afterwards the database must hold exactly the scripted result (every item's queue state,
  every shot's label and deletion, undos included), and the page may have fetched at most 3
  images beyond those it showed (prefetch bound).

Run: ``.venv/bin/python bench/labelling.py [--items 200] [--presses 210] [--seed 1]``.
Needs Playwright and Debian's chromium.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capture.store import DatasetStore, ShotRecord
from capture.store.label_queue import UNLABELLED
from rig.config import apply_sim, parse_settings
from web.app import create_app
from web.security import hash_password

PASSWORD = "bench labelling password"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
CATALOGUE = [f"part-{i:02d}" for i in range(20)]
#: The key mix of the script (key, weight); undo and redo only when there is one to do.
MIX = [("Enter", 55), ("2", 10), ("3", 5), ("x", 8), ("s", 6), ("z", 7), ("Shift+Z", 3)]
MIX += [("j", 3), ("k", 3)]


def encoded(img: np.ndarray, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **kw)
    return buf.getvalue()


def seed_store(data: Path, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` queued bag shots with masks, boxes and top-3, in queue order (least certain first)."""
    with DatasetStore.open(data) as store:
        for label in CATALOGUE:
            store.upsert_part(label)
        run_id = store.create_run("bag", "name = 'bag'", "{}", n)
        predictions = []
        for i in range(n):
            low = rng.integers(40, 200, (24, 32, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(low).resize((1024, 768), Image.Resampling.BICUBIC))
            img = img.copy()
            x, y = int(rng.integers(50, 600)), int(rng.integers(50, 400))
            w, h = int(rng.integers(150, 350)), int(rng.integers(120, 300))
            img[y : y + h, x : x + w] = rng.integers(0, 255, 3, dtype=np.uint8)
            mask = np.zeros((768, 1024), np.uint8)
            mask[y : y + h, x : x + w] = 255
            m = store.write_file(f"masks/{run_id}/{i:06d}.png", encoded(mask, "PNG"))
            record = ShotRecord(
                label=UNLABELLED,
                instance_id=f"bag-{i:04d}",
                path="",
                sha256="0" * 64,
                size=0,
                run_id=run_id,
                shot_index=i,
                mask_path=m.path,
                width=1024,
                height=768,
                format="jpeg",
                bbox_x=x,
                bbox_y=y,
                bbox_w=w,
                bbox_h=h,
            )
            jpeg = encoded(img, "JPEG", quality=90)
            shot_id = store.save_shots([(f"images/{run_id}/{i:06d}.jpg", jpeg, record)])[0]
            labels = rng.choice(CATALOGUE, 3, replace=False)
            p = np.sort(rng.dirichlet([1.0, 1.0, 1.0]))[::-1]
            predictions.append(
                (shot_id, [(str(lb), float(v)) for lb, v in zip(labels, p, strict=True)], None)
            )
        store.enqueue_shots(predictions)
        return store.label_queue("bench", limit=1000)["items"]


@dataclass
class Station:
    """What the page does with each key, in Python: the expected result of the script."""

    items: list[dict[str, Any]]
    pos: int = 0
    done: list[list[tuple[int, tuple[Any, ...], tuple[Any, ...]]]] = field(default_factory=list)
    undone: list[list[tuple[int, tuple[Any, ...], tuple[Any, ...]]]] = field(default_factory=list)

    def state(self, i: int) -> tuple[Any, ...]:
        it = self.items[i]
        return (it["state"], it["label"], it["deleted"])

    def set(self, i: int, st: tuple[Any, ...]) -> None:
        self.items[i].update(state=st[0], label=st[1], deleted=st[2])

    def next_open(self, start: int) -> int:
        n = len(self.items)
        for i in [*range(start + 1, n), *range(0, min(start + 1, n))]:
            if self.items[i]["state"] == "open":
                return i
        return min(start + 1, n - 1)

    def act(self, after: tuple[Any, ...]) -> None:
        before = self.state(self.pos)
        self.set(self.pos, after)
        self.done.append([(self.pos, before, after)])
        self.undone.clear()
        self.pos = self.next_open(self.pos)

    def press(self, key: str) -> bool:
        """Apply ``key``; False when it would do nothing the page shows (then not scripted)."""
        it = self.items[self.pos]
        if key in ("Enter", "2", "3"):
            choice = {"Enter": None, "2": 1, "3": 2}[key]
            if choice is None:
                label = it["label"] or it["top_k"][0][0]
            elif len(it["top_k"]) > choice:
                label = it["top_k"][choice][0]
            else:
                return False
            self.act(("accepted", label, False))
        elif key == "x":
            self.act(("discarded", it["label"], True))
        elif key == "s":
            self.pos = self.next_open(self.pos)
        elif key == "j":
            self.pos = min(self.pos + 1, len(self.items) - 1)
        elif key == "k":
            self.pos = max(self.pos - 1, 0)
        elif key == "z":
            if not self.done:
                return False
            action = self.done.pop()
            for i, before, _ in action:
                self.set(i, before)
            self.undone.append(action)
            self.pos = action[0][0]
        elif key == "Shift+Z":
            if not self.undone:
                return False
            action = self.undone.pop()
            for i, _, after in action:
                self.set(i, after)
            self.done.append(action)
            if self.items[self.pos]["state"] != "open":
                self.pos = self.next_open(self.pos)
        return True


def script(items: list[dict[str, Any]], presses: int, seed: int) -> tuple[list[str], Station]:
    rnd = random.Random(seed)
    model = Station([dict(it, label=None, deleted=False) for it in items])
    keys: list[str] = []
    while len(keys) < presses:
        key = rnd.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if model.undone and rnd.random() < 0.35:
            key = "Shift+Z"  # NOTE: redo is only possible right after an undo
        if model.press(key):
            keys.append(key)
    return keys, model


def serve(data: str, port: int) -> None:
    """The server in a process of its own, as on the rig (the browser is another machine)."""
    import uvicorn

    settings = apply_sim(
        parse_settings(
            {
                "camera": {"driver": "sim", "still_size": [320, 240], "preview_size": [160, 120]},
                "simulator": {"time_scale": 0},
                "data": {"dir": data},
                "auth": {
                    "operator_password_hash": hash_password(PASSWORD),
                    "session_secret": "l" * 32,
                },
            }
        )
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def start_server(data: Path) -> tuple[str, Any]:
    import multiprocessing

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(str(data), port))
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not proc.is_alive():
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def drive(url: str, keys: list[str]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script("performance.setResourceTimingBufferSize(100000)")
        page.set_default_timeout(60_000)
        page.goto(url + "/label")
        page.fill("#password", PASSWORD)
        page.click("#signin")
        page.wait_for_selector("#station[data-ready='1']")
        page.wait_for_function("document.querySelector('#figure img.shot')")
        started = time.monotonic()
        for n, key in enumerate(keys, start=1):
            page.keyboard.press(key)
            page.wait_for_function(f"window.partrigLabel.timings.length >= {n}")
        page.wait_for_function("window.partrigLabel.idle()")
        elapsed = time.monotonic() - started
        timings = page.evaluate("window.partrigLabel.timings")
        fetched = page.evaluate(
            "new Set(performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => /\\/api\\/label\\/items\\/\\d+\\/image$/.test(n))).size"
        )
        shown = page.evaluate("window.partrigLabel.shown()")
        browser.close()
    return {"timings": timings, "elapsed_s": elapsed, "fetched": fetched, "shown": shown}


def verify(data: Path, model: Station) -> list[str]:
    """Every item's queue state, and its shot's label and deletion, as the script says."""
    problems = []
    with DatasetStore.open(data) as store:
        for it in model.items:
            row = store.label_item(it["id"])
            shot = store.get_shot(row["shot_id"])
            want_label = it["label"] or UNLABELLED
            got = (row["state"], shot["label"], shot["deleted_at"] is not None)
            want = (it["state"], want_label, it["deleted"])
            if got != want:
                problems.append(f"item {it['id']}: got {got}, script says {want}")
        if not store.check(verify_checksums=False).ok:
            problems.append("the store check found problems")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--presses", type=int, default=210)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="bench-labelling-") as tmp:
        data = Path(tmp) / "data"
        items = seed_store(data, args.items, np.random.default_rng(args.seed))
        keys, model = script(items, args.presses, args.seed)
        url, server = start_server(data)
        try:
            run = drive(url, keys)
        finally:
            server.terminate()
            server.join(30)
        problems = verify(data, model)
    t = np.asarray(run["timings"], float)
    resolved = sum(1 for it in model.items if it["state"] != "open")
    result = {
        "bench": "labelling",
        "ui_ms_p95": round(float(np.percentile(t, 95)), 1),
        "ui_ms_p50": round(float(np.percentile(t, 50)), 1),
        "ui_ms_max": round(float(t.max()), 1),
        "samples": int(t.size),
        "key_presses": len(keys),
        "keys": {k: keys.count(k) for k, _ in MIX},
        "ui_ms_p95_by_key": {
            k: round(
                float(np.percentile([x for x, y in zip(t, keys, strict=True) if y == k], 95)), 1
            )
            for k, _ in MIX
            if k in keys
        },
        "labels_per_min": round(resolved / (run["elapsed_s"] / 60), 1),
        "resolved": resolved,
        "session_s": round(run["elapsed_s"], 1),
        "images_fetched": run["fetched"],
        "items_shown": run["shown"],
        "prefetch_ok": run["fetched"] <= run["shown"] + 3,
        "db_verified": not problems,
        "problems": problems[:5],
    }
    print(json.dumps(result))
    if problems or not result["prefetch_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
