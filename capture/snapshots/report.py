"""The report that comes with every snapshot: counts, instances, imbalance and leaks.

Why every snapshot carries one: a trainer deciding whether to trust a dataset version needs to
see, before training, how the classes are spread over splits and backgrounds, whether any image
crosses splits, and whether the split is the leak-free per-instance one or a weaker fallback.
The builder is fed one sample at a time and keeps only counters and one hash per image.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from capture.snapshots.formats import Sample
from capture.snapshots.leaks import DEFAULT_MAX_DISTANCE, ImageEntry, duplicate_summary, phash
from capture.snapshots.splits import SPLITS


class ReportBuilder:
    def __init__(self, classes: list[str], max_distance: int = DEFAULT_MAX_DISTANCE) -> None:
        self.classes = classes
        self.max_distance = max_distance
        self._counts: dict[str, dict[str, dict[str, int]]] = {
            c: {s: defaultdict(int) for s in SPLITS} for c in classes
        }
        self._instances: dict[str, dict[str, set[str]]] = {
            c: {s: set() for s in SPLITS} for c in classes
        }
        self._entries: list[ImageEntry] = []

    def add(self, sample: Sample) -> None:
        label = sample.shot["label"]
        background = sample.shot.get("background_id")
        self._counts[label][sample.split]["none" if background is None else str(background)] += 1
        self._instances[label][sample.split].add(str(sample.shot["instance_id"]))
        self._entries.append(
            ImageEntry(
                name=sample.key,
                split=sample.split,
                label=label,
                sha256=str(sample.shot["sha256"]),
                phash=phash(sample.image),
            )
        )

    def build(self, rules: dict[str, Any], dropped: dict[str, int]) -> dict[str, Any]:
        counts = {
            c: {s: dict(sorted(by_bg.items())) for s, by_bg in splits.items()}
            for c, splits in self._counts.items()
        }
        per_class = {c: sum(sum(v.values()) for v in s.values()) for c, s in counts.items()}
        present = [n for n in per_class.values() if n]
        instances = {
            c: {
                "total": len(set().union(*splits.values())),
                **{s: len(ids) for s, ids in splits.items()},
            }
            for c, splits in self._instances.items()
        }
        weaker = bool(rules.get("weaker"))
        return {
            "split": {
                "group_by": rules["group_by"],
                "weaker": weaker,
                "note": _split_note(rules),
                "inferred_groups": int(rules.get("inferred_groups", 0)),
                "empty_splits": rules.get("empty_splits", {}),
            },
            "counts": counts,
            "shots_per_class": per_class,
            "instances_per_class": instances,
            "imbalance": {
                "max_over_min": round(max(present) / min(present), 3) if present else None,
                "largest": max(per_class, key=per_class.__getitem__) if present else None,
                "smallest": min(per_class, key=per_class.__getitem__) if present else None,
            },
            "dropped_classes": dropped,
            "duplicates": duplicate_summary(self._entries, self.max_distance),
        }


def _split_note(rules: dict[str, Any]) -> str:
    """What the split was grouped by, in words a trainer can act on."""
    if rules.get("weaker"):
        note = (
            f"WEAKER split, grouped by {rules['group_by']}: one physical part may appear "
            "in more than one split, so validation and test scores are optimistic"
        )
    else:
        note = "grouped by physical part instance: no instance is in two splits"
    inferred = int(rules.get("inferred_groups", 0))
    if inferred:
        note += (
            f"; {inferred} of the instances are imported photos grouped by inferred group "
            "(near-duplicate part crops and time gaps stand in for physical parts, so two "
            "look-alike parts shot apart may still sit in different splits)"
        )
    return note


def render_markdown(snapshot_id: str, report: dict[str, Any]) -> str:
    """The human report, ``report.md``."""
    lines = [f"# Snapshot {snapshot_id}", ""]
    split = report["split"]
    dup = report["duplicates"]
    lines += [
        f"**Near-duplicate rate across splits: {dup.get('held_out_rate', 0.0):.1%}** of val and "
        "test images have an exact or near duplicate in another split.",
        "",
    ]
    lines += [f"**Split:** {split['note']}.", ""]
    for label, missing in split.get("empty_splits", {}).items():
        lines.append(f"**{label} has no {' or '.join(missing)} shots** (allowed explicitly).")
    lines += ["## Shots per class, split and background", ""]
    lines += ["| class | split | shots | per background |", "|---|---|---|---|"]
    for label, splits in report["counts"].items():
        for s, by_bg in splits.items():
            spread = ", ".join(f"{bg}: {n}" for bg, n in by_bg.items()) or "-"
            lines.append(f"| {label} | {s} | {sum(by_bg.values())} | {spread} |")
    lines += ["", "## Instances per class", "", "| class | total | train | val | test |"]
    lines.append("|---|---|---|---|---|")
    for label, n in report["instances_per_class"].items():
        lines.append(f"| {label} | {n['total']} | {n['train']} | {n['val']} | {n['test']} |")
    imbalance = report["imbalance"]
    lines += ["", "## Class imbalance", ""]
    lines.append(
        f"Largest class {imbalance['largest']}, smallest {imbalance['smallest']}: "
        f"ratio {imbalance['max_over_min']}."
    )
    if report["dropped_classes"]:
        dropped = ", ".join(f"{k} ({v} shots)" for k, v in report["dropped_classes"].items())
        lines.append(f"Dropped for having too few shots: {dropped}.")
    dup = report["duplicates"]
    lines += ["", "## Duplicates across splits", "", f"Method: {dup['method']}.", ""]
    lines.append(f"- exact (same sha256): **{dup['exact_cross_split']}**")
    lines.append(f"- near (perceptual hash): **{dup['near_cross_split']}**")
    for group in dup["exact"][:20]:
        names = ", ".join(f"{i['name']} ({i['split']})" for i in group["images"])
        lines.append(f"  - exact {group['sha256'][:12]}: {names}")
    for pair in dup["near"][:20]:
        a, b = pair["a"], pair["b"]
        lines.append(
            f"  - near, distance {pair['distance']}: {a['name']} ({a['split']}) and "
            f"{b['name']} ({b['split']})"
        )
    return "\n".join(lines) + "\n"
