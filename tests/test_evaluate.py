"""Scores: accuracy, per-class precision and recall, the confusion matrix."""

from __future__ import annotations

import pytest

from recog.evaluate import format_scores, scores


def test_scores_per_class_and_confusion():
    m = scores(["car", "car", "bus", "bus", "van"], ["car", "bus", "bus", "bus", "car"])
    assert m["accuracy"] == pytest.approx(0.6) and m["labels"] == ["bus", "car", "van"]
    assert m["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 1, 0]]
    assert m["per_class"]["bus"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "support": 2}
    assert m["per_class"]["van"]["recall"] == 0.0 and m["per_class"]["van"]["precision"] is None
    text = format_scores(m)
    assert "top-1 accuracy 0.6000 on 5 samples" in text and "van" in text
