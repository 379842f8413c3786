"""Keyset pagination: pages put together are exactly the full sorted query, for any data."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.store import DatasetStore, ShotRecord
from rig.errors import QueryError

# NOTE: few distinct timestamps on purpose, so many shots tie on captured_at and the id
# tie-breaker of the cursor is really exercised.
shot_strategy = st.lists(
    st.tuples(
        st.sampled_from(["3001", "3002", "3003"]),  # label
        st.sampled_from([1, 2]),  # background
        st.integers(0, 3),  # timestamp bucket
        st.booleans(),  # deleted
    ),
    max_size=40,
)


def _fill(store: DatasetStore, shots: list[tuple[str, int, int, bool]]) -> None:
    run_id = store.create_run("r", "", "{}", len(shots))
    records = []
    deleted = []
    for i, (label, bg, t, gone) in enumerate(shots):
        stored = store.write_file(f"images/{run_id}/{i:06d}.jpg", b"%d" % i)
        records.append(
            ShotRecord(
                label=label,
                instance_id=f"{label}-a",
                run_id=run_id,
                shot_index=i,
                path=stored.path,
                sha256=stored.sha256,
                size=stored.size,
                background_id=bg,
                captured_at=f"2025-01-01T00:00:0{t}Z",
            )
        )
        if gone:
            deleted.append(i)
    ids = store.add_shots(records)
    for i in deleted:
        store.delete_shot(ids[i], "test")


def _walk(store: DatasetStore, limit: int, **filters) -> list[int]:
    seen: list[int] = []
    cursor = None
    for _ in range(100):
        page = store.query_shots(limit=limit, cursor=cursor, **filters)
        assert len(page.items) <= limit
        seen += [s["id"] for s in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shots=shot_strategy,
    limit=st.integers(1, 7),
    label=st.sampled_from([None, "3001"]),
    background=st.sampled_from([None, 2]),
)
def test_pages_concatenated_equal_the_full_sorted_query(shots, limit, label, background) -> None:
    with tempfile.TemporaryDirectory() as tmp, DatasetStore.open(Path(tmp)) as store:
        _fill(store, shots)
        full = store.query(
            "SELECT id FROM shots WHERE deleted_at IS NULL"
            " AND (? IS NULL OR label = ?) AND (? IS NULL OR background_id = ?)"
            " ORDER BY captured_at DESC, id DESC",
            (label, label, background, background),
        )
        assert _walk(store, limit, label=label, background=background) == [r["id"] for r in full]


def test_a_cursor_not_issued_by_the_store_is_a_query_error(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path) as store:
        with pytest.raises(QueryError, match="cursor"):
            store.query_shots(cursor="not-a-cursor")
        with pytest.raises(QueryError, match="limit"):
            store.query_shots(limit=0)


def test_filters_by_run_and_instance_and_include_deleted(tmp_path: Path) -> None:
    with DatasetStore.open(tmp_path) as store:
        _fill(store, [("3001", 1, 0, False), ("3002", 1, 1, True), ("3002", 2, 2, False)])
        assert [s["shot_index"] for s in store.query_shots(instance="3002-a").items] == [2]
        assert len(store.query_shots(run=1, include_deleted=True).items) == 3
        assert store.query_shots(run=2).items == []
