"""The labelling station's store: the label queue, undoable actions and each person's cursor.

Why actions record every touched item's state before and after: an undo must restore exactly
what the action changed (a relabel's old label, a discarded shot's files, a sorter review item
that became a shot), and must refuse when someone changed an item since, rather than guess.
Every change of a shot's field also goes into the field-level ``shot_edits`` log, tied to its
action, so a shot's history reads as what happened, undos included.

The queue holds shots (a bag run's pre-labelled shots, anything queued for a check) and the
sorter's open review items, which join the queue whenever it is read (:meth:`sync_label_queue`);
it is ordered by the model's margin (top-1 minus top-2), least certain first, so the labels
that teach the next model most come first.  A review item becomes a ``source = "sorter"`` shot
when first accepted; undoing that deletes the shot (its file to the trash), and a later accept
restores the same shot instead of making a second one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from capture.plans.schema import UNLABELLED
from capture.store.base import Repository, StoreBase
from capture.store.catalogue import replay_attributes
from capture.store.files import move_durably
from capture.store.records import ShotRecord, lastrowid, to_json, utc_now
from capture.store.runs import ensure_catalogue
from capture.store.shots import _INSERT_SQL, TRASH_DIR, _shot_values
from rig.errors import NotFound, QueryError, RunStateError, StoreError

#: The most items one action (a bulk accept) may touch, and one queue page may list.
MAX_BULK = 500
MAX_QUEUE_PAGE = 1000

_ITEM_SQL = """
SELECT q.id, q.shot_id, q.review_item_id, q.top_k, q.margin, q.model_id, q.state,
       s.label AS shot_label, s.deleted_at, s.width, s.height, s.mask_path, s.path,
       s.bbox_x, s.bbox_y, s.bbox_w, s.bbox_h,
       r.state AS review_state, r.label AS review_label, r.shot_id AS review_shot,
       r.crop_path, d.crop_bbox
FROM label_queue q
LEFT JOIN shots s ON s.id = q.shot_id
LEFT JOIN review_items r ON r.id = q.review_item_id
LEFT JOIN decisions d ON d.id = r.decision_id
"""
#: Least certain first; an item without a prediction (margin NULL) knows least of all.
_ORDER_KEY = "COALESCE(q.margin, -1.0)"


def margin_of(top_k: Sequence[Sequence[Any]]) -> float | None:
    """Top-1 minus top-2 probability (top-1 alone when there is no second); None without any."""
    scores = sorted((float(s) for _, s in top_k), reverse=True)
    if not scores:
        return None
    return scores[0] - (scores[1] if len(scores) > 1 else 0.0)


class ReviewItems(Protocol):
    """What the queue needs of the sorter's review items (:class:`~.sorting.Sorting`)."""

    def get_review_item(self, item_id: int) -> dict[str, Any]: ...

    def review_shot_record(self, item: dict[str, Any], label: str) -> ShotRecord: ...


class LabelQueue(Repository):
    """The labelling station: the queue, undoable actions, cursors, and review items' answers."""

    def __init__(self, base: StoreBase, reviews: ReviewItems) -> None:
        super().__init__(base)
        self.reviews = reviews

    # --- the queue -------------------------------------------------------------------------------

    def sync_label_queue(self) -> None:
        """Bring open review items into the queue; close queue items resolved on the review page."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO label_queue(review_item_id, top_k, margin, model_id, created_at)"
                " SELECT r.id, d.top_k, json_extract(d.top_k, '$[0][1]')"
                "  - COALESCE(json_extract(d.top_k, '$[1][1]'), 0), d.model_id, r.created_at"
                " FROM review_items r JOIN decisions d ON d.id = r.decision_id"
                " WHERE r.state = 'open'"
                " AND NOT EXISTS (SELECT 1 FROM label_queue q WHERE q.review_item_id = r.id)"
            )
            conn.execute(
                "UPDATE label_queue SET"
                " state = CASE (SELECT r.state FROM review_items r WHERE r.id = review_item_id)"
                "  WHEN 'labelled' THEN 'accepted' ELSE 'discarded' END,"
                " shot_id = COALESCE(shot_id,"
                "  (SELECT r.shot_id FROM review_items r WHERE r.id = review_item_id)),"
                " resolved_at = ?, resolved_by = 'review'"
                " WHERE state = 'open' AND review_item_id IS NOT NULL AND"
                " (SELECT r.state FROM review_items r WHERE r.id = review_item_id) != 'open'",
                (utc_now(),),
            )

    def enqueue_shots(
        self, predictions: Sequence[tuple[int, Sequence[tuple[str, float]], str | None]]
    ) -> int:
        """Queue shots for labelling with their ``(shot_id, top_k, model_id)``; how many.

        A shot already queued and still open gets the newer prediction; one already labelled
        keeps its state (pre-labelling a run twice never reopens what a person decided).
        """
        now = utc_now()
        rows = []
        for shot_id, top_k, model_id in predictions:
            ranked = [[str(k), float(v)] for k, v in top_k]
            rows.append((int(shot_id), to_json(ranked), margin_of(ranked), model_id, now))
        with self.transaction() as conn:
            for row in rows:
                if conn.execute("SELECT 1 FROM shots WHERE id = ?", (row[0],)).fetchone() is None:
                    raise NotFound(f"shot {row[0]} does not exist; it cannot be queued")
            conn.executemany(
                "INSERT INTO label_queue(shot_id, top_k, margin, model_id, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(shot_id) DO UPDATE SET"
                " top_k = excluded.top_k, margin = excluded.margin, model_id = excluded.model_id"
                " WHERE state = 'open'",
                rows,
            )
        return len(rows)

    def label_counts(self, who: str | None = None) -> dict[str, int]:
        """Queue items per state, and (with ``who``) how many actions they can undo and redo."""
        counts = {"open": 0, "accepted": 0, "discarded": 0}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM label_queue GROUP BY 1"):
            counts[str(state)] = int(n)
        if who is not None:
            for state, key in (("done", "undo"), ("undone", "redo")):
                counts[key] = int(
                    self.scalar(
                        "SELECT COUNT(*) FROM label_actions WHERE who = ? AND state = ?",
                        (who, state),
                    )
                )
        return counts

    def label_queue(self, who: str, *, limit: int = 200) -> dict[str, Any]:
        """The open items, least certain first, and where ``who`` left off (``start``)."""
        if not 1 <= int(limit) <= MAX_QUEUE_PAGE:
            raise QueryError(f"limit {limit} must be between 1 and {MAX_QUEUE_PAGE}")
        self.sync_label_queue()
        rows = self.query(
            _ITEM_SQL + f" WHERE q.state = 'open' ORDER BY {_ORDER_KEY}, q.id LIMIT ?",
            (int(limit),),
        )
        items = [_item(r) for r in rows]
        return {"items": items, "start": self._start_index(who, items)}

    def _start_index(self, who: str, items: list[dict[str, Any]]) -> int:
        """The cursor's item if still open, else the first open item after it, else 0."""
        cursor = self.scalar("SELECT queue_id FROM label_cursors WHERE who = ?", (who,))
        if cursor is None:
            return 0
        ids = [i["id"] for i in items]
        if cursor in ids:
            return ids.index(cursor)
        key = self.db.execute(
            f"SELECT {_ORDER_KEY}, q.id FROM label_queue q WHERE q.id = ?", (cursor,)
        ).fetchone()
        if key is None:
            return 0
        for index, item in enumerate(items):
            if (item["order"], item["id"]) > (float(key[0]), int(key[1])):
                return index
        return 0

    def queue_id_of_review_item(self, item_id: int) -> int:
        """The label-queue item of a sorter review item (the review page acts through it)."""
        self.reviews.get_review_item(item_id)
        self.sync_label_queue()
        qid = self.scalar("SELECT id FROM label_queue WHERE review_item_id = ?", (int(item_id),))
        if qid is None:
            raise NotFound(f"review item {item_id} is not in the label queue")
        return int(qid)

    def label_item(self, queue_id: int) -> dict[str, Any]:
        rows = self.query(_ITEM_SQL + " WHERE q.id = ?", (int(queue_id),))
        if not rows:
            raise NotFound(f"label queue item {queue_id} does not exist")
        return _item(rows[0])

    def label_item_files(self, queue_id: int) -> dict[str, str | None]:
        """The image and mask of an item, relative to the data folder (trash for a deleted shot)."""
        row = self.query(_ITEM_SQL + " WHERE q.id = ?", (int(queue_id),))
        if not row:
            raise NotFound(f"label queue item {queue_id} does not exist")
        r = row[0]
        if r["shot_id"] is None or r["path"] is None:
            return {"image": r["crop_path"], "mask": None}
        prefix = f"{TRASH_DIR}/" if r["deleted_at"] else ""
        mask = f"{prefix}{r['mask_path']}" if r["mask_path"] else None
        return {"image": f"{prefix}{r['path']}", "mask": mask}

    def set_label_cursor(self, who: str, queue_id: int) -> None:
        """Remember the item ``who`` is on, so the station resumes there."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM label_queue WHERE id = ?", (int(queue_id),)).fetchone():
                conn.execute(
                    "INSERT INTO label_cursors(who, queue_id, at) VALUES (?, ?, ?)"
                    " ON CONFLICT(who) DO UPDATE SET"
                    " queue_id = excluded.queue_id, at = excluded.at",
                    (who, int(queue_id), utc_now()),
                )
            else:
                raise NotFound(f"label queue item {queue_id} does not exist")

    # --- the review page's answers ---------------------------------------------------------------

    def label_review_item(self, item_id: int, label: str, who: str) -> int:
        """Give an open review item its true label; it becomes a sorter-sourced shot (its id).

        The crop is copied (durably) to ``images/sorter/`` first, so the shot owns its file and
        deleting the shot later never takes a decision's crop with it; then the shot row, its
        fresh instance and the item's new state commit in one transaction, recorded as the
        labelling station's accept.
        """
        label = (label or "").strip()
        if not label:
            raise QueryError("the label is empty: give the part's label, e.g. brick-2x4-red")
        if not who:
            raise QueryError("say who labels the item: it is recorded")
        self._open_item(item_id)
        # NOTE: through the queue, so it is one undoable action and an item whose shot an undo
        # deleted gets that same shot back.
        answer = self.label_accept([self.queue_id_of_review_item(item_id)], who, label)
        return int(answer["items"][0]["shot_id"])

    def discard_review_item(self, item_id: int, who: str) -> None:
        """Drop an open review item (a blurred crop, two parts at once); the crop is kept."""
        if not who:
            raise StoreError("say who discards the item: it is recorded")
        self._open_item(item_id)
        self.label_discard([self.queue_id_of_review_item(item_id)], who)

    def _open_item(self, item_id: int) -> None:
        item = self.reviews.get_review_item(item_id)
        if item["state"] != "open":
            raise RunStateError(
                f"review item {item_id} is already {item['state']}; only open items can be"
                " labelled or discarded"
            )

    # --- actions ---------------------------------------------------------------------------------

    def label_accept(
        self, ids: Sequence[int], who: str, label: str | None = None
    ) -> dict[str, Any]:
        """Accept items with ``label`` (or each with its own label or top-1): one undoable action.

        ``label`` must already be normalised and confirmed by the caller (a label outside the
        catalogue needs a person's explicit yes); items keep their order.
        """
        ids = self._checked_ids(ids, who)
        new_shots: dict[int, Any] = {}
        targets: dict[int, str] = {}
        for qid in ids:
            item = self.label_item(qid)
            chosen = label or item["label"] or (item["top_k"][0][0] if item["top_k"] else None)
            if not chosen:
                raise QueryError(f"item {qid} has no suggestion: choose or type its label")
            targets[qid] = chosen
            if item["shot_id"] is None:
                review = self.reviews.get_review_item(item["review_item_id"])
                new_shots[qid] = self.reviews.review_shot_record(review, chosen)
        return self._act("accept", ids, who, targets, new_shots)

    def label_discard(self, ids: Sequence[int], who: str) -> dict[str, Any]:
        """Discard items (a shot's files go to the trash, a review item is dropped): undoable."""
        ids = self._checked_ids(ids, who)
        return self._act("discard", ids, who, {}, {})

    def label_undo(self, who: str) -> dict[str, Any]:
        """Take back ``who``'s latest action exactly (409 when an item changed since)."""
        return self._replay(who, "done", "before", "undone")

    def label_redo(self, who: str) -> dict[str, Any]:
        """Do ``who``'s most recently undone action again (409 when an item changed since)."""
        return self._replay(who, "undone", "after", "done")

    def _checked_ids(self, ids: Sequence[int], who: str) -> list[int]:
        if not who:
            raise QueryError("say who labels: every action is recorded")
        out = list(dict.fromkeys(int(i) for i in ids))
        if not 1 <= len(out) <= MAX_BULK:
            raise QueryError(f"give between 1 and {MAX_BULK} queue items (got {len(out)})")
        return out

    def _act(
        self,
        kind: str,
        ids: list[int],
        who: str,
        targets: dict[int, str],
        new_shots: dict[int, Any],
    ) -> dict[str, Any]:
        now = utc_now()
        restores = [qid for qid in ids if kind == "accept" and self._deleted_shot(qid)]
        for qid in restores:
            self._untrash(qid)
        trash: list[int] = []
        detail: list[dict[str, Any]] = []
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO label_actions(who, kind, detail, at) VALUES (?, ?, '[]', ?)",
                (who, kind, now),
            )
            action_id = lastrowid(cur)
            conn.execute(
                "UPDATE label_actions SET state = 'dropped' WHERE who = ? AND state = 'undone'",
                (who,),
            )
            for qid in ids:
                before = current = _state(conn, qid)
                if qid in new_shots:
                    # NOTE: undo deletes this shot again; a redo or a later accept restores this
                    # same shot (a review item whose shot is deleted reads as having none).
                    shot = self._create_review_shot(conn, qid, new_shots[qid], who, action_id)
                    current = dict(before, shot=shot, label=new_shots[qid].label, deleted=False)
                    current["_created"] = True
                after = dict(before)
                if kind == "accept":
                    queued = _queue_shot(conn, qid)
                    after.update(state="accepted", shot=queued, label=targets[qid], deleted=False)
                    if after["review"] is not None:
                        after.update(review="labelled", review_label=targets[qid])
                        after["review_shot"] = queued
                else:
                    after.update(state="discarded")
                    if after["review"] is not None:
                        after.update(review="discarded", review_label=None, review_shot=None)
                        after.update(shot=None, label=None, deleted=None)
                    elif after["shot"] is not None:
                        after["deleted"] = True
                _apply(conn, qid, current, after, who, action_id, now, forward=kind)
                if _live(current) and not _live(after):
                    trash.append(qid)
                detail.append({"q": qid, "before": before, "after": after})
            conn.execute(
                "UPDATE label_actions SET detail = ? WHERE id = ?", (json.dumps(detail), action_id)
            )
            conn.execute(
                "INSERT INTO label_cursors(who, queue_id, at) VALUES (?, ?, ?) ON CONFLICT(who)"
                " DO UPDATE SET queue_id = excluded.queue_id, at = excluded.at",
                (who, ids[-1], now),
            )
        for qid in trash:
            self._trash(qid)
        return self._answer(action_id, ids, who)

    def _replay(self, who: str, state: str, side: str, new_state: str) -> dict[str, Any]:
        order = "DESC" if state == "done" else "ASC"
        rows = self.query(
            f"SELECT * FROM label_actions WHERE who = ? AND state = ? ORDER BY id {order} LIMIT 1",
            (who, state),
        )
        if not rows:
            what = "undo" if state == "done" else "redo"
            raise RunStateError(f"nothing to {what}: you have no {state} labelling action")
        action = rows[0]
        if action["kind"] == "set_attribute":
            # NOTE: an attribute edit (capture.store.catalogue) shares the person's history
            with self.transaction() as conn:
                shots = replay_attributes(conn, action, side=side, new_state=new_state, who=who)
            return dict(self._answer(int(action["id"]), [], who), shots=shots)
        detail = json.loads(action["detail"])
        other = "after" if side == "before" else "before"
        for entry in detail:
            if _live(entry[side]) and not _live(entry[other]):
                self._untrash(entry["q"])
        now = utc_now()
        trash: list[int] = []
        with self.transaction() as conn:
            for entry in detail:
                qid, expected, target = entry["q"], entry[other], entry[side]
                if _state(conn, qid) != expected:
                    raise RunStateError(
                        f"queue item {qid} changed after action {action['id']}; it cannot be"
                        " restored exactly: reload and label it again"
                    )
                _apply(conn, qid, expected, target, who, int(action["id"]), now, forward=None)
                if _live(expected) and not _live(target):
                    trash.append(qid)
            conn.execute(
                "UPDATE label_actions SET state = ?, undone_at = ? WHERE id = ?",
                (new_state, now if new_state == "undone" else None, int(action["id"])),
            )
        for qid in trash:
            self._trash(qid)
        return self._answer(int(action["id"]), [e["q"] for e in detail], who)

    def _answer(self, action_id: int, ids: list[int], who: str) -> dict[str, Any]:
        action = self.query("SELECT id, kind, state FROM label_actions WHERE id = ?", (action_id,))
        return {
            "action": action[0],
            "items": [self.label_item(qid) for qid in ids],
            "counts": self.label_counts(who),
        }

    def _create_review_shot(
        self, conn: sqlite3.Connection, qid: int, record: Any, who: str, action_id: int
    ) -> int:
        """Insert a review item's shot (live), logged as accepted; its id."""
        if _queue_shot(conn, qid) is not None:
            raise RunStateError(f"queue item {qid} got its shot meanwhile; reload")
        ensure_catalogue(conn, label=record.label, instance_id=record.instance_id, source="sorter")
        cur = conn.execute(_INSERT_SQL, _shot_values(record))
        shot_id = lastrowid(cur)
        conn.execute("UPDATE label_queue SET shot_id = ? WHERE id = ?", (shot_id, qid))
        conn.execute(
            "INSERT INTO shot_edits(shot_id, action, field, old, new, who, at, action_id)"
            " VALUES (?, 'accept', 'label', NULL, ?, ?, ?, ?)",
            (shot_id, record.label, who, utc_now(), action_id),
        )
        return shot_id

    def _deleted_shot(self, qid: int) -> bool:
        row = self.db.execute(
            "SELECT s.deleted_at FROM label_queue q JOIN shots s ON s.id = q.shot_id"
            " WHERE q.id = ?",
            (qid,),
        ).fetchone()
        return row is not None and row[0] is not None

    def _shot_files(self, qid: int) -> list[str]:
        row = self.db.execute(
            "SELECT s.path, s.mask_path, s.thumb_path FROM label_queue q"
            " JOIN shots s ON s.id = q.shot_id WHERE q.id = ?",
            (qid,),
        ).fetchone()
        return [p for p in (row or ()) if p]

    def _trash(self, qid: int) -> None:
        """After the row says deleted: the files to the trash (startup finishes a crash here)."""
        for rel in self._shot_files(qid):
            if (self.data_dir / rel).exists():
                move_durably(self.data_dir / rel, self.data_dir / TRASH_DIR / rel, self.fs)

    def _untrash(self, qid: int) -> None:
        """Before the row says live: the files back from the trash."""
        for rel in self._shot_files(qid):
            src = self.data_dir / TRASH_DIR / rel
            if src.exists():
                move_durably(src, self.data_dir / rel, self.fs)


def _live(st: dict[str, Any]) -> bool:
    """Whether the item's shot exists and is not deleted in this state."""
    return st["shot"] is not None and not st["deleted"]


def _queue_shot(conn: sqlite3.Connection, qid: int) -> int | None:
    row = conn.execute("SELECT shot_id FROM label_queue WHERE id = ?", (qid,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _state(conn: sqlite3.Connection, qid: int) -> dict[str, Any]:
    """What an action changes on one item: queue state, shot label and deletion, review item."""
    row = conn.execute(
        "SELECT q.state, q.shot_id, s.label, s.deleted_at, r.state, r.label, r.shot_id"
        " FROM label_queue q LEFT JOIN shots s ON s.id = q.shot_id"
        " LEFT JOIN review_items r ON r.id = q.review_item_id WHERE q.id = ?",
        (int(qid),),
    ).fetchone()
    if row is None:
        raise NotFound(f"label queue item {qid} does not exist")
    shot, label, deleted = row[1], row[2], None if row[1] is None else row[3] is not None
    if row[4] is not None and deleted:
        # NOTE: a review item whose shot an undo (or a discard) deleted is as if it had none
        shot, label, deleted = None, None, None
    return {
        "state": row[0],
        "shot": shot,
        "label": label,
        "deleted": deleted,
        "review": row[4],
        "review_label": row[5],
        "review_shot": row[6],
    }


def _apply(
    conn: sqlite3.Connection,
    qid: int,
    cur: dict[str, Any],
    target: dict[str, Any],
    who: str,
    action_id: int,
    now: str,
    *,
    forward: str | None,
) -> None:
    """Move one item from ``cur`` to ``target``, logging each shot field that changes."""
    resolved = (None, None) if target["state"] == "open" else (now, who)
    conn.execute(
        "UPDATE label_queue SET state = ?, resolved_at = ?, resolved_by = ? WHERE id = ?",
        (target["state"], *resolved, qid),
    )

    shot = _queue_shot(conn, qid)

    def edit(action: str, field: str, old: Any, new: Any) -> None:
        conn.execute(
            "INSERT INTO shot_edits(shot_id, action, field, old, new, who, at, action_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (shot, action, field, old, new, who, now, action_id),
        )

    if shot is not None:
        row = conn.execute("SELECT label, deleted_at FROM shots WHERE id = ?", (shot,)).fetchone()
        if _live(target) != _live(cur):
            conn.execute(
                "UPDATE shots SET deleted_at = ? WHERE id = ?",
                (None if _live(target) else now, shot),
            )
            if _live(target):
                edit("restore", "deleted_at", row[1], None)
            else:
                edit("discard" if forward == "discard" else "delete", "deleted_at", None, now)
        if target["label"] is not None and target["label"] != row[0]:
            ensure_catalogue(conn, label=target["label"])
            conn.execute("UPDATE shots SET label = ? WHERE id = ?", (target["label"], shot))
            if forward != "accept":
                edit("relabel", "label", row[0], target["label"])
        if forward == "accept" and not cur.get("_created"):
            edit("accept", "label", row[0], target["label"])
    if target["review"] is not None:
        resolved = (None, None) if target["review"] == "open" else (now, who)
        conn.execute(
            "UPDATE review_items SET state = ?, label = ?, shot_id = ?, resolved_at = ?,"
            " resolved_by = ? WHERE id = (SELECT review_item_id FROM label_queue WHERE id = ?)",
            (target["review"], target["review_label"], target["review_shot"], *resolved, qid),
        )


def _item(row: dict[str, Any]) -> dict[str, Any]:
    """A queue row as the station shows it: current label, top-k, box and what to draw."""
    top_k = json.loads(row["top_k"] or "[]")
    live_shot = row["shot_id"] is not None and row["deleted_at"] is None
    if row["review_item_id"] is not None:
        label = row["shot_label"] if live_shot else None
        box = row["crop_bbox"]
        box = json.loads(box) if isinstance(box, str) else box
    else:
        # NOTE: a bag run's placeholder is no label: accepting takes the top-1
        # (capture.plans.schema)
        label = None if row["shot_label"] == UNLABELLED else row["shot_label"]
        box = (
            [row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]]
            if row["bbox_w"] is not None
            else None
        )
    if row["shot_id"] is not None and row["bbox_w"] is not None:
        box = [row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]]
    margin = row["margin"]
    return {
        "id": row["id"],
        "state": row["state"],
        "kind": "review" if row["review_item_id"] is not None else "shot",
        "shot_id": row["shot_id"],
        "review_item_id": row["review_item_id"],
        "label": label,
        "top_k": top_k,
        "margin": margin,
        "order": -1.0 if margin is None else float(margin),
        "model_id": row["model_id"],
        "box": box,
        "has_mask": bool(row["mask_path"]),
        "width": row["width"],
        "height": row["height"],
    }
