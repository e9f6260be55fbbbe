"""What each kind of job reads: one rule for what keys are relative to, the settings that go into
a unit's id, and how it says what it found (no store or Ray needed: a local listing)."""

from __future__ import annotations

import io

import pytest

from recog import sink, storage, table
from recog.config import InferConfig, VehiclesConfig
from recog.errors import ConfigError
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


def test_an_outputs_segment_length_is_recorded_on_its_first_run_and_kept(tmp_path):
    (tmp_path / "in").mkdir()
    encode_video(tmp_path / "in" / "clip.mp4", frames=50, fps=25)
    files, out = storage.list_files(str(tmp_path / "in"), storage.StorageOptions()), str(tmp_path / "out")
    vehicles, said = MEDIA["vehicles"], io.StringIO()

    def sized(seconds, output=out):
        return vehicles.sized(VehiclesConfig(input=str(tmp_path / "in"), output=output, segment_seconds=seconds), files, None,
                              said)

    cfg, chosen, record = sized(30.0)
    assert (cfg.segment_seconds, chosen, record) == (30.0, None, {"recog.segmentSeconds": "30"})
    vehicles_table = table.uri(out, "vehicles")
    table.create(vehicles_table, sink.schema_of("vehicles"), storage.StorageOptions(), record)  # as the job does
    assert sized("auto")[0].segment_seconds == 30.0 and sized(30.0)[2] == {}  # kept, nothing more to record
    with pytest.raises(ConfigError, match="--segment-seconds 20: .* segments of 30 s .* Use --segment-seconds 30"):
        sized(20.0)
    # an output written before the length was recorded: the default of then, 60 s, recorded on its next run
    old = str(tmp_path / "old")
    table.create(table.uri(old, "vehicles"), sink.schema_of("vehicles"), storage.StorageOptions())
    cfg, _, record = sized("auto", old)
    assert (cfg.segment_seconds, record) == (60.0, {"recog.segmentSeconds": "60"}) and f"as {old} was written with" in said.getvalue()


def test_analysing_below_the_rate_counts_held_at_warns():
    cfg = VehiclesConfig(input="in", output="out", analyze_fps=8)
    (warning,) = MEDIA["vehicles"].warnings(cfg)
    assert "--analyze-fps 8 is below 12.5" in warning
    assert MEDIA["vehicles"].warnings(VehiclesConfig(input="in", output="out", analyze_fps=12.5)) == []
    assert fingerprint(cfg, {"name": "m"}) != fingerprint(VehiclesConfig(input="in", output="out"), {"name": "m"})
