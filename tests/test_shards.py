"""Labeled tar shards from a class-folder tree."""

from __future__ import annotations

import json
import tarfile

import pytest

from recog import shards
from recog.errors import StorageError
from recog.storage import StorageOptions
from tests.traindata import disc_folder

OPTS = StorageOptions()


def test_shards_from_a_class_folder_tree(tmp_path):
    disc_folder(tmp_path / "photos", per_class=5, seed=0)
    uris = shards.write_shards(tmp_path / "photos", str(tmp_path / "out" / "train"), OPTS, per_shard=6)
    assert [u.rsplit("/", 1)[-1] for u in uris] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    labels = []
    for uri in uris:
        with tarfile.open(uri) as tar:
            names = tar.getnames()
            labels += [tar.extractfile(n).read().decode() for n in names if n.endswith(".cls")]
            meta = json.loads(tar.extractfile([n for n in names if n.endswith(".json")][0]).read())
            assert set(meta) == {"class", "file"}
    assert sorted(labels) == sorted(["red", "green", "blue"] * 5)
    assert labels[:5] != sorted(labels[:5]) or labels[5:10] != sorted(labels[5:10])  # shuffled across shards
    with pytest.raises(StorageError, match="no <class>/<image> files"):
        shards.folder_samples(tmp_path / "out")
