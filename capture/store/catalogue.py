"""The part catalogue: each label's name and attributes, per-shot overrides, and their undo.

The read API other layers use (the trainer's heads, the sorter's rules, the exports) is the
module-level functions taking a connection, so they work on any of the store's connections
without the store class::

    from capture.store.catalogue import attributes_for_label, catalogue, shot_attributes

    attributes_for_label(store.db.conn, "m4-screw")   # {"category": "screw", "thread": "M4", ...}
    catalogue(store.db.conn)            # {"m4-screw": {"name": ..., "attributes": {...}}, ...}
    shot_attributes(store.db.conn, [12, 13])   # {12: {... the part's, overridden per shot}}

Why attributes are ``str | float`` and nothing else: a value is either a word a rule compares
for equality (``colour = red``) or a number it compares by range (``nominal_length_mm``); a
value that reads as a number is stored as one (:func:`parse_value`), so ``10`` typed on the
page, ``10`` in a CSV and ``10.0`` in a plan are the same value.

Writes go through :class:`Catalogue`, which wraps one store's transactions.  A per-shot edit is
one ``label_actions`` row of kind ``set_attribute`` (the labelling station's undo stack) plus
one field-level ``shot_edits`` row per shot, so ``z`` on the label page or Undo on the shot
page takes back an attribute edit exactly as it takes back a label.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from capture.store.records import lastrowid, utc_now
from rig.errors import NotFound, QueryError, RunStateError

AttrValue = str | float
Attributes = dict[str, AttrValue]

#: An attribute's name: lower case, digits and underscores, e.g. ``nominal_length_mm``.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: Names that are columns of the catalogue itself (a CSV's ``label`` and ``name``), not attributes.
RESERVED = frozenset({"label", "name", "instance", "instance_id", "split", "id", "shot_id"})
#: The two attributes every catalogue page shows first.
STANDARD = ("category", "colour")
MAX_ATTRIBUTES = 32
MAX_VALUE_CHARS = 200
#: The most shots one attribute edit may touch (one undoable action, like a bulk accept).
MAX_SHOTS = 500


def check_name(name: str) -> str:
    """An attribute name as stored, or a QueryError saying what a valid one looks like."""
    text = str(name).strip().lower()
    if not NAME_PATTERN.match(text):
        raise QueryError(
            f"attribute name {str(name)[:60]!r} is not valid: use lower-case letters, digits and"
            " underscores, starting with a letter, at most 40 characters (e.g. head_type,"
            " nominal_length_mm)"
        )
    if text in RESERVED:
        raise QueryError(f"'{text}' is a catalogue column, not an attribute: choose another name")
    return text


def parse_value(raw: object, name: str = "value") -> AttrValue | None:
    """A value as stored: a finite number as float, other text stripped; blank is None.

    Raises QueryError for text longer than 200 characters or a non-finite number.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise QueryError(f"{name}: give a word or a number, not true/false")
    if isinstance(raw, int | float):
        number = float(raw)
        if not math.isfinite(number):
            raise QueryError(f"{name}: {raw!r} is not a finite number")
        return number
    text = str(raw).strip()
    if not text:
        return None
    if len(text) > MAX_VALUE_CHARS:
        raise QueryError(f"{name}: the value is {len(text)} characters, at most 200 are allowed")
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        raise QueryError(f"{name}: {text!r} is not a finite number")
    return number


def check_attributes(raw: Mapping[str, object]) -> Attributes:
    """Names checked, values parsed, blanks dropped; at most 32 attributes."""
    out: Attributes = {}
    for key, value in raw.items():
        name = check_name(key)
        parsed = parse_value(value, name)
        if parsed is not None:
            out[name] = parsed
    if len(out) > MAX_ATTRIBUTES:
        raise QueryError(f"a part has {len(out)} attributes; at most {MAX_ATTRIBUTES} are allowed")
    return out


def _decode_meta(text: str | None) -> Attributes:
    try:
        meta = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(meta, dict):
        return {}
    return {str(k): v for k, v in meta.items() if isinstance(v, str | float | int)}


def _value(raw: object) -> AttrValue:
    return float(raw) if isinstance(raw, int | float) else str(raw)


# --- the read API -----------------------------------------------------------------------------


def attributes_for_label(conn: sqlite3.Connection, label: str) -> Attributes:
    """A part's attributes (``{}`` for a label without any, or unknown)."""
    row = conn.execute("SELECT meta FROM parts WHERE label = ?", (label,)).fetchone()
    return {} if row is None else _decode_meta(row[0])


def catalogue(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Every part by label: ``{"name": str, "attributes": {...}}``, in label order."""
    rows = conn.execute("SELECT label, name, meta FROM parts ORDER BY label").fetchall()
    return {
        str(label): {"name": name or label, "attributes": _decode_meta(meta)}
        for label, name, meta in rows
    }


def attribute_names(conn: sqlite3.Connection) -> list[str]:
    """Every attribute name the catalogue or an override uses, the standard ones first."""
    names: set[str] = set()
    for (meta,) in conn.execute("SELECT meta FROM parts"):
        names.update(_decode_meta(meta))
    names.update(str(n) for (n,) in conn.execute("SELECT DISTINCT name FROM shot_attributes"))
    return [n for n in STANDARD if n in names] + sorted(names - set(STANDARD))


def shot_overrides(conn: sqlite3.Connection, shot_ids: Sequence[int]) -> dict[int, Attributes]:
    """The per-shot overrides of these shots (shots without any are absent)."""
    out: dict[int, Attributes] = {}
    ids = [int(i) for i in shot_ids]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT shot_id, name, value FROM shot_attributes WHERE shot_id IN ({marks})"
        for shot_id, name, value in conn.execute(sql, chunk):
            out.setdefault(int(shot_id), {})[str(name)] = _value(value)
    return out


def shot_attributes(conn: sqlite3.Connection, shot_ids: Sequence[int]) -> dict[int, Attributes]:
    """Each shot's attributes: its part's, with its own overrides on top (every id present)."""
    ids = [int(i) for i in shot_ids]
    labels: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for shot_id, label in conn.execute(
            f"SELECT id, label FROM shots WHERE id IN ({marks})", chunk
        ):
            labels[int(shot_id)] = str(label)
    parts = {label: attributes_for_label(conn, label) for label in set(labels.values())}
    overrides = shot_overrides(conn, ids)
    return {i: {**parts.get(labels.get(i, ""), {}), **overrides.get(i, {})} for i in ids}


def attribute_filter_sql(attributes: Mapping[str, object]) -> tuple[list[str], list[Any]]:
    """WHERE clauses (over ``shots``) keeping shots whose effective attribute equals the value."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, raw in attributes.items():
        name = check_name(key)
        value = parse_value(raw, name)
        if value is None:
            raise QueryError(f"attribute filter {name}: give the value to match")
        clauses.append(
            "COALESCE((SELECT sa.value FROM shot_attributes sa WHERE sa.shot_id = shots.id"
            " AND sa.name = ?), (SELECT json_extract(p.meta, ?) FROM parts p"
            " WHERE p.label = shots.label)) = ?"
        )
        params += [name, f"$.{name}", value]
    return clauses, params


# --- writing ----------------------------------------------------------------------------------


def write_part(
    conn: sqlite3.Connection,
    label: str,
    attributes: Attributes,
    *,
    name: str | None = None,
    replace: bool = True,
) -> Attributes:
    """Create or update one part's attributes inside the caller's transaction; the result.

    ``replace`` sets exactly ``attributes``; otherwise they are merged over the stored ones.
    A ``name`` of None keeps the stored one (a new part is named by its label).
    """
    current = attributes_for_label(conn, label)
    merged = dict(attributes) if replace else {**current, **attributes}
    conn.execute(
        "INSERT INTO parts(label, name, meta) VALUES (?, ?, ?) ON CONFLICT(label) DO UPDATE"
        " SET name = COALESCE(?, parts.name), meta = excluded.meta",
        (label, name or label, json.dumps(merged, sort_keys=True), name),
    )
    return merged


def _override(conn: sqlite3.Connection, shot_id: int, name: str) -> AttrValue | None:
    row = conn.execute(
        "SELECT value FROM shot_attributes WHERE shot_id = ? AND name = ?", (shot_id, name)
    ).fetchone()
    return None if row is None else _value(row[0])


def _show(value: AttrValue | None) -> str | None:
    """A value as the edit log shows it (a whole number without ``.0``)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def apply_override(
    conn: sqlite3.Connection,
    shot_id: int,
    name: str,
    value: AttrValue | None,
    *,
    who: str,
    action_id: int,
    at: str,
) -> None:
    """Set (or with None remove) one shot's override, logging the field-level edit."""
    old = _override(conn, shot_id, name)
    if value is None:
        conn.execute("DELETE FROM shot_attributes WHERE shot_id = ? AND name = ?", (shot_id, name))
    else:
        conn.execute(
            "INSERT INTO shot_attributes(shot_id, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT(shot_id, name) DO UPDATE SET value = excluded.value",
            (shot_id, name, value),
        )
    conn.execute(
        "INSERT INTO shot_edits(shot_id, action, field, old, new, who, at, action_id)"
        " VALUES (?, 'set_attribute', ?, ?, ?, ?, ?, ?)",
        (shot_id, name, _show(old), _show(value), who, at, action_id),
    )


def replay_attribute_action(
    conn: sqlite3.Connection,
    detail: Sequence[Mapping[str, Any]],
    *,
    side: str,
    who: str,
    action_id: int,
    at: str,
) -> list[int]:
    """Undo (``side="before"``) or redo (``"after"``) a ``set_attribute`` action; its shots.

    Refuses (RunStateError, a 409) when a shot's override changed since, rather than guess.
    """
    other = "after" if side == "before" else "before"
    for entry in detail:
        if _override(conn, int(entry["shot"]), str(entry["name"])) != entry[other]:
            raise RunStateError(
                f"attribute {entry['name']} of shot {entry['shot']} changed after action"
                f" {action_id}; it cannot be restored exactly: reload and set it again"
            )
    for entry in detail:
        apply_override(
            conn,
            int(entry["shot"]),
            str(entry["name"]),
            entry[side],
            who=who,
            action_id=action_id,
            at=at,
        )
    return [int(e["shot"]) for e in detail]


def replay_attributes(
    conn: sqlite3.Connection, action: Mapping[str, Any], *, side: str, new_state: str, who: str
) -> list[int]:
    """Undo or redo one ``set_attribute`` row of ``label_actions`` and mark its new state;
    called by the labelling station's undo/redo inside its transaction.  Its shots."""
    now = utc_now()
    shots = replay_attribute_action(
        conn, json.loads(action["detail"]), side=side, who=who, action_id=int(action["id"]), at=now
    )
    conn.execute(
        "UPDATE label_actions SET state = ?, undone_at = ? WHERE id = ?",
        (new_state, now if new_state == "undone" else None, int(action["id"])),
    )
    return shots


class StoreLike(Protocol):
    """What :class:`Catalogue` needs of a store: its write transaction and a connection."""

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    @property
    def db(self) -> Any: ...


class Catalogue:
    """The catalogue's writes over one store, each in one transaction."""

    def __init__(self, store: StoreLike) -> None:
        self.store = store

    @property
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self.store.db.conn
        return conn

    def catalogue(self) -> dict[str, dict[str, Any]]:
        return catalogue(self._conn)

    def attributes_for_label(self, label: str) -> Attributes:
        return attributes_for_label(self._conn, label)

    def shot_attributes(self, shot_id: int) -> dict[str, Any]:
        """A shot's attributes as its page shows them: effective, inherited and overridden."""
        conn = self._conn
        row = conn.execute("SELECT label FROM shots WHERE id = ?", (int(shot_id),)).fetchone()
        if row is None:
            raise NotFound(f"shot {shot_id} does not exist")
        inherited = attributes_for_label(conn, str(row[0]))
        own = shot_overrides(conn, [int(shot_id)]).get(int(shot_id), {})
        return {"attributes": {**inherited, **own}, "part": inherited, "overrides": own}

    def set_part(
        self,
        label: str,
        attributes: Mapping[str, object],
        *,
        name: str | None = None,
        replace: bool = True,
    ) -> Attributes:
        """Create or update a part's catalogue entry (the label must already be normalised)."""
        checked = check_attributes(attributes)
        with self.store.transaction() as conn:
            return write_part(conn, label, checked, name=name, replace=replace)

    def set_parts(self, entries: Sequence[tuple[str, str | None, Attributes]]) -> int:
        """Several parts in one transaction (a CSV import: all rows or none); how many."""
        with self.store.transaction() as conn:
            for label, name, attributes in entries:
                write_part(conn, label, attributes, name=name, replace=True)
        return len(entries)

    def set_shot_attribute(
        self, shot_ids: Sequence[int], name: str, raw: object, who: str
    ) -> dict[str, Any]:
        """Override one attribute on shots (None or blank removes the override): undoable.

        One ``label_actions`` row of kind ``set_attribute`` in ``who``'s history; undo and redo
        go through the labelling station's :meth:`label_undo` / :meth:`label_redo`.
        """
        if not who:
            raise QueryError("say who edits: every change is recorded")
        field = check_name(name)
        value = parse_value(raw, field)
        ids = list(dict.fromkeys(int(i) for i in shot_ids))
        if not 1 <= len(ids) <= MAX_SHOTS:
            raise QueryError(f"give between 1 and {MAX_SHOTS} shots (got {len(ids)})")
        now = utc_now()
        with self.store.transaction() as conn:
            for shot_id in ids:
                row = conn.execute(
                    "SELECT deleted_at FROM shots WHERE id = ?", (shot_id,)
                ).fetchone()
                if row is None or row[0] is not None:
                    raise NotFound(f"shot {shot_id} does not exist or was deleted")
            cur = conn.execute(
                "INSERT INTO label_actions(who, kind, detail, at) VALUES (?, 'set_attribute',"
                " '[]', ?)",
                (who, now),
            )
            action_id = lastrowid(cur)
            conn.execute(
                "UPDATE label_actions SET state = 'dropped' WHERE who = ? AND state = 'undone'",
                (who,),
            )
            detail = []
            for shot_id in ids:
                before = _override(conn, shot_id, field)
                apply_override(conn, shot_id, field, value, who=who, action_id=action_id, at=now)
                detail.append({"shot": shot_id, "name": field, "before": before, "after": value})
            conn.execute(
                "UPDATE label_actions SET detail = ? WHERE id = ?",
                (json.dumps(detail), action_id),
            )
        return {"action": {"id": action_id, "kind": "set_attribute", "state": "done"},
                "shots": ids, "name": field, "value": value}  # fmt: skip


def iter_attribute_columns(parts: Mapping[str, Mapping[str, Any]]) -> Iterator[str]:
    """The attribute names a catalogue uses, the standard ones first (for CSV headers)."""
    names: set[str] = set()
    for entry in parts.values():
        names.update(entry.get("attributes", {}))
    yield from (n for n in STANDARD if n in names)
    yield from sorted(names - set(STANDARD))


# --- exports ----------------------------------------------------------------------------------


class ExportAttributes:
    """Every shot's attributes with the same keys and one type per key, for the snapshot files.

    Why: loaders (Hugging Face ``datasets``, pandas) infer one schema from the rows, so every
    row gets every attribute name (None where a shot has none), and an attribute that is a word
    for any part or shot is written as a word for all (``"10"``, not ``10.0``).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.names = attribute_names(conn)
        words: set[str] = set()
        for entry in catalogue(conn).values():
            words.update(k for k, v in entry["attributes"].items() if isinstance(v, str))
        for (name,) in conn.execute(
            "SELECT DISTINCT name FROM shot_attributes WHERE typeof(value) = 'text'"
        ):
            words.add(str(name))
        self.words = words

    def _typed(self, name: str, value: AttrValue | None) -> AttrValue | None:
        if value is None:
            return None
        return _show(value) if name in self.words else value

    def of_label(self, label: str) -> dict[str, AttrValue | None]:
        """A class's attributes (the manifest's ``classes[i].attributes``): only those it has."""
        attrs = attributes_for_label(self.conn, label)
        return {n: self._typed(n, attrs[n]) for n in self.names if n in attrs}

    def of_shot(self, shot_id: int) -> dict[str, AttrValue | None]:
        """A shot's attributes with every name present (None where it has none)."""
        attrs = shot_attributes(self.conn, [shot_id])[int(shot_id)]
        return {n: self._typed(n, attrs.get(n)) for n in self.names}
