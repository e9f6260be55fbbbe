"""What each kind of job reads: one rule for what keys are relative to, the settings that go into
a unit's id, and how it says what it found (no store or Ray needed: a local listing)."""

from __future__ import annotations

from recog import storage
from recog.config import InferConfig
from recog.media import MEDIA, fingerprint
from tests.imagedata import jpeg
from tests.videodata import encode_video


def test_keys_are_relative_to_the_prefix_or_for_a_pattern_to_the_common_folder(tmp_path):
    (tmp_path / "in" / "cam").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "in" / "cam" / name).write_bytes(jpeg())
    opts = storage.StorageOptions()
    for source, keys in ((str(tmp_path / "in"), ["cam/a", "cam/b"]), (str(tmp_path / "in" / "cam" / "*.jpg"), ["a", "b"])):
        cfg = InferConfig(input=source, output=str(tmp_path / "out"), images_per_unit=256)
        found = MEDIA["images"].find_units(cfg, storage.list_files(source, opts), "fp")
        assert [k for k, _ in found.units[0].params["samples"]] == keys
        assert MEDIA["images"].describe(cfg, found) == "0 shard(s), 2 loose image(s) -> 1 unit(s)"


def test_footage_units_are_segments_and_sampling_is_part_of_their_id(tmp_path):
    (tmp_path / "in").mkdir()
    encode_video(tmp_path / "in" / "clip.mp4", frames=250, fps=25)
    (tmp_path / "in" / "clip.json").write_text('{"camera": "cam-1", "start": "2026-11-03T08:00:00Z"}')
    files = storage.list_files(str(tmp_path / "in"), storage.StorageOptions())
    cfg = InferConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), media="video", segment_seconds=4)
    found = MEDIA["video"].find_units(cfg, files, fingerprint(cfg, {"name": "m"}))
    assert found.videos == 1 and len(found.units) == 3 and found.units[0].params["camera"] == "cam-1"
    assert MEDIA["video"].describe(cfg, found) == "1 video(s) -> 3 segment(s) of 4 s, sampling 1 frame(s)/s"
    other = InferConfig(input=cfg.input, output=cfg.output, media="video", fps=2.0)
    assert fingerprint(cfg, {"name": "m"}) != fingerprint(other, {"name": "m"})
    assert fingerprint(InferConfig(input="a", output="b"), {"name": "m"}) == fingerprint(InferConfig(input="c", output="d"), {"name": "m"})
