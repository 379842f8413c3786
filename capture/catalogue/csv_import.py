"""A parts list from a spreadsheet (CSV) into the catalogue, and the catalogue back out as CSV.

The file has a header row.  ``label`` is required (the class name, normalised by the one label
normaliser), ``name`` is optional (a display name), and every other column is an attribute:
``category``, ``colour`` and any others (``head_type``, ``drive``, ``finish``, ``thread``,
``nominal_length_mm``...).  A blank cell leaves that attribute unset for the part; a cell that
reads as a number is stored as a number.  Example::

    label,name,category,colour,thread,nominal_length_mm
    m4-screw-10,M4 x 10 pan head,screw,silver,M4,10

Why all or nothing, with every problem listed: a parts list is edited by hand, and an import
that stops at the first bad cell (or stores half the rows) makes the person fix and re-run once
per mistake.  Each problem names its row (as the spreadsheet numbers it, the header being row
1) and column.  Each imported row sets that part's attributes to exactly the row's cells; parts
not in the file are not touched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.imports.sources import normalise_label
from capture.store.catalogue import (
    MAX_ATTRIBUTES,
    Attributes,
    Catalogue,
    StoreLike,
    check_name,
    iter_attribute_columns,
    parse_value,
)
from rig.errors import QueryError

#: Bounds on an untrusted file: its size, its rows, and how many problems one message lists.
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
MAX_LISTED = 20


class CatalogueCsvError(QueryError):
    """A parts list that cannot be imported as it is; ``problems`` name each row and column."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        lines = "\n".join(f"  {p}" for p in shown)
        tail = f"\n  ... and {more} more" if more else ""
        super().__init__(
            f"{source}: {len(problems)} problem(s), nothing was imported; fix them and import"
            f" again:\n{lines}{tail}"
        )


@dataclass(frozen=True)
class CatalogueRow:
    """One part as a row gives it."""

    label: str
    name: str | None
    attributes: Attributes


@dataclass
class CatalogueImport:
    """What an import did: how many parts, which were new, which attribute columns."""

    parts: int = 0
    new_labels: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)


def _header(names: list[str] | None, problems: list[str]) -> list[str]:
    """The columns as stored (``label``, ``name``, attribute names); problems name them."""
    if not names:
        problems.append("row 1: the file is empty; the first row must name the columns")
        return []
    out: list[str] = []
    for n, raw in enumerate(names, start=1):
        text = (raw or "").strip().lower()
        if text in ("label", "name"):
            out.append(text)
            continue
        try:
            out.append(check_name(text))
        except QueryError as exc:
            problems.append(f"row 1, column {n} ({raw!r}): {exc}")
            out.append(f"#{n}")
    for dup in sorted({c for c in out if out.count(c) > 1}):
        problems.append(f"row 1: column {dup!r} appears more than once")
    if "label" not in out:
        problems.append("row 1: there is no 'label' column; name the part labels' column label")
    if len([c for c in out if c not in ("label", "name")]) > MAX_ATTRIBUTES:
        problems.append(f"row 1: more than {MAX_ATTRIBUTES} attribute columns")
    return out


def _row(
    rownum: int, columns: list[str], cells: list[str], problems: list[str]
) -> CatalogueRow | None:
    if len(cells) > len(columns):
        problems.append(
            f"row {rownum}: {len(cells)} cells but the header names {len(columns)} columns"
        )
        return None
    values = dict(zip(columns, [*cells, *[""] * (len(columns) - len(cells))], strict=True))
    try:
        label = normalise_label(values.get("label", ""), f"row {rownum}, column label")
    except QueryError as exc:
        problems.append(str(exc))
        return None
    attributes: Attributes = {}
    for column, cell in values.items():
        if column in ("label", "name") or column.startswith("#"):
            continue
        try:
            value = parse_value(cell, column)
        except QueryError as exc:
            problems.append(f"row {rownum}, column {column}: {exc}")
            continue
        if value is not None:
            attributes[column] = value
    name = (values.get("name") or "").strip() or None
    if name is not None and len(name) > 200:
        problems.append(f"row {rownum}, column name: longer than 200 characters")
    return CatalogueRow(label, name, attributes)


def parse_catalogue_csv(text: str, source: str = "the parts list") -> list[CatalogueRow]:
    """Every row of a parts list, or CatalogueCsvError listing every problem."""
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        columns = _header(next(reader, None), problems)
        rows: list[CatalogueRow] = []
        first_row: dict[str, int] = {}
        for rownum, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if rownum > MAX_ROWS + 1:
                problems.append(f"row {rownum}: more than {MAX_ROWS} parts; split the file")
                break
            if not columns or "label" not in columns:
                break
            row = _row(rownum, columns, cells, problems)
            if row is None:
                continue
            if row.label in first_row:
                problems.append(
                    f"row {rownum}, column label: {row.label!r} is also on row "
                    f"{first_row[row.label]}; give each part one row"
                )
                continue
            first_row[row.label] = rownum
            rows.append(row)
    except csv.Error as exc:
        problems.append(f"row {reader.line_num}: not valid CSV ({exc})")
    if not problems and not rows:
        problems.append("the file lists no parts below its header")
    if problems:
        raise CatalogueCsvError(source, problems)
    return rows


def read_catalogue_csv(path: Path | str) -> list[CatalogueRow]:
    """A parts list file (UTF-8, at most 5 MB), parsed by :func:`parse_catalogue_csv`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CatalogueCsvError(str(path), [f"the file is {size} bytes; at most 5 MB"])
        data = path.read_bytes()
    except OSError as exc:
        raise QueryError(f"cannot read the parts list {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueCsvError(
            str(path), [f"byte {exc.start}: not UTF-8 text; save the sheet as CSV UTF-8"]
        ) from None
    return parse_catalogue_csv(text, str(path))


def import_catalogue(store: StoreLike, rows: list[CatalogueRow]) -> CatalogueImport:
    """Store the rows in one transaction; what it did."""
    cat = Catalogue(store)
    known = set(cat.catalogue())
    cat.set_parts([(r.label, r.name, r.attributes) for r in rows])
    names: set[str] = set()
    for r in rows:
        names.update(r.attributes)
    return CatalogueImport(
        parts=len(rows),
        new_labels=sorted(r.label for r in rows if r.label not in known),
        attributes=sorted(names),
    )


def catalogue_csv(parts: Mapping[str, Mapping[str, Any]]) -> str:
    """The catalogue as a parts list (what :func:`parse_catalogue_csv` reads back the same)."""
    columns = list(iter_attribute_columns(parts))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["label", "name", *columns])
    for label, entry in parts.items():
        attrs = entry.get("attributes", {})
        writer.writerow([label, entry.get("name") or "", *(_cell(attrs.get(c)) for c in columns)])
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
