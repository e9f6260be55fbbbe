"""Preprocess: encoded image bytes -> uint8 pixels at the model's input size, on CPU workers.

Pixels stay uint8 (HWC, RGB) all the way to the predictor, which normalises on its device: a
float32 copy would be four times larger in the object store. A file that will not decode gives
a row with `error` set and a black image in its place, so every input keeps its row.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps

# Decompression-bomb guard: refuse images above this many pixels, from the header, before any
# pixel is decoded. (PIL's own guard, set to the same figure, only warns up to twice that.)
# 100 M pixels is a 10k x 10k frame, larger than any camera here.
MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input: resize the short side, centre-crop, normalise (on device)."""

    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class DecodeError(ValueError):
    """The bytes are not an image we can use; the message says why."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (16-bit and 32-bit greyscale are scaled, not clipped)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).astype(np.uint8))
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = arr.min(), arr.max()
        img = Image.fromarray(((arr - lo) * (255.0 / ((hi - lo) or 1.0))).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def resize_crop(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Resize the short side to `resize_size`, centre-crop `input_size` square; HWC uint8."""
    w, h = img.size
    scale = prep.resize_size / min(w, h)
    new_w, new_h = max(prep.input_size, round(w * scale)), max(prep.input_size, round(h * scale))
    img = img.resize((new_w, new_h), _RESAMPLE[prep.interpolation])
    left, top = (new_w - prep.input_size) // 2, (new_h - prep.input_size) // 2
    img = img.crop((left, top, left + prep.input_size, top + prep.input_size))
    return np.array(img, dtype=np.uint8)  # a writable copy: torch takes it without complaint


def decode_image(data: bytes, prep: Preprocessing) -> tuple[np.ndarray, int, int]:
    """Decode image bytes; return the model-ready pixels and the original width and height.

    Raises DecodeError with a specific message for empty, unreadable, truncated or oversized input.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise Image.DecompressionBombError(
                    f"{img.width} x {img.height} = {img.width * img.height:,} pixels, over the limit of "
                    f"{Image.MAX_IMAGE_PIXELS:,} (decompression bomb guard)")
            img = ImageOps.exif_transpose(img)  # camera photos are often stored sideways
            img.load()
            width, height = img.size
            pixels = resize_crop(to_rgb(img), prep)
    except Image.DecompressionBombError as e:
        raise DecodeError(f"image too large: {e}") from None
    except Image.UnidentifiedImageError:
        raise DecodeError(f"not a recognised image format (first bytes {data[:8]!r})") from None
    except Exception as e:  # noqa: BLE001 - a bad file must become a row, whatever PIL raises
        raise DecodeError(f"cannot decode image: {type(e).__name__}: {e}") from None
    return pixels, width, height


def frame_pixels(frame: Image.Image, prep: Preprocessing) -> tuple[np.ndarray, int, int]:
    """A decoded video frame -> model-ready pixels, with its width and height."""
    try:
        return resize_crop(to_rgb(frame), prep), frame.width, frame.height
    except Exception as e:  # noqa: BLE001 - a bad frame must become a row
        raise DecodeError(f"cannot convert frame: {type(e).__name__}: {e}") from None


def model_input(records: list[dict], prep: Preprocessing, schema: pa.Schema) -> pa.Table:
    """Records (with `data` bytes or a decoded `frame`) -> a table of their `schema` fields plus
    `width`, `height` and `image` (uint8 tensor). Records that failed to decode get `error` and a
    black image; so do end-of-unit records, which carry no input."""
    from ray.data.extensions import ArrowTensorArray  # the tensor column type Ray Data batches natively

    n = len(records)
    images = np.zeros((n, prep.input_size, prep.input_size, 3), dtype=np.uint8)
    widths: list[int | None] = [None] * n
    heights: list[int | None] = [None] * n
    errors = [r["error"] for r in records]
    for i, r in enumerate(records):
        if errors[i] is not None or r["end"]:
            continue
        try:
            if r.get("frame") is not None:
                images[i], widths[i], heights[i] = frame_pixels(r["frame"], prep)
            else:
                images[i], widths[i], heights[i] = decode_image(r["data"], prep)
        except DecodeError as e:
            errors[i] = str(e)
    table = pa.Table.from_pylist([{f: r[f] for f in schema.names if f != "error"} for r in records],
                                 schema=pa.schema([f for f in schema if f.name != "error"]))
    table = table.append_column("error", pa.array(errors, pa.string()))
    table = table.append_column("width", pa.array(widths, pa.int32()))
    table = table.append_column("height", pa.array(heights, pa.int32()))
    return table.append_column("image", ArrowTensorArray.from_numpy(images))
