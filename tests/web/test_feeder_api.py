"""The sorter's feeder view (web/routers/feeder.py, web/feeder_view.py): the frames the sorting
loop already took, with the part's box, its recent decisions with their crops, encoded only
while somebody watches and never by grabbing the camera a second time."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from web_helpers import OP, VIEW, make_settings

from classify.sorter import REFERENCE_FRAMES, SortDecision
from classify.sorter_view import RECENT_DECISIONS, SeenFrame
from web.app import create_app
from web.feeder_view import SETTLING, SORTED, FeederFrames, annotated
from web.routers.rig import mjpeg_stream


class CountingCamera:
    """The sorter's camera, recording which thread asked for each frame."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.threads: list[str] = []

    def preview(self) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        return self.inner.preview()

    def preview_tagged(self) -> tuple[np.ndarray, str | None]:
        self.threads.append(threading.current_thread().name)
        tagged: tuple[np.ndarray, str | None] = self.inner.preview_tagged()
        return tagged

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    with TestClient(create_app(make_settings(tmp_path / "data"))) as c:
        yield c


def wait_for(check: Any, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def take(hub: Any, n: int) -> list[bytes]:
    async def frames() -> list[bytes]:
        return [part async for part in mjpeg_stream(hub, max_frames=n)]

    return asyncio.run(frames())


def test_the_feeder_view_shows_the_sorters_frames_decisions_and_crops(sim: TestClient) -> None:
    sorter = sim.app.state.sorter
    camera = sorter.camera = CountingCamera(sorter.camera)
    before = sim.get("/api/sorter/feeder", headers=VIEW).json()
    assert before["frame"] is None and before["recent"] == [] and not before["part_in_view"]
    assert sim.post("/api/sorter/start", json={"collect_for_review": True}, headers=OP).is_success
    try:
        wait_for(lambda: sorter.counts["decisions"] >= 2)
        hub = sim.app.state.feeder_preview
        parts = take(hub, 3)
    finally:
        sim.post("/api/sorter/stop", headers=OP)
    assert all(p.startswith(b"--partrigframe\r\nContent-Type: image/jpeg") for p in parts)
    view = sim.get("/api/sorter/feeder", headers=VIEW).json()
    assert view["frame"]["width"] == 160 and view["frame"]["height"] == 120
    assert view["part_in_view"] == (view["frame"]["bbox"] is not None)
    sorted_since_start = sum(view["by_bin"].values())
    assert len(view["recent"]) == min(sorted_since_start, RECENT_DECISIONS) >= 2
    newest = view["recent"][0]
    assert newest["number"] > view["recent"][1]["number"] and newest["rule"] == "no_model"
    crop = sim.get(newest["crop"], headers=VIEW)
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    w, h = Image.open(io.BytesIO(crop.content)).size
    assert w == h > 8
    assert sim.get("/api/sorter/feeder/crops/999999.jpg", headers=VIEW).status_code == 404
    # nobody watches: the encoder stops and encodes nothing more
    wait_for(lambda: not hub.running, 5.0)
    encoded = hub.encoded
    time.sleep(0.3)
    assert hub.encoded == encoded >= 1 and hub.viewers == 0
    # the view never grabbed the camera: it took exactly the frames the sorter counted
    assert camera.threads and "preview-encoder" not in camera.threads
    counts = sorter.counts
    assert len(camera.threads) == counts["frames"] + REFERENCE_FRAMES + counts["camera_errors"]


def test_the_feeder_stream_needs_a_token_or_credentials(sim: TestClient) -> None:
    assert sim.get("/api/sorter/feeder/stream.mjpg").status_code == 401
    assert sim.get("/api/sorter/feeder/stream.mjpg?token=forged").status_code == 401
    assert sim.get("/api/sorter/feeder").status_code == 401


def seen(number: int, bbox: tuple[int, int, int, int] | None, d: SortDecision | None = None):
    return SeenFrame(number, np.zeros((120, 160, 3), np.uint8), bbox, d)


def decision(bbox: tuple[int, int, int, int]) -> SortDecision:
    return SortDecision("brick-2x4-red", 0.9, [], 2, "mapped", "m1", bbox, 1.0, "now")


def test_the_box_is_amber_while_the_part_settles_and_green_once_it_is_sorted() -> None:
    box = (40, 30, 50, 40)
    settling = annotated(seen(1, box), None)
    assert tuple(settling[30, 60]) == SETTLING and not settling[60, 60].any()
    sorted_ = annotated(seen(2, box), seen(7, box, decision(box)))
    assert tuple(sorted_[30 + 39, 60]) == SORTED
    frame = seen(3, box)
    annotated(frame, None)
    assert not frame.frame.any(), "the loop's own frame is never drawn on"


def test_the_feeder_source_gives_each_frame_once_and_nothing_without_a_new_one() -> None:
    class Loop:
        def __init__(self) -> None:
            self.seen: SeenFrame | None = None
            self.recent: deque[SeenFrame] = deque()

    loop = Loop()
    source = FeederFrames(loop)
    assert source.preview() is None
    loop.seen = seen(1, None)
    assert source.preview() is not None
    assert source.preview() is None, "the same frame is not encoded twice"
    loop.seen = seen(2, None)
    assert source.preview() is not None
