"""Sources: what to read (units of work planned from a listing) and how to read it (records).

A *unit* is the piece of work that commits as one output file: one tar shard, a group of loose
images, or one time segment of a video (see recog.video). Units are planned on the driver from
the file listing (and, for videos, their headers); the bytes are read later, on workers.

Files are grouped into *samples* the WebDataset way: `dir/000123.jpg`, `dir/000123.cls` and
`dir/000123.json` form the sample `dir/000123`, inside a tar shard or beside each other under a
prefix. A sample is an image or a video, with optional `.cls` and `.json` sidecars.

Reading a unit yields *records* (dicts), numbered 0..n-1 within the unit, carrying either
encoded image bytes (`data`) or a decoded video frame (`frame`); then one end-of-unit record
(`end` set), by which the sink knows the unit is complete, even when it holds no input at all.
A sample, shard or video that cannot be read becomes a record with `error` set; its `.cls` and
`.json` sidecars travel with it (recog.sidecars reads labels, cameras and times from them).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Iterator

import pyarrow as pa

from recog import storage, video
from recog.sidecars import sidecar_context
from recog.storage import FileEntry, StorageOptions

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
RECORDS_PER_BLOCK = 32  # records per block handed on to preprocessing

# The fields every record has, with their Arrow types; the payload (`data` or `frame`) comes on top.
RECORD_SCHEMA = pa.schema([
    ("unit_id", pa.string()), ("record", pa.int32()), ("end", pa.bool_()),
    ("source_uri", pa.string()), ("shard", pa.string()), ("key", pa.string()), ("member", pa.string()),
    ("cls", pa.string()), ("meta", pa.string()),
    ("camera", pa.string()), ("frame_index", pa.int64()), ("pts_s", pa.float64()),
    ("wall_time", pa.timestamp("ms", tz="UTC")),
    ("error", pa.string()),
])


def clean_text(name: str) -> str:
    """Make a name from a tar header or listing safe to store: valid UTF-8, no NULs."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "")


def split_key(name: str) -> tuple[str, str]:
    """WebDataset naming: ('dir/000123', 'seg.png') for 'dir/000123.seg.png'; ext '' if none."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def pick(exts: Iterable[str], wanted: tuple[str, ...]) -> str | None:
    """The first extension of `wanted` (in its order of preference) that the sample has."""
    exts = set(exts)
    return next((w for w in wanted if w in exts), None)


@dataclass(frozen=True)
class Unit:
    """A unit of work. `params` (JSON-able) says what to read: the samples of an image group, or
    a video segment's bounds."""

    unit_id: str
    kind: str  # "shard" | "images" | "segment"
    source: str  # the shard or video URI, or the first image URI of the group
    params: dict = field(default_factory=dict, hash=False)

    def to_row(self) -> dict:
        return {"unit_id": self.unit_id, "kind": self.kind, "source": self.source, "params": json.dumps(self.params)}

    @classmethod
    def from_row(cls, row: dict) -> "Unit":
        return cls(row["unit_id"], row["kind"], row["source"], json.loads(row["params"]))


def unit_id(fingerprint: str, kind: str, place: Iterable[str], content: Iterable[str]) -> str:
    """Deterministic id `<place>.<content>`: the same inputs under the same model and settings give
    the same id. `place` says which inputs (locations), `content` what they hold (sizes): an input
    rewritten in place keeps the unit's place and changes its content, so a rerun redoes the unit and
    its new rows replace the old ones (see `table.place_of`) instead of standing beside them."""
    def digest(parts: Iterable[str], salt: str, n: int) -> str:
        h = hashlib.sha256(salt.encode())
        for p in parts:
            h.update(p.encode("utf-8", "surrogateescape") + b"\n")
        return h.hexdigest()[:n]

    return digest(place, f"{fingerprint}\n{kind}\n", 16) + "." + digest(content, "", 8)


@dataclass
class Inputs:
    """What a listing holds for a job: its units of work, and what was counted or left aside."""

    units: list[Unit]
    shards: int = 0
    images: int = 0  # loose images (those in shards are counted when read)
    videos: int = 0
    ignored: list[str] = field(default_factory=list)  # files this job does not read

    def counts(self) -> dict:
        return {"shards": self.shards, "images": self.images, "videos": self.videos, "ignored": len(self.ignored)}


def group_samples(files: list[FileEntry], root: str) -> tuple[list[FileEntry], dict[str, dict[str, FileEntry]]]:
    """The tar shards of a listing, and its other files grouped into samples by key (the path
    below `root` without extensions), in key order."""
    shards, samples = [], {}
    for f in files:
        if f.uri.lower().endswith(SHARD_SUFFIXES):
            shards.append(f)
        else:
            key, ext = split_key(storage.relative(f.uri, root))
            samples.setdefault(key, {})[ext] = f
    return shards, dict(sorted(samples.items()))


def ends_unit(key: str, mean: int) -> bool:
    """Whether a unit of loose images ends at the sample `key`: one key in `mean`, chosen by a hash
    of the key alone, so a sample added to or removed from a listing moves no other unit's ends."""
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")
    return h % mean == 0


def image_units(files: list[FileEntry], root: str, fingerprint: str, images_per_unit: int = 256) -> Inputs:
    """One unit per tar shard, and the loose images (with their sidecars) in key order, cut into
    units of `images_per_unit` images on average where `ends_unit`. A unit's place is the key it
    ends at (or the listing's end, for the last), so images added to a listing that a run labeled
    make new work of only the units they fall in, whose new rows then replace the old."""
    shards, samples = group_samples(files, root)
    found = Inputs(units=[Unit(unit_id(fingerprint, "shard", [f.uri], [str(f.size)]), "shard", f.uri) for f in shards],
                   shards=len(shards))
    loose = []
    for key, by_ext in samples.items():
        if pick(by_ext, IMAGE_EXTS):
            loose.append([key, [[ext, f.uri] for ext, f in sorted(by_ext.items())]])  # JSON-shaped
        else:
            found.ignored.extend(f.uri for f in by_ext.values())
    sizes = {f.uri: f.size for f in files}
    group: list = []
    for i, sample in enumerate(loose):
        group.append(sample)
        end = ends_unit(sample[0], images_per_unit)
        if end or i == len(loose) - 1:
            content = [f"{uri} {sizes[uri]}" for _, fs in group for _, uri in fs]
            found.units.append(Unit(unit_id(fingerprint, "images", [root, sample[0]] if end else [root], content),
                                    "images", group[0][1][0][1], {"samples": group}))
            group = []
    found.images = len(loose)
    return found


def video_samples(files: list[FileEntry], root: str) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
    """The videos of a listing as (key, extension -> URI), sidecars included; and the other files."""
    shards, samples = group_samples(files, root)
    videos, ignored = [], [f.uri for f in shards]
    for key, by_ext in samples.items():
        if pick(by_ext, video.VIDEO_EXTS):
            videos.append((key, {ext: f.uri for ext, f in by_ext.items()}))
        else:
            ignored.extend(f.uri for f in by_ext.values())
    return videos, ignored


def segment_units(videos: list[tuple[str, dict[str, str]]], infos: dict[str, video.VideoInfo],
                  metas: dict[str, str | None], fingerprint: str, length: Fraction,
                  name_pattern: str | None = None, numbered: bool = False) -> list[Unit]:
    """One unit per segment of `length` seconds of each video (`numbered`: with its place in the
    video, `number`). A video whose header cannot be read gets one unit, whose reading reports the error."""
    units = []
    for key, files in videos:
        uri = files[pick(files, video.VIDEO_EXTS)]
        info, meta = infos[uri], metas.get(uri)
        camera, recorded_at = video.recording_context(meta, name_pattern, uri.rsplit("/", 1)[-1])
        bounds = [(Fraction(0), None)] if info.error else video.segment_bounds(info.duration_s, length)
        for number, (start, end) in enumerate(bounds):
            params = video.Segment(uri, key, start, end, info.duration_s, meta, camera,
                                   recorded_at.isoformat() if recorded_at else None).to_params()
            if numbered:
                params["number"] = number
            units.append(Unit(unit_id(fingerprint, "segment", [uri, str(start)], [json.dumps(params, sort_keys=True)]),
                              "segment", uri, params))
    return units


# ---- reading -----------------------------------------------------------------------------------

@dataclass
class Sample:
    key: str
    files: dict[str, bytes]  # extension -> bytes
    members: dict[str, str]  # extension -> member name / URI


def iter_tar_samples(stream) -> Iterator[Sample]:
    """Samples of a tar stream in order, grouping consecutive members by key (WebDataset style).

    Raises tarfile.TarError / EOFError / zlib.error if the shard is truncated or corrupt, after
    yielding every complete sample before the damage.
    """
    current: Sample | None = None
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = clean_text(member.name)
            key, ext = split_key(name)
            if not ext:
                continue
            data = tar.extractfile(member).read()
            if current is not None and current.key != key:
                yield current
                current = None
            if current is None:
                current = Sample(key, {}, {})
            current.files[ext] = data
            current.members[ext] = name
    if current is not None:
        yield current


def blank_record(source: str, **fields) -> dict:
    return {"source_uri": source, "shard": None, "key": None, "member": None, "data": None, "cls": None,
            "meta": None, "camera": None, "frame_index": None, "pts_s": None, "wall_time": None,
            "error": None, **fields}


def sample_record(sample: Sample, source: str, shard: str | None) -> dict:
    """The record of one image sample: its bytes and sidecars, or an error."""
    rec = blank_record(source, shard=shard, key=sample.key)
    ext = pick(sample.files, IMAGE_EXTS)
    if ext is None:
        found = ", ".join(sorted("." + e for e in sample.files)) or "nothing"
        rec["error"] = f"no image in sample (found {found}; expected one of {', '.join('.' + e for e in IMAGE_EXTS)})"
        return rec
    rec["member"], rec["data"] = sample.members[ext], sample.files[ext]
    if "cls" in sample.files:
        rec["cls"] = sample.files["cls"].decode("utf-8", "replace").strip()
    if "json" in sample.files:
        text = sample.files["json"].decode("utf-8", "replace")
        try:
            json.loads(text)
        except ValueError as e:
            rec["error"] = f"sidecar {sample.members['json']} is not valid JSON: {e}"
            return rec
        rec["meta"] = text
        rec["camera"], rec["wall_time"] = sidecar_context(text, "timestamp")
    return rec


def _shard_records(unit: Unit, opts: StorageOptions) -> Iterator[dict]:
    shard = unit.source.rsplit("/", 1)[-1]
    count = 0
    try:
        with storage.open_input(unit.source, opts) as stream:
            for sample in iter_tar_samples(stream):
                count += 1
                yield sample_record(sample, unit.source, shard)
    except FileNotFoundError:
        yield blank_record(unit.source, shard=shard, error="shard disappeared after it was listed")
        return
    except (tarfile.TarError, EOFError, zlib.error) as e:
        yield blank_record(unit.source, shard=shard, error=f"corrupt or truncated tar shard after {count} samples: {e}")
        return
    if count == 0:
        yield blank_record(unit.source, shard=shard, error="shard holds no samples")


def _image_records(unit: Unit, opts: StorageOptions) -> Iterator[dict]:
    for key, files in unit.params["samples"]:
        uris = dict(files)
        image_uri = uris[pick(uris, IMAGE_EXTS)]
        sample = Sample(key, {}, {})
        try:
            for ext, uri in uris.items():
                sample.files[ext] = storage.read_bytes(uri, opts)
                sample.members[ext] = uri.rsplit("/", 1)[-1]
        except FileNotFoundError:
            yield blank_record(image_uri, key=key, error=f"object disappeared after it was listed: {uri}")
            continue
        yield sample_record(sample, image_uri, None)


def _segment_records(unit: Unit, opts: StorageOptions, sampling: video.Sampling | None) -> Iterator[dict]:
    if sampling is None:
        raise ValueError("reading a video segment needs its sampling")
    seg = video.Segment.from_params(unit.params)
    for rec in video.read_segment(seg, sampling, opts):
        yield {**blank_record(unit.source), **rec}


def read_unit(unit: Unit, opts: StorageOptions, sampling: video.Sampling | None = None,
              block_rows: int = RECORDS_PER_BLOCK) -> Iterator[list[dict]]:
    """The records of one unit in blocks of at most `block_rows`, then the end-of-unit record."""
    if unit.kind == "shard":
        records = _shard_records(unit, opts)
    elif unit.kind == "images":
        records = _image_records(unit, opts)
    else:
        records = _segment_records(unit, opts, sampling)
    block, n = [], 0
    for rec in records:
        block.append({**rec, "unit_id": unit.unit_id, "record": n, "end": False})
        n += 1
        if len(block) >= block_rows:
            yield block
            block = []
    block.append({**blank_record(unit.source), "unit_id": unit.unit_id, "record": n, "end": True})
    yield block
