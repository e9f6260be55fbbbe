import io
import json

import pytest

from recog import sources, table
from recog.sources import Unit, ends_unit, image_units, iter_tar_samples, read_unit, split_key
from recog.storage import FileEntry, StorageOptions
from tests.imagedata import jpeg, tar_shard


@pytest.mark.parametrize("name, expected", [
    ("000123.jpg", ("000123", "jpg")),
    ("dir/sub/000123.seg.PNG", ("dir/sub/000123", "seg.png")),
    ("a.b/c.json", ("a.b/c", "json")),
    ("README", ("README", "")),
])
def test_split_key_follows_webdataset(name, expected):
    assert split_key(name) == expected


def _files(*names):
    return [FileEntry(f"s3://b/in/{n}", 10 + i) for i, n in enumerate(names)]


def test_image_units_group_shards_images_and_sidecars():
    files = _files("s-0.tar", "s-1.tar", "a.jpg", "a.json", "b.png", "c.cls", "notes.txt", "d/e.webp")
    plan = image_units(files, "s3://b/in/", "fp")
    kinds = [u.kind for u in plan.units]
    assert kinds == ["shard", "shard", "images"]
    assert (plan.shards, plan.images) == (2, 3)
    assert sorted(plan.ignored) == ["s3://b/in/c.cls", "s3://b/in/notes.txt"]  # no image with them
    first = plan.units[2].params["samples"]
    assert [k for k, _ in first] == ["a", "b", "d/e"]
    assert dict(first[0][1]) == {"jpg": "s3://b/in/a.jpg", "json": "s3://b/in/a.json"}
    assert len(image_units(files, "s3://b/in/", "fp", images_per_unit=1).units) == 2 + 3  # one image each


def test_loose_images_are_cut_where_their_names_say_about_images_per_unit_apart():
    names = [f"cam-{i % 7}/{i:06d}" for i in range(20_000)]
    units = image_units(_files(*(f"{n}.jpg" for n in names)), "s3://b/in/", "fp", images_per_unit=256).units
    sizes = [len(u.params["samples"]) for u in units]
    assert sum(sizes) == 20_000 and 200 < 20_000 / len(units) < 330
    assert all(ends_unit(u.params["samples"][-1][0], 256) for u in units[:-1])  # each ends at a cut, but the last


def test_images_added_to_a_folder_make_new_work_of_only_the_units_they_fall_in():
    """Wherever new images sort, every unit of the old listing keeps its place (so nothing it
    labeled is left beside a new copy) and only the units the new images join change."""
    names = [f"{i:05d}.jpg" for i in range(3000)]

    def units(listing):
        files = [FileEntry(f"s3://b/in/{n}", 1000 + len(n)) for n in sorted(listing)]
        return {table.place_of(u.unit_id): u.unit_id for u in image_units(files, "s3://b/in/", "fp", 64).units}

    before = units(names)
    for added in (["01500a.jpg"], ["99999.jpg"], ["00000a.jpg", "02222a.jpg"]):
        after = units(names + added)
        assert before.keys() <= after.keys(), added
        assert len(set(after.values()) - set(before.values())) == len(added), added


def test_unit_ids_are_deterministic_and_depend_on_model_and_inputs():
    files = _files("s-0.tar", "a.jpg")
    a = [u.unit_id for u in image_units(files, "s3://b/in/", "model-1").units]
    assert a == [u.unit_id for u in image_units(files, "s3://b/in/", "model-1").units]
    assert set(a).isdisjoint(u.unit_id for u in image_units(files, "s3://b/in/", "model-2").units)
    changed = [FileEntry(f.uri, f.size + 1) for f in files]
    b = [u.unit_id for u in image_units(changed, "s3://b/in/", "model-1").units]
    assert set(a).isdisjoint(b)  # rewritten inputs are new work...
    assert [table.place_of(u) for u in a] == [table.place_of(u) for u in b]  # ...at the same place, replacing the old rows


def test_unit_survives_a_round_trip_through_a_row():
    unit = image_units(_files("a.jpg", "a.cls"), "s3://b/in/", "fp").units[0]
    assert Unit.from_row(json.loads(json.dumps(unit.to_row()))) == unit


def test_tar_members_group_by_key_in_order():
    data = tar_shard([("k1.jpg", b"J1"), ("k1.cls", b"car"), ("k1.json", b'{"camera": "c7"}'),
                      ("k2.png", b"P2"), ("dir/", b""), ("k3.txt", b"T3")])
    samples = list(iter_tar_samples(io.BytesIO(data)))
    assert [s.key for s in samples] == ["k1", "k2", "k3"]
    assert samples[0].files == {"jpg": b"J1", "cls": b"car", "json": b'{"camera": "c7"}'}


def test_sample_record_carries_sidecars_or_says_what_is_missing():
    meta = b'{"camera": "gate-3", "timestamp": "2026-11-03T08:00:05"}'
    rec = sources.sample_record(sources.Sample("k", {"jpg": b"J", "cls": b" truck\n", "json": meta},
                                                {"jpg": "k.jpg", "cls": "k.cls", "json": "k.json"}), "s3://b/s.tar", "s.tar")
    assert (rec["member"], rec["data"], rec["cls"], rec["error"]) == ("k.jpg", b"J", "truck", None)
    assert rec["meta"] == meta.decode() and rec["camera"] == "gate-3"
    assert rec["wall_time"].isoformat() == "2026-11-03T08:00:05+00:00"
    rec = sources.sample_record(sources.Sample("k", {"txt": b"x"}, {"txt": "k.txt"}), "s3://b/s.tar", "s.tar")
    assert rec["data"] is None and "no image in sample (found .txt" in rec["error"]
    rec = sources.sample_record(sources.Sample("k", {"jpg": b"J", "json": b"{oops"}, {"jpg": "k.jpg", "json": "k.json"}), "u", None)
    assert "k.json is not valid JSON" in rec["error"]


def _local_shard(tmp_path, name, members):
    path = tmp_path / name
    path.write_bytes(tar_shard(members))
    return Unit("u1", "shard", str(path))


def records(unit):
    return [r for block in read_unit(unit, StorageOptions()) for r in block]


def test_read_unit_numbers_records_and_ends_with_an_end_record(tmp_path):
    unit = _local_shard(tmp_path, "s.tar", [(f"{i:03d}.jpg", jpeg()) for i in range(70)])
    blocks = list(read_unit(unit, StorageOptions(), block_rows=32))
    assert [len(b) for b in blocks] == [32, 32, 7]
    rows = [r for b in blocks for r in b]
    assert [r["record"] for r in rows] == list(range(71))
    assert [r["end"] for r in rows] == [False] * 70 + [True]
    assert rows[5]["key"] == "005" and rows[5]["shard"] == "s.tar" and rows[5]["unit_id"] == "u1"
    assert set(rows[5]) >= set(sources.RECORD_SCHEMA.names) | {"data"}


def test_truncated_shard_keeps_what_was_read_and_adds_an_error_row(tmp_path):
    whole = tar_shard([(f"{i:03d}.jpg", jpeg()) for i in range(10)])
    path = tmp_path / "cut.tar"
    path.write_bytes(whole[: len(whole) // 2])
    rows = records(Unit("u", "shard", str(path)))
    assert rows[-1]["end"] and "corrupt or truncated tar shard" in rows[-2]["error"]
    good = rows[:-2]
    assert 0 < len(good) < 10 and all(r["error"] is None for r in good)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"not a tar at all" * 100, "corrupt or truncated"),
    (tar_shard([("notes", b"no extension, so no sample")]), "holds no samples"),
])
def test_empty_or_garbage_shard_is_one_error_row(tmp_path, content, message):
    path = tmp_path / "bad.tar"
    path.write_bytes(content)
    rows = records(Unit("u", "shard", str(path)))
    assert len(rows) == 2 and rows[1]["end"] and message in rows[0]["error"]


def test_loose_images_read_with_sidecars(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    (tmp_path / "a.cls").write_bytes(b"bus")
    (tmp_path / "b.jpg").write_bytes(jpeg())
    files = [FileEntry(str(p), p.stat().st_size) for p in sorted(tmp_path.iterdir())]
    unit = image_units(files, str(tmp_path), "fp").units[0]
    (tmp_path / "b.jpg").unlink()  # disappears between listing and reading
    rows = records(unit)[:-1]
    assert [(r["key"], r["cls"], r["error"] is None) for r in rows] == [("a", "bus", True), ("b", None, False)]
    assert "disappeared" in rows[1]["error"] and rows[1]["source_uri"].endswith("b.jpg")


def test_non_utf8_member_names_are_stored_safely(tmp_path):
    import tarfile

    path = tmp_path / "names.tar"
    with tarfile.open(path, "w", encoding="utf-8", errors="surrogateescape") as tar:
        for name in ("caf\udce9.jpg", "../../etc/passwd.jpg"):
            data = jpeg()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = records(Unit("u", "shard", str(path)))[:-1]
    assert [r["key"] for r in rows] == ["caf\ufffd", "../../etc/passwd"]
