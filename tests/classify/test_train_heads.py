"""Multi-head training: one backbone, a head per attribute, one int8 TFLite with an output per head,
model.json listing the heads, the runtime's top-k per head, and metrics per head."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from snapshot_factory import render
from trained_model import ATTRIBUTES, HEADS, trained, trained_heads

from classify.train_heads import attribute_heads, class_attributes, parse_heads, targets
from rig.errors import ModelError, StoreError

LABELS = list(ATTRIBUTES)


def manifest(attributes=ATTRIBUTES, top_level=None):
    out = {"classes": [{"index": i, "label": lbl, "attributes": attributes.get(lbl, {})}
                       for i, lbl in enumerate(LABELS)]}  # fmt: skip
    if top_level is not None:
        out["attributes"] = top_level
    return out


# --- without TensorFlow -----------------------------------------------------------------------


def test_heads_option_always_has_the_label_head_first() -> None:
    assert parse_heads("label") == ("label",)
    assert parse_heads("colour, label,shape") == ("label", "colour", "shape")
    for bad, words in (("colour", "must include 'label'"), ("label,Colour", "lower-case"),
                       ("label,colour,colour", "twice")):  # fmt: skip
        with pytest.raises(ModelError, match=words):
            parse_heads(bad)


def test_attribute_values_come_from_the_catalogue_per_label() -> None:
    colour, shape = attribute_heads(manifest(), LABELS, ("label", "colour", "shape"))
    assert colour.name == "colour" and colour.values == ["blue", "red"]
    assert colour.table.tolist() == [1, 1, 0]
    assert shape.values == ["round", "square"]
    assert {k: v.tolist() for k, v in targets(np.array([2, 0]), [colour]).items()} == {
        "probs": [2, 0], "head_colour": [0, 1],
    }  # fmt: skip
    # the manifest's top-level catalogue, overridden by a class's own attributes
    top = {"brick-red-square": {"colour": "crimson"}, "disc-red-round": {"colour": "red"}}
    found = class_attributes(manifest({"brick-blue-square": {"colour": "blue"}}, top), LABELS)
    assert [found[lbl]["colour"] for lbl in LABELS] == ["crimson", "red", "blue"]


def test_a_label_without_the_attribute_or_a_head_with_one_value_is_refused() -> None:
    partial = {**ATTRIBUTES, "disc-red-round": {"shape": "round"}}
    with pytest.raises(StoreError, match=r"colour head needs a colour for every label.*disc-red"):
        attribute_heads(manifest(partial), LABELS, ("label", "colour"))
    same = {lbl: {"finish": "matte"} for lbl in LABELS}
    with pytest.raises(StoreError, match="every label has finish 'matte'"):
        attribute_heads(manifest(same), LABELS, ("label", "finish"))


# --- one real multi-head run (cached, shared) ------------------------------------------------


def test_one_tflite_with_an_output_per_head_and_model_json_lists_them() -> None:
    t = trained_heads()
    card = json.loads((t.model_dir / "model.json").read_text())
    heads = card["heads"]
    assert [h["name"] for h in heads] == ["part", "colour", "shape"]
    assert [h["labels"] for h in heads] == [LABELS, ["blue", "red"], ["round", "square"]]
    indices = [h["output_index"] for h in heads]
    assert len(set(indices)) == 3
    assert heads[0]["open_set"]["feature_output_index"] not in indices
    for h in heads[1:]:
        assert h["open_set"]["method"] == "max_softmax"
        assert h["open_set"]["calibrated_on"]["split"] == "val"
        assert h["open_set"]["calibrated_on"]["snapshot"] == "snap-0008"
    from classify.export import describe

    info = describe((t.model_dir / "model.tflite").read_bytes())
    assert len(info["outputs"]) == 4 and {o["dtype"] for o in info["outputs"]} == {"uint8"}


def test_metrics_and_report_give_every_heads_accuracy() -> None:
    t = trained_heads()
    metrics = json.loads((t.model_dir / "metrics.json").read_text())
    assert metrics["options"]["heads"] == list(HEADS)
    # NOTE: colour and shape both have two values: a head wired to the other's output would
    # score near chance on one of them.
    for name in ("colour", "shape"):
        head = metrics["heads"][name]
        assert head["int8_accuracy"] >= 0.75, (name, head)  # swapped outputs score ~1/3
        assert sum(r["support"] for r in head["per_class"].values()) == metrics["counts"]["test"]
    assert "val_colour_accuracy" in metrics["history"][-1]
    from classify.train_output import result_lines

    text = "\n".join(result_lines(metrics))
    assert "head colour (2 values): int8 accuracy" in text and "head shape" in text


def test_the_runtime_returns_each_heads_top_k() -> None:
    from classify.runtime import Classifier

    t = trained_heads()
    clf = Classifier.from_dir(t.model_dir, num_threads=1)
    assert clf.head_labels == {
        "label": LABELS, "colour": ["blue", "red"], "shape": ["round", "square"],
    }  # fmt: skip
    rng = np.random.default_rng(5)
    right = 0
    for i in range(6):
        label = LABELS[i % 3]
        img, bbox, _, matrix = render(label, i % 2, rng)
        p = clf.predict(img, bbox=bbox, colour_matrix=matrix, top_k=5)
        assert set(p.heads) == {"colour", "shape"}
        colour = p.heads["colour"]
        assert len(colour.top_k) == 2 and colour.top_k[0][0] == colour.label
        assert abs(sum(v for _, v in colour.top_k) - 1.0) < 0.05
        assert colour.open_set_threshold is not None and colour.open_set_score is not None
        right += colour.label == ATTRIBUTES[label]["colour"]
        right += p.heads["shape"].label == ATTRIBUTES[label]["shape"]
    assert right >= 9


def test_the_single_head_model_is_unchanged() -> None:
    from classify.runtime import Classifier

    t = trained()
    card = json.loads((t.model_dir / "model.json").read_text())
    assert [h["name"] for h in card["heads"]] == ["part"]
    assert "heads" not in t.metrics
    clf = Classifier.from_dir(t.model_dir, num_threads=1)
    img, bbox, _, matrix = render(LABELS[0], 0, np.random.default_rng(1))
    assert clf.predict(img, bbox=bbox, colour_matrix=matrix).heads == {}


def test_train_command_passes_heads_and_refuses_a_list_without_the_label(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import classify.train as train_mod
    from web.cli import app

    runner = CliRunner()
    args = ["train", "--dataset", str(tmp_path), "--out", str(tmp_path / "m")]
    bad = runner.invoke(app, [*args, "--heads", "colour"], terminal_width=200)
    assert bad.exit_code == 2 and "must include 'label'" in bad.output
    seen = {}

    def fake_train(snapshot, out, opts, log=print):
        seen["heads"] = opts.heads
        return {"snapshot": "snap-0008", "float_accuracy": None, "int8_accuracy": None}

    monkeypatch.setattr(train_mod, "train", fake_train)
    ok = runner.invoke(app, [*args, "--heads", "colour,label"], terminal_width=200)
    assert ok.exit_code == 0, ok.output
    assert seen["heads"] == ("label", "colour")
