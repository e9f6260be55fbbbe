"""Preprocess: encoded image bytes -> uint8 pixels at the model's input size, on CPU workers.

Pixels stay uint8 (HWC, RGB) all the way to the predictor, which normalises on its device: a
float32 copy would be four times larger in the object store. A file that will not decode gives
a row with `error` set and a black image in its place, so every input keeps its row.
"""

from __future__ import annotations

import io
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
from PIL import ExifTags, Image, ImageOps

from recog.errors import DecodeError

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


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """Width and height as the image is meant to be seen (EXIF orientations 5-8 swap them)."""
    turned = img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    return (img.height, img.width) if turned else img.size


def reduce_jpeg(img: Image.Image, prep: Preprocessing) -> None:
    """Let libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling, PIL's `draft`), never
    below the size the resize needs: a 1920x1080 frame bound for 256 px is decoded at 480x270,
    about a quarter of the work, and the bicubic resize that follows starts from less."""
    if img.format == "JPEG":
        scale = prep.resize_size / min(img.size)
        if scale < 0.5:
            img.draft("RGB", (int(img.width * scale) + 1, int(img.height * scale) + 1))


@contextmanager
def _decoding(data: bytes):
    """Whatever PIL raises on `data`, as a DecodeError that says what is wrong with the file."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError as e:
        raise DecodeError(f"image too large: {e}") from None
    except Image.UnidentifiedImageError:
        raise DecodeError(f"not a recognised image format (first bytes {data[:8]!r})") from None
    except Exception as e:  # noqa: BLE001 - a bad file must become a row, whatever PIL raises
        raise DecodeError(f"cannot decode image: {type(e).__name__}: {e}") from None


def open_image(data: bytes) -> Image.Image:
    """The image's header, refused when it is a decompression bomb. Call inside `_decoding`."""
    img = Image.open(io.BytesIO(data))
    if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
        raise Image.DecompressionBombError(
            f"{img.width} x {img.height} = {img.width * img.height:,} pixels, over the limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} (decompression bomb guard)")
    return img


def decode_image(data: bytes, prep: Preprocessing) -> tuple[np.ndarray, int, int]:
    """Decode image bytes; return the model-ready pixels and the original width and height.

    Raises DecodeError with a specific message for empty, unreadable, truncated or oversized input.
    """
    with _decoding(data):
        img = open_image(data)
        width, height = oriented_size(img)
        reduce_jpeg(img, prep)
        img = ImageOps.exif_transpose(img)  # camera photos are often stored sideways
        img.load()
        pixels = resize_crop(to_rgb(img), prep)
    return pixels, width, height


def deferrable_jpeg(data: bytes) -> tuple[int, int] | None:
    """Width and height of a JPEG the predictor can decode on its device (RGB or grey, stored
    upright); None for anything else, which is decoded here. Reads the header only."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    with _decoding(data):
        img = open_image(data)
        if img.mode not in ("RGB", "L") or img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            return None
        return img.size


def resize_crop_tensor(img, prep: Preprocessing):
    """`resize_crop` for a decoded (3, H, W) uint8 tensor, on its device; returns (S, S, 3) uint8."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    h, w = img.shape[-2:]
    scale = prep.resize_size / min(w, h)
    size = [max(prep.input_size, round(h * scale)), max(prep.input_size, round(w * scale))]
    img = F.resize(img, size, interpolation=InterpolationMode(prep.interpolation), antialias=True)
    top, left = (size[0] - prep.input_size) // 2, (size[1] - prep.input_size) // 2  # as resize_crop (center_crop rounds up)
    return img[:, top:top + prep.input_size, left:left + prep.input_size].permute(1, 2, 0)


def decode_jpegs(datas: list[bytes], prep: Preprocessing, device):
    """JPEG bytes -> ((N, S, S, 3) uint8 tensor on `device`, error per image or None), decoded with
    torchvision's decode_jpeg (nvJPEG on a CUDA device) and resized there. A file it cannot read
    is tried again with PIL on the CPU, which gives the same error message as the CPU path."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    raw = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]

    def one(r):
        try:
            return decode_jpeg(r, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated for TorchCodec in torchvision 0.29; still the nvJPEG path
        try:
            images = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one bad file fails the whole call: decode them one by one
            images = [one(r) for r in raw]
    out = torch.zeros((len(datas), prep.input_size, prep.input_size, 3), dtype=torch.uint8, device=device)
    errors: list[str | None] = [None] * len(datas)
    for i, img in enumerate(images):
        if img is not None:
            out[i] = resize_crop_tensor(img, prep)
            continue
        try:
            out[i] = torch.from_numpy(decode_image(datas[i], prep)[0]).to(device)
        except DecodeError as e:
            errors[i] = str(e)
    return out, errors


def frame_pixels(frame: Image.Image, prep: Preprocessing) -> tuple[np.ndarray, int, int]:
    """A decoded video frame -> model-ready pixels, with its width and height."""
    try:
        return resize_crop(to_rgb(frame), prep), frame.width, frame.height
    except Exception as e:  # noqa: BLE001 - a bad frame must become a row
        raise DecodeError(f"cannot convert frame: {type(e).__name__}: {e}") from None


def model_input(records: list[dict], prep: Preprocessing, schema: pa.Schema, defer_jpeg: bool = False) -> pa.Table:
    """Records (with `data` bytes or a decoded `frame`) -> a table of their `schema` fields plus
    `width`, `height`, `image` (uint8 tensor) and `encoded`. Records that failed to decode get
    `error` and a black image; so do end-of-unit records, which carry no input. With `defer_jpeg`,
    JPEGs the predictor can decode on its device are passed on as bytes in `encoded` instead."""
    from ray.data.extensions import ArrowTensorArray  # the tensor column type Ray Data batches natively

    n = len(records)
    images = np.zeros((n, prep.input_size, prep.input_size, 3), dtype=np.uint8)
    widths: list[int | None] = [None] * n
    heights: list[int | None] = [None] * n
    errors = [r["error"] for r in records]
    encoded: list[bytes | None] = [None] * n
    for i, r in enumerate(records):
        if errors[i] is not None or r["end"]:
            continue
        try:
            if r.get("frame") is not None:
                images[i], widths[i], heights[i] = frame_pixels(r["frame"], prep)
            elif defer_jpeg and (size := deferrable_jpeg(r["data"])):
                (widths[i], heights[i]), encoded[i] = size, r["data"]
            else:
                images[i], widths[i], heights[i] = decode_image(r["data"], prep)
        except DecodeError as e:
            errors[i] = str(e)
    table = pa.Table.from_pylist([{f: r[f] for f in schema.names if f != "error"} for r in records],
                                 schema=pa.schema([f for f in schema if f.name != "error"]))
    table = table.append_column("error", pa.array(errors, pa.string()))
    table = table.append_column("width", pa.array(widths, pa.int32()))
    table = table.append_column("height", pa.array(heights, pa.int32()))
    table = table.append_column("encoded", pa.array(encoded, pa.binary()))
    return table.append_column("image", ArrowTensorArray.from_numpy(images))


def load_units(units: pa.Table, opts, prep: Preprocessing, sampling, defer_jpeg: bool = False,
               balance=None) -> Iterator[pa.Table]:
    """The CPU stage (a Ray Data task per unit): read each unit and turn its records into model
    input. It lives here, away from torch, so that a decode worker starts without importing it.
    With a `balance` (`--decode auto`, a balance.RemoteBalance), it says per unit whether the JPEGs
    go to the predictor, and hears how long the unit took."""
    from recog import sources

    for row in units.to_pylist():
        unit = sources.Unit.from_row(row)
        defer = defer_jpeg or (balance is not None and balance.defers(unit.unit_id))
        images, seconds, t0 = 0, 0.0, time.perf_counter()
        for records in sources.read_unit(unit, opts, sampling):
            table = model_input(records, prep, sources.RECORD_SCHEMA, defer)
            images += sum(not r["end"] for r in records)
            seconds += time.perf_counter() - t0
            yield table
            t0 = time.perf_counter()  # the time the predictor spent on what was yielded is not this unit's
        if balance is not None and images:
            balance.decoded(images, seconds, on_cpu=not defer)
