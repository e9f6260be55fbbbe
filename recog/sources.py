"""Sources: what to read (units of work planned from a listing) and how to read it (records).

A *unit* is the piece of work that commits as one output file: one tar shard, or a group of
loose images under a prefix. Units are planned on the driver from the file listing alone; the
bytes are read later, on workers, one unit at a time.

Reading a unit yields *records*: one per sample (an image with its optional `.cls`/`.json`
sidecars), numbered 0..n-1 within the unit, the last flagged `last`. Samples are grouped the
WebDataset way: a member `dir/000123.seg.png` has key `dir/000123` and extension `seg.png`.
A sample or shard that cannot be read becomes a record with `error` set; every unit yields at
least one record, so the sink can always tell when a unit is complete.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa

from recog import storage
from recog.storage import FileEntry, StorageOptions

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
RECORDS_PER_BLOCK = 32  # encoded images per block handed to preprocessing

RECORD_SCHEMA = pa.schema([
    ("unit_id", pa.string()),
    ("record", pa.int32()),
    ("last", pa.bool_()),
    ("source_uri", pa.string()),
    ("shard", pa.string()),
    ("key", pa.string()),
    ("member", pa.string()),
    ("data", pa.binary()),
    ("cls", pa.string()),
    ("meta", pa.string()),
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


def pick_image(exts: Iterable[str]) -> str | None:
    """The extension of the sample's image, preferring IMAGE_EXTS order."""
    exts = list(exts)
    for want in IMAGE_EXTS:
        if want in exts:
            return want
    return None


@dataclass(frozen=True)
class Unit:
    """A unit of work: one shard, or loose samples `((key, ((ext, uri), ...)), ...)`."""

    unit_id: str
    kind: str  # "shard" | "images"
    source: str  # the shard URI, or the first image URI of the group
    samples: tuple = ()

    def to_row(self) -> dict:
        return {"unit_id": self.unit_id, "kind": self.kind, "source": self.source, "samples": json.dumps(self.samples)}

    @classmethod
    def from_row(cls, row: dict) -> "Unit":
        samples = tuple((k, tuple(tuple(f) for f in files)) for k, files in json.loads(row["samples"]))
        return cls(row["unit_id"], row["kind"], row["source"], samples)


def unit_id(fingerprint: str, kind: str, parts: Iterable[str]) -> str:
    """Deterministic id: the same inputs under the same model and settings give the same id."""
    h = hashlib.sha256(f"{fingerprint}\n{kind}\n".encode())
    for p in parts:
        h.update(p.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()[:20]


@dataclass
class Plan:
    units: list[Unit]
    images: int  # loose images (shards are counted when read)
    shards: int
    ignored: list[str]  # files that are neither shards, images nor sidecars of images


def plan_units(files: list[FileEntry], root: str, fingerprint: str, images_per_unit: int = 256) -> Plan:
    """Group a listing into units: one per tar shard, and loose images in sorted groups."""
    shards, samples, ignored = [], {}, []
    for f in files:
        if f.uri.lower().endswith(SHARD_SUFFIXES):
            shards.append(f)
            continue
        key, ext = split_key(storage.relative(f.uri, root))
        samples.setdefault(key, {})[ext] = f
    loose = []
    for key, by_ext in sorted(samples.items()):
        if pick_image(by_ext):
            loose.append((key, tuple(sorted((ext, f.uri) for ext, f in by_ext.items()))))
        else:
            ignored.extend(f.uri for f in by_ext.values())
    units = [Unit(unit_id(fingerprint, "shard", [f.uri, str(f.size)]), "shard", f.uri) for f in shards]
    sizes = {f.uri: f.size for f in files}
    for i in range(0, len(loose), images_per_unit):
        group = tuple(loose[i:i + images_per_unit])
        parts = [f"{uri}:{sizes[uri]}" for _, fs in group for _, uri in fs]
        units.append(Unit(unit_id(fingerprint, "images", parts), "images", group[0][1][0][1], group))
    return Plan(units, images=len(loose), shards=len(shards), ignored=ignored)


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


def sample_record(sample: Sample) -> dict:
    """The record fields of one sample: image bytes and sidecars, or an error."""
    ext = pick_image(sample.files)
    rec = {"key": sample.key, "member": None, "data": None, "cls": None, "meta": None, "error": None}
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
            rec["meta"] = text
        except ValueError as e:
            rec["error"] = f"sidecar {sample.members['json']} is not valid JSON: {e}"
    return rec


def _shard_records(unit: Unit, opts: StorageOptions) -> Iterator[dict]:
    shard_name = unit.source.rsplit("/", 1)[-1]
    count = 0
    try:
        with storage.open_input(unit.source, opts) as stream:
            for sample in iter_tar_samples(stream):
                count += 1
                yield {**sample_record(sample), "source_uri": unit.source, "shard": shard_name}
    except FileNotFoundError:
        yield _error_row(unit.source, shard_name, "shard disappeared after it was listed")
        return
    except (tarfile.TarError, EOFError, zlib.error) as e:
        yield _error_row(unit.source, shard_name, f"corrupt or truncated tar shard after {count} samples: {e}")
        return
    if count == 0:
        yield _error_row(unit.source, shard_name, "shard holds no samples")


def _error_row(source: str, shard: str | None, error: str) -> dict:
    return {"source_uri": source, "shard": shard, "key": None, "member": None, "data": None,
            "cls": None, "meta": None, "error": error}


def _image_records(unit: Unit, opts: StorageOptions) -> Iterator[dict]:
    for key, files in unit.samples:
        uris = dict(files)
        sample = Sample(key, {}, {})
        missing = []
        for ext, uri in uris.items():
            try:
                sample.files[ext] = storage.read_bytes(uri, opts)
                sample.members[ext] = uri.rsplit("/", 1)[-1]
            except FileNotFoundError:
                missing.append(uri)
        image_uri = uris[pick_image(uris)]
        rec = sample_record(sample) if not missing else {
            **_error_row(image_uri, None, f"object disappeared after it was listed: {', '.join(missing)}"), "key": key}
        yield {**rec, "source_uri": image_uri, "shard": None}


def read_unit(unit: Unit, opts: StorageOptions, block_rows: int = RECORDS_PER_BLOCK) -> Iterator[pa.Table]:
    """The records of one unit as Arrow tables of at most `block_rows` rows; the last row is flagged."""
    rows = _shard_records(unit, opts) if unit.kind == "shard" else _image_records(unit, opts)
    block: list[dict] = []
    index = 0
    pending = next(rows, None)
    while pending is not None:
        following = next(rows, None)
        block.append({**pending, "unit_id": unit.unit_id, "record": index, "last": following is None})
        index += 1
        if len(block) >= block_rows or following is None:
            yield pa.Table.from_pylist(block, schema=RECORD_SCHEMA)
            block = []
        pending = following


def read_units_batch(units: pa.Table, opts: StorageOptions) -> Iterator[pa.Table]:
    """Ray Data adapter: a batch of unit rows -> record tables."""
    for row in units.to_pylist():
        yield from read_unit(Unit.from_row(row), opts)
