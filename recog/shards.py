"""Labeled shards from the folder layout people already have: `<class_name>/<image>.jpg`.

    recog shards --from photos/train --to s3://ds/train --per-shard 1000

writes `train-000000.tar`, `train-000001.tar`, ... in WebDataset form: per sample `<key>.<ext>`
(the image as it is), `<key>.cls` (the class name) and `<key>.json` (its class and original path).
Samples are shuffled across shards (seeded), so that streaming them gives mixed batches.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

from recog import storage
from recog.sources import IMAGE_EXTS
from recog.storage import StorageOptions


def tar_bytes(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    """A tar of samples `(key, {ext: bytes})`, members in order, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def folder_samples(folder: Path) -> list[tuple[str, Path]]:
    """(class name, image path) for every image one level below `folder`, sorted."""
    if not folder.is_dir():
        raise storage.StorageError(f"{folder}: not a folder (expected <class_name>/<image> files below it)")
    found = [(d.name, p) for d in sorted(folder.iterdir()) if d.is_dir()
             for p in sorted(d.iterdir()) if p.suffix.lower().lstrip(".") in IMAGE_EXTS]
    if not found:
        raise storage.StorageError(f"{folder}: no <class>/<image> files (images: {', '.join(IMAGE_EXTS)})")
    return found


def write_shards(folder: Path, dest: str, opts: StorageOptions, per_shard: int = 1000, seed: int = 0) -> list[str]:
    """Shard the images of `folder` to `dest` (a prefix; shards are named after its last part)."""
    samples = folder_samples(folder)
    random.Random(seed).shuffle(samples)
    uris = []
    for n in range(0, len(samples), per_shard):
        members = []
        for i, (cls, path) in enumerate(samples[n:n + per_shard], start=n):
            meta = {"class": cls, "file": str(path.relative_to(folder))}
            members.append((f"{i:08d}", {path.suffix.lower().lstrip("."): path.read_bytes(), "cls": cls.encode(),
                                         "json": json.dumps(meta).encode()}))
        uri = f"{dest.rstrip('/')}-{n // per_shard:06d}.tar"
        storage.write_bytes(uri, tar_bytes(members), opts)
        uris.append(uri)
    return uris
