"""Images and shards the tests make themselves."""

from __future__ import annotations

import io
import tarfile

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def jpeg(width: int = 64, height: int = 48, color=(200, 30, 30)) -> bytes:
    return encode(Image.new("RGB", (width, height), color), "JPEG", quality=90)


def png(mode: str = "RGB", width: int = 40, height: int = 30) -> bytes:
    if mode == "I;16":
        arr = (np.arange(width * height, dtype=np.uint16).reshape(height, width) * 50)
        return encode(Image.fromarray(arr), "PNG")
    color = {"RGB": (10, 200, 30), "RGBA": (10, 200, 30, 128), "L": 128, "P": 3, "LA": (128, 255)}[mode]
    return encode(Image.new(mode, (width, height), color), "PNG")


def tar_shard(members: list[tuple[str, bytes]]) -> bytes:
    """A tar with the given (name, bytes) members, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
