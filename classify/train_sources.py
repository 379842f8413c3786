"""Where training samples come from: folders, published snapshots, several at once, one share.

Usage::

    snap = open_training_data(["s3://parts/team/rig-a/snap-0003", "pulled/rig-b/snap-0002"],
                              transfer)
    snap.labels                            # one class index: the sorted union of the labels
    worker_samples(snap, "train", 1, 2)    # worker 1 of 2 reads every other shard

Why stream instead of pulling first: a trainer reads a shard once per run, so a published
snapshot's shards are read straight from object storage into memory, each verified against the
manifest's sha256 as it ends (:class:`capture.publish.published.VerifyingReader`); no copy lands on
disk.

Why one class index for several snapshots: each rig's manifest orders only its own classes; the
model needs one order, so the union of labels is sorted (the same rule one snapshot uses), and
every sample's class is looked up by label in it.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from capture.publish.objstore import TransferSettings
from capture.publish.published import PublishedSnapshot
from classify.train_data import Sample, Snapshot, open_snapshot
from rig.errors import StoreError


class PublishedTrainingSnapshot(Snapshot):
    """A published snapshot read shard by shard from object storage."""

    def __init__(self, published: PublishedSnapshot) -> None:
        super().__init__(Path(published.location.url()), published.manifest)
        self.published = published
        if not published.entries("webdataset"):
            raise StoreError(
                f"{published.location.url()} has no WebDataset shards to stream; publish a "
                "snapshot made with --format webdataset, or pull it and train on the folder"
            )

    def shard_refs(self, split: str) -> list[str]:
        return sorted(
            e["path"] for e in self.published.entries("webdataset")
            if e["path"].startswith(f"webdataset/{split}-")
        )  # fmt: skip

    def shard_samples(self, ref: str) -> list[Sample]:
        entry = next(e for e in self.published.entries() if e["path"] == ref)
        try:
            with (
                self.published.stream(entry) as body,
                tarfile.open(fileobj=body, mode="r|") as tar,  # type: ignore[call-overload]
            ):
                return list(self._from_tar(tar, ref))
        except tarfile.TarError as exc:
            raise StoreError(f"cannot read the shard {ref}: {exc}") from None

    def samples(self, split: str) -> list[Sample]:
        found = [s for ref in self.shard_refs(split) for s in self.shard_samples(ref)]
        return sorted(found, key=lambda s: s.key)


class CombinedSnapshot(Snapshot):
    """Several snapshots (several rigs' data) as one, with one class index."""

    def __init__(self, parts: list[Snapshot]) -> None:
        labels = sorted({label for p in parts for label in p.labels})
        manifest = dict(parts[0].manifest)
        manifest["classes"] = [{"index": i, "label": label} for i, label in enumerate(labels)]
        super().__init__(parts[0].root, manifest)
        self.parts = parts
        self._labels = labels

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def ids(self) -> list[str]:
        return [_source_name(p) for p in self.parts]

    def _remap(self, part: Snapshot, found: list[Sample]) -> list[Sample]:
        prefix = _source_name(part)
        for s in found:
            s.class_index = self._labels.index(s.label)
            s.key = f"{prefix}/{s.key}"
        return found

    def shard_refs(self, split: str) -> list[str]:
        return [f"{i}|{ref}" for i, p in enumerate(self.parts) for ref in p.shard_refs(split)]

    def shard_samples(self, ref: str) -> list[Sample]:
        index, _, inner = ref.partition("|")
        part = self.parts[int(index)]
        return self._remap(part, part.shard_samples(inner))

    def samples(self, split: str) -> list[Sample]:
        found = [s for p in self.parts for s in self._remap(p, p.samples(split))]
        return sorted(found, key=lambda s: s.key)


def _source_name(snap: Snapshot) -> str:
    published = snap.manifest.get("published") or {}
    rig = published.get("rig_id")
    return f"{rig}/{snap.id}" if rig else snap.id


def open_training_data(
    specs: list[str] | list[Path] | str | Path, transfer: TransferSettings | None = None
) -> Snapshot:
    """Open one or several datasets: snapshot folders and ``s3://.../<rig.id>/snap-NNNN``."""
    items: list[str | Path] = [specs] if isinstance(specs, str | Path) else list(specs)
    if not items:
        raise StoreError("no dataset given: pass --dataset at least once")
    parts: list[Snapshot] = []
    for spec in items:
        if str(spec).startswith("s3://"):
            published = PublishedSnapshot.open(str(spec), transfer or TransferSettings())
            parts.append(PublishedTrainingSnapshot(published))
        else:
            parts.append(open_snapshot(Path(spec)))
    return parts[0] if len(parts) == 1 else CombinedSnapshot(parts)


def worker_samples(snap: Snapshot, split: str, index: int, count: int) -> list[Sample]:
    """Worker ``index`` of ``count``'s share of ``split``: every count-th shard from ``index``.

    When there are fewer shards than workers (a small snapshot) the samples themselves are
    dealt out instead, so every worker still gets a disjoint, nearly equal share.
    """
    refs = snap.shard_refs(split)
    if len(refs) >= count:
        found = [s for ref in refs[index::count] for s in snap.shard_samples(ref)]
        return sorted(found, key=lambda s: s.key)
    return snap.samples(split)[index::count]


def train_counts(snap: Snapshot) -> dict[str, int] | None:
    """Train shots per label from the manifests (all workers agree), None if a manifest lacks
    them (then each worker counts its own share)."""
    parts = snap.parts if isinstance(snap, CombinedSnapshot) else [snap]
    counts: dict[str, int] = {}
    for part in parts:
        by_class = (part.manifest.get("counts") or {}).get("by_class_split")
        if not isinstance(by_class, dict):
            return None
        for label, splits in by_class.items():
            counts[label] = counts.get(label, 0) + int(splits.get("train", 0))
    return counts


def describe(snap: Snapshot) -> dict[str, Any]:
    """What to record in metrics.json about the data a model was trained on."""
    if isinstance(snap, CombinedSnapshot):
        return {"snapshot": snap.parts[0].id, "snapshots": snap.ids}
    return {"snapshot": snap.id, "snapshots": [_source_name(snap)]}
