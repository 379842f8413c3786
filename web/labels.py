"""The labels a person may give a part: the one-click choices and the check of a typed one.

Why a module of its own: the review page (:mod:`web.routers.review`) and the labelling station
(:mod:`web.routers.label`) label the same queue with the same rules; with the rules in one of
the two routers, each imported the other.
"""

from __future__ import annotations

from capture.imports.sources import normalise_label
from capture.store import DatasetStore
from rig.errors import RunStateError


def label_choices(store: DatasetStore) -> list[str]:
    """The one-click labels: the active model's classes, then every other known part."""
    active = store.active_model()
    labels = list(active["labels"]) if active else []
    labels += [p["label"] for p in store.list_parts() if p["label"] not in labels]
    return labels


def checked_label(store: DatasetStore, raw: str, confirm_new: bool) -> str:
    """A catalogue label as given; anything else normalised, and new ones only when confirmed."""
    known = set(label_choices(store))
    if raw in known:
        return raw
    label = normalise_label(raw, "label")
    if label not in known and not confirm_new:
        raise RunStateError(
            f"'{label}' is not in the parts catalogue: confirm to add it as a new part, or "
            "choose an existing label"
        )
    return label
